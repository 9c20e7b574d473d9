"""The pix2pix training loop (paper Section III.C): a U-Net generator against a PatchGAN, with the
loss-weight schedule on the generator's loss only, as in the authors' script.

A run is a :class:`Pix2PixConfig` (dataset, sizes, GAN loss, L1 weight, Adam settings, the weight schedule
and where it acts, the learning-rate schedule, seed); :func:`train_pix2pix` validates it before any work,
trains, scores the generator on the test split after every epoch (L1, PSNR, SSIM:
:class:`lossdecay_lib.metrics.ImageScores`) and writes a run record keyed by the configuration, plus a
sidecar file of a fixed sample grid (the same few test images for every run) so figures need no retraining.

Each step, as pix2pix does it: the discriminator's step on ``(D(x, y) -> real, D(x, G(x)) -> fake)``,
halved, unweighted; then the generator's step on ``gan(D(x, G(x)) -> real) + lambda_l1 * L1(G(x), y)``,
where the weight acts (``weight_place``: the loss, as in the paper; or the learning rate). Both steps go
through the shared :class:`lossdecay_lib.training.ScheduleController`; the learning-rate schedule
multiplies both networks' learning rates (pix2pix's own linear decay does), the weight only the
generator's. Evaluation follows pix2pix's test script: one image at a time, batch norm on that image's
statistics and dropout on (the pix2pix paper applies dropout at test time), with a fixed seed.

**The effective step multiplier.** Under Adam a loss weight cancels out of ``m / sqrt(v)`` except through
``eps`` and the lag of the moment averages (:mod:`lossdecay_lib.equivalence`). We measure what it really
did: beside the generator's Adam, a shadow Adam state is fed the *unweighted* gradient of the same
trajectory, and at every step the multiplier is the least-squares scale of the shadow's step (at the base
learning rate, no schedule) that matches the step actually taken: ``<actual, shadow> / <shadow, shadow>``.
It is 1 for plain Adam at a constant learning rate, the learning-rate factor for a learning-rate schedule,
and negative when the step goes uphill. The lag model's prediction
(:class:`lossdecay_lib.equivalence.AdamLagModel`) is recorded beside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .classification import ScheduleController
from .loop import NonFiniteWatch, RecordedRun, progress_bar
from ..atomic import write_atomically
from ..runs import RunStore
from ..equivalence import AdamLagModel
from ..metrics import ImageScores
from ..models.pix2pix import PatchDiscriminator, UNetGenerator
from ..profiles import get_profile, resolve_device
from ..data.seeding import seed_everything
from ..schedules import Schedule, constant
from ..checks import check_name, check_non_negative_int, check_positive_int
from ..weighting import ScheduledWeight, check_place

__all__ = ["GAN_LOSSES", "PIX2PIX_DATASETS", "Pix2PixConfig", "ShadowAdam", "build_pix2pix_networks",
           "train_pix2pix", "train_pix2pix_seeds", "load_samples"]

GAN_LOSSES = ("lsgan", "vanilla")
PIX2PIX_DATASETS = ("facades", "maps")
EVAL_SEED = 2019  # the dropout noise of every evaluation (a fixed stream, apart from training's)


@dataclass(frozen=True)
class Pix2PixConfig:
    """Everything that defines a pix2pix run (and so its record's key).

    ``weight`` is the loss-weight schedule of the generator (``constant(1.0)``: ordinary pix2pix), at
    ``weight_place`` (``"loss"``: the paper; ``"lr"``: the generator's learning rate instead). The
    discriminator is never weighted. ``lr_schedule`` multiplies both learning rates. ``betas``: the
    authors' code and pix2pix use ``(0.5, 0.999)``; the paper's text says ``beta1 = 0.9``.
    ``train_images``/``test_images``: the first N pairs of each split (``None``: all).
    """

    profile: str
    dataset: str = "facades"
    train_images: Optional[int] = None
    test_images: Optional[int] = None
    image_size: int = 256
    num_downs: int = 8
    ngf: int = 64
    ndf: int = 64
    epochs: int = 200
    batch_size: int = 1
    gan_loss: str = "lsgan"
    lambda_l1: float = 100.0
    lr: float = 2e-4
    betas: Tuple[float, float] = (0.5, 0.999)
    weight: Schedule = field(default_factory=constant)
    weight_place: str = "loss"
    lr_schedule: Schedule = field(default_factory=constant)
    allow_negative: bool = False
    seed: int = 0
    sample_images: int = 3  # test images of the saved sample grid
    label: str = ""  # a reader's name for the run in figures; not part of the key

    def validate(self) -> None:
        """Every bad value is an error before any work starts; names list the valid choices."""
        get_profile(self.profile)
        check_name(self.dataset, PIX2PIX_DATASETS, "dataset")
        check_name(self.gan_loss, GAN_LOSSES, "gan_loss", "GAN losses")
        check_place(self.weight_place)
        for name in ("image_size", "num_downs", "ngf", "ndf", "epochs", "batch_size", "sample_images"):
            check_positive_int(name, getattr(self, name))
        for name in ("train_images", "test_images"):
            check_positive_int(name, getattr(self, name), allow_none=True, none_means="the whole split")
        if self.num_downs < 5:
            raise ValueError(f"num_downs must be >= 5 (the U-Net widens over 4 levels), got {self.num_downs}")
        if self.image_size % 2**self.num_downs:
            raise ValueError(f"image_size {self.image_size} must be divisible by 2**num_downs = {2**self.num_downs} "
                             f"(num_downs {self.num_downs}); e.g. 256 with 8, 128 with 7, 64 with 6")
        if self.image_size < 32:
            raise ValueError(f"image_size must be at least 32 (the 70x70 PatchGAN's layers), got {self.image_size}")
        if self.train_images is not None and self.batch_size > self.train_images:
            raise ValueError(f"batch_size {self.batch_size} is larger than the {self.train_images} training images")
        if self.sample_images > (self.test_images or 10**9):
            raise ValueError(f"sample_images {self.sample_images} exceeds test_images {self.test_images}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not (isinstance(self.lambda_l1, (int, float)) and self.lambda_l1 >= 0):
            raise ValueError(f"lambda_l1 must be a non-negative number, got {self.lambda_l1!r}")
        if len(self.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1) (pix2pix: (0.5, 0.999); the paper's text: "
                             f"(0.9, 0.999)), got {self.betas!r}")
        check_non_negative_int("seed", self.seed)
        for name in ("weight", "lr_schedule"):
            if not isinstance(getattr(self, name), Schedule):
                raise TypeError(f"{name} must be a lossdecay_lib.schedules.Schedule, got {getattr(self, name)!r}")

    @classmethod
    def from_profile(cls, profile: str, **changes) -> "Pix2PixConfig":
        """A run at the sizes of ``profile`` (see :class:`lossdecay_lib.profiles.Pix2PixSizes`)."""
        prof = get_profile(profile)
        s = prof.pix2pix
        return cls(profile=prof.name, train_images=s.train_images, test_images=s.test_images,
                   image_size=s.image_size, num_downs=s.num_downs, ngf=s.ngf, ndf=s.ndf, epochs=s.epochs,
                   batch_size=s.batch_size).with_(**changes)

    def with_(self, **changes) -> "Pix2PixConfig":
        if "betas" in changes:
            changes["betas"] = tuple(changes["betas"])
        return replace(self, **changes)

    @property
    def load_size(self) -> int:
        """pix2pix's jitter: resize to 286 for a 256 crop; the same ratio at other sizes."""
        return int(round(self.image_size * 286 / 256))

    def describe(self) -> Dict:
        """A JSON-ready description (schedules by their repr); the record's key is derived from it."""
        d = asdict(self)
        d.pop("label")
        d["betas"] = list(self.betas)
        d["weight"] = repr(self.weight)
        d["lr_schedule"] = repr(self.lr_schedule)
        return d


def build_pix2pix_networks(config: Pix2PixConfig) -> Tuple[UNetGenerator, PatchDiscriminator]:
    """The generator and the (input-conditioned, 6-channel) 70x70 PatchGAN at the config's widths."""
    generator = UNetGenerator(3, 3, ngf=config.ngf, num_downs=config.num_downs, dropout=0.5)
    discriminator = PatchDiscriminator(in_channels=6, ndf=config.ndf, n_layers=3)
    return generator, discriminator


def _gan_loss(kind: str, scores: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(scores) if real else torch.zeros_like(scores)
    if kind == "lsgan":
        return F.mse_loss(scores, target)
    return F.binary_cross_entropy_with_logits(scores, target)


class ShadowAdam:
    """Adam's moment averages of the *unweighted* gradients of a trajectory, and the step they would make.

    :meth:`update` takes this step's unweighted gradients; :meth:`step_direction` is the update that
    Adam (``lr``, ``betas``, ``eps``) would subtract from the parameters with them. Everything stays on
    the device. ``state_dict``/``load_state_dict`` make a resumed run identical to an uninterrupted one.
    """

    def __init__(self, params: Sequence[torch.Tensor], lr: float, betas: Tuple[float, float], eps: float = 1e-8):
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    @torch.no_grad()
    def update(self, grads: Sequence[torch.Tensor], scale: float = 1.0) -> None:
        """Feed ``scale * grads`` (e.g. ``1/w`` to undo a loss weight) into the moment averages."""
        self.t += 1
        g = torch._foreach_mul(list(grads), scale) if scale != 1.0 else list(grads)
        torch._foreach_mul_(self.m, self.b1)
        torch._foreach_add_(self.m, g, alpha=1 - self.b1)
        torch._foreach_mul_(self.v, self.b2)
        torch._foreach_addcmul_(self.v, g, g, value=1 - self.b2)

    @torch.no_grad()
    def step_direction(self) -> List[torch.Tensor]:
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_div_(denom, c2**0.5)
        torch._foreach_add_(denom, self.eps)
        out = torch._foreach_div(self.m, denom)
        torch._foreach_mul_(out, self.lr / c1)
        return out

    def state_dict(self) -> Dict:
        return {"m": self.m, "v": self.v, "t": self.t}

    def load_state_dict(self, state: Dict) -> None:
        for mine, saved in ((self.m, state["m"]), (self.v, state["v"])):
            for a, b in zip(mine, saved):
                a.copy_(b)
        self.t = int(state["t"])


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack([torch.dot(x.reshape(-1), y.reshape(-1)) for x, y in zip(a, b)]).sum()


def _stack_pairs(dataset, indices: Sequence[int], device) -> Tuple[torch.Tensor, torch.Tensor]:
    pairs = [dataset[i] for i in indices]
    return (torch.stack([p[0] for p in pairs]).to(device), torch.stack([p[1] for p in pairs]).to(device))


@torch.no_grad()
def _generate(generator, inputs: torch.Tensor, device) -> torch.Tensor:
    """pix2pix's test-time generator: one image at a time, batch-norm statistics of that image and dropout
    on, with a fixed noise stream (the training RNG is left untouched)."""
    generator.train()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(EVAL_SEED)
        return torch.cat([generator(inputs[i:i + 1]) for i in range(len(inputs))])


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def _samples_path(store, key: str) -> Path:
    return store.root / f"{key}.samples.pt"


def load_samples(record: Dict, store=None) -> Dict[str, torch.Tensor]:
    """The sample grid saved with a pix2pix record: uint8 ``input``, ``output``, ``target`` ``[k, 3, S, S]``
    and the test ``indices`` they show."""
    store = store or RunStore.default()
    return torch.load(_samples_path(store, record["key"]), weights_only=True)


def train_pix2pix(config: Pix2PixConfig, data_root=None, device: str = "auto", store=None, force: bool = False,
                  progress: bool = True, checkpoint_every: int = 1) -> Dict:
    """Train (or load) one pix2pix run and return its record (a JSON-ready dict).

    ``store`` is a :class:`lossdecay_lib.runs.RunStore` (default: the checkout's ``records/``); a finished
    record with the same key is returned as is unless ``force``. The run is checkpointed every
    ``checkpoint_every`` epochs and resumes from there. The sample grid is written beside the record
    (``<key>.samples.pt``, read it with :func:`load_samples`).
    """
    from ..data.paired import PairedImages

    run = RecordedRun.for_config(config, store, force=force, checkpoint_every=checkpoint_every)
    if run.finished is not None:
        return run.finished
    store, key = run.store, run.key

    dev = resolve_device(device)
    # decoded on demand (a few ms a step): preloading would decode every file of the split, used or not
    common = dict(data_root=data_root, load_size=config.load_size, crop_size=config.image_size, seed=config.seed,
                  preload=False)
    train_set = PairedImages(config.dataset, "train", augment=True, **common)
    test_set = PairedImages(config.dataset, "test", augment=False, **common)
    n_train = min(config.train_images or len(train_set), len(train_set))
    n_test = min(config.test_images or len(test_set), len(test_set))
    if config.batch_size > n_train:
        raise ValueError(f"batch_size {config.batch_size} is larger than the {n_train} training images")
    steps_per_epoch = n_train // config.batch_size
    test_x, test_y = _stack_pairs(test_set, range(n_test), dev)
    sample_idx = list(range(min(config.sample_images, n_test)))

    seed_everything(config.seed)
    weight = ScheduledWeight(config.weight, config.weight_place, config.allow_negative)
    lowest_weight = weight.check(config.epochs, steps_per_epoch)
    generator, discriminator = (m.to(dev) for m in build_pix2pix_networks(config))
    adam = dict(lr=config.lr, betas=tuple(config.betas))
    opt_g = torch.optim.Adam(generator.parameters(), **adam)
    opt_d = torch.optim.Adam(discriminator.parameters(), **adam)
    g_step = ScheduleController(opt_g, weight, config.lr_schedule, steps_per_epoch, config.epochs)
    d_step = ScheduleController(opt_d, ScheduledWeight(constant(1.0)), config.lr_schedule, steps_per_epoch,
                                config.epochs)
    g_params = [p for p in generator.parameters() if p.requires_grad]
    shadow = ShadowAdam(g_params, config.lr, tuple(config.betas), eps=opt_g.defaults["eps"])
    lag = AdamLagModel(tuple(config.betas))
    before = [torch.empty_like(p) for p in g_params]

    record = run.new_record("pix2pix", config, dev)
    record.update({
        "data": {"dataset": config.dataset, "direction": train_set.direction, "train_images": n_train,
                 "test_images": n_test, "train_files_available": len(train_set), "test_files_available": len(test_set),
                 "load_size": config.load_size, "crop_size": config.image_size, "steps_per_epoch": steps_per_epoch,
                 "folder": train_set.folder.name},
        "parameters": {"generator": sum(p.numel() for p in generator.parameters()),
                       "discriminator": sum(p.numel() for p in discriminator.parameters())},
        "negative_weights": lowest_weight < 0,
        "lowest_weight": lowest_weight,
        "samples_file": _samples_path(store, key).name,
        "sample_indices": sample_idx,
    })
    stateful = dict(generator=generator, discriminator=discriminator, opt_g=opt_g, opt_d=opt_d,
                    shadow=shadow, lag=lag)
    start_epoch, step, record = run.resume(record, **stateful)
    bar = progress_bar(config.epochs * steps_per_epoch, f"{config.label or 'pix2pix'}, seed {config.seed}", progress)
    if bar is not None:
        bar.update(step)
    order_gen = torch.Generator()
    for epoch in range(start_epoch, config.epochs):
        generator.train()
        discriminator.train()
        train_set.set_epoch(epoch)
        order_gen.manual_seed(config.seed * 1_000_003 + epoch)
        order = torch.randperm(len(train_set), generator=order_gen)
        order = order[order < n_train].tolist()  # a seeded order of the first n_train pairs
        # d loss, g gan, g l1, g total, g total weighted, multiplier sum, multiplier count, lambda l1 weighted
        sums = torch.zeros(8, device=dev, dtype=torch.float64)
        watch = NonFiniteWatch(dev)
        predicted = []
        for b in range(steps_per_epoch):
            x, y = _stack_pairs(train_set, order[b * config.batch_size:(b + 1) * config.batch_size], dev)
            fake = generator(x)
            # the discriminator: real pairs -> 1, generated pairs -> 0, halved (pix2pix), unweighted
            for p in discriminator.parameters():
                p.requires_grad_(True)
            loss_d = 0.5 * (_gan_loss(config.gan_loss, discriminator(x, y), True)
                            + _gan_loss(config.gan_loss, discriminator(x, fake.detach()), False))
            d_step.step(step, loss_d)
            # the generator: fool the discriminator + lambda * L1, weighted at its place
            for p in discriminator.parameters():
                p.requires_grad_(False)
            loss_gan = _gan_loss(config.gan_loss, discriminator(x, fake), True)
            loss_l1 = F.l1_loss(fake, y)
            loss_g = loss_gan + config.lambda_l1 * loss_l1
            w_now = weight.value(g_step.progress(step))
            # the unweighted gradient is the weighted one / w (at the loss or gradient place); w = 0 hides it
            scale = 1.0 if config.weight_place == "lr" else (1.0 / w_now if w_now != 0 else 0.0)

            def measure_before_step():
                torch._foreach_copy_(before, [p.detach() for p in g_params])
                if scale != 0.0:
                    shadow.update([p.grad for p in g_params], scale)

            w, lr = g_step.step(step, loss_g, after_backward=measure_before_step)
            with torch.no_grad():
                if scale != 0.0:
                    taken = torch._foreach_sub(before, [p.detach() for p in g_params])  # what the step subtracted
                    unweighted = shadow.step_direction()
                    sums[5] += (_dot(taken, unweighted) / _dot(unweighted, unweighted).clamp_min(1e-300)).double()
                    sums[6] += 1
                watch.observe(step, loss_d, loss_g)
                sums[0] += loss_d.detach().double()
                sums[1] += loss_gan.detach().double()
                sums[2] += loss_l1.detach().double()
                sums[3] += loss_g.detach().double()
                on_loss = w if config.weight_place == "loss" else 1.0  # the factor the loss itself carries
                sums[4] += loss_g.detach().double() * on_loss
                sums[7] += loss_l1.detach().double() * (config.lambda_l1 * on_loss)
            lr_factor = lr / config.lr
            lag_value = lag.update(w) if config.weight_place != "lr" else w
            predicted.append(lr_factor * lag_value)
            run.log_step(w, lr)
            step += 1
            if bar is not None:
                bar.update(1)
        d_sum, gan_sum, l1_sum, g_sum, gw_sum, mult_sum, mult_n, l1w_sum = sums.tolist()
        bad_step = watch.first()
        if bad_step is not None:
            if bar is not None:
                bar.close()
            return run.diverge(record, epoch, bad_step, step)
        weight_mean, lr_mean, n = run.epoch_schedule()
        scores = ImageScores(dev)
        scores.update(_generate(generator, test_x, dev), test_y)
        test = scores.result()
        record["epochs"].append({
            "epoch": epoch,
            "d_loss": d_sum / n,
            "g_gan_loss": gan_sum / n,
            "g_l1_loss": l1_sum / n,
            "g_l1_loss_weighted": l1w_sum / n,  # lambda x L1 x the weight where it multiplies the loss
            "g_loss": g_sum / n,
            "g_loss_weighted": gw_sum / n,
            "weight_mean": weight_mean,
            "lr_mean": lr_mean,
            "step_multiplier": mult_sum / mult_n if mult_n else float("nan"),
            "step_multiplier_steps": int(mult_n),
            "step_multiplier_predicted": sum(predicted) / len(predicted),
            "test_l1": test["l1"], "test_psnr": test["psnr"], "test_ssim": test["ssim"],
            "seconds": run.elapsed,
        })
        if bar is not None:
            bar.set_postfix(test_l1=f"{test['l1']:.3f}", psnr=f"{test['psnr']:.2f}")
        run.end_epoch(record, epoch, config.epochs, step, **stateful)
    if bar is not None:
        bar.close()
    outputs = _generate(generator, test_x[sample_idx], dev)
    samples = {"input": _to_uint8(test_x[sample_idx]), "output": _to_uint8(outputs),
               "target": _to_uint8(test_y[sample_idx]), "indices": torch.tensor(sample_idx)}
    write_atomically(_samples_path(store, key), lambda tmp: torch.save(samples, tmp))
    last = record["epochs"][-1]
    mults = [e["step_multiplier"] for e in record["epochs"]]
    return run.finish(record, {
        "final_test_l1": last["test_l1"], "final_test_psnr": last["test_psnr"], "final_test_ssim": last["test_ssim"],
        "final_test_std_over_images": {k: test[f"{k}_std"] for k in ImageScores.NAMES},
        "step_multiplier_mean": sum(mults) / len(mults),
    })


def train_pix2pix_seeds(configs: Sequence[Pix2PixConfig], seeds: Sequence[int], **kwargs) -> List[Dict]:
    """Every configuration at every seed (finished runs are loaded, not retrained); records in order."""
    return [train_pix2pix(c.with_(seed=s), **kwargs) for c in configs for s in seeds]
