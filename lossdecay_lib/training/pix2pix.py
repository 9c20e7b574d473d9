"""The pix2pix training loop (paper Section III.C): a U-Net generator against a PatchGAN, with the
loss-weight schedule on the generator's loss only, as in the authors' script.

A run is a :class:`Pix2PixConfig` (dataset, sizes, GAN loss, L1 weight, Adam settings, the weight schedule
and where it acts, the learning-rate schedule, seed); :func:`train_pix2pix` validates it before any work,
trains, scores the generator on the test split after every epoch (L1, PSNR, SSIM:
:class:`lossdecay_lib.metrics.ImageScores`) and writes a run record keyed by the configuration, plus a
sidecar file of a fixed sample grid (the same few test images for every run) so figures need no retraining.

Each step, as pix2pix does it: the discriminator's step on ``(D(x, y) -> real, D(x, G(x)) -> fake)``,
halved, unweighted; then the generator's step on ``gan(D(x, G(x)) -> real) + lambda_l1 * L1(G(x), y)``,
where the weight acts (``weight_place``: the loss, as in the paper; or the learning rate), written out
in :func:`train_epoch`. The learning-rate schedule multiplies both networks' learning rates (pix2pix's
own linear decay does), the weight only the generator's. Evaluation follows pix2pix's test script: one image at a time, batch norm on that image's
statistics and dropout on (the pix2pix paper applies dropout at test time), with a fixed seed.

**The effective step multiplier.** Under Adam a loss weight cancels out of ``m / sqrt(v)`` except through
``eps`` and the lag of the moment averages (:mod:`lossdecay_lib.equivalence`). We measure what it really
did: beside the generator's Adam, a shadow Adam state (:class:`lossdecay_lib.optimizers.ShadowAdam`) is fed the *unweighted* gradient of the same
trajectory, and at every step the multiplier is the least-squares scale of the shadow's step (at the base
learning rate, no schedule) that matches the step actually taken: ``<actual, shadow> / <shadow, shadow>``.
It is 1 for plain Adam at a constant learning rate, the learning-rate factor for a learning-rate schedule,
and negative when the step goes uphill. The lag model's prediction
(:class:`lossdecay_lib.equivalence.AdamLagModel`) is recorded beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .loop import EpochSums, NonFiniteWatch, RecordedRun, RunConfig
from ..atomic import write_atomically
from ..runs import RunStore
from ..curvature import dot
from ..equivalence import AdamLagModel
from ..metrics import ImageScores
from ..models.pix2pix import PatchDiscriminator, UNetGenerator
from ..optimizers import ShadowAdam
from ..profiles import resolve_device
from ..data.seeding import seed_everything
from ..schedules import Progress, Schedule, constant
from ..checks import check_name
from ..weighting import ScheduledWeight, base_settings

__all__ = ["GAN_LOSSES", "PIX2PIX_DATASETS", "Pix2PixConfig", "build_pix2pix_networks", "train_pix2pix",
           "train_epoch", "load_samples"]

GAN_LOSSES = ("lsgan", "vanilla")
PIX2PIX_DATASETS = ("facades", "maps")
EVAL_SEED = 2019  # the dropout noise of every evaluation (a fixed stream, apart from training's)


@dataclass(frozen=True)
class Pix2PixConfig(RunConfig):
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

    _POSITIVE = ("image_size", "num_downs", "ngf", "ndf", "epochs", "batch_size", "sample_images")
    _OPTIONAL = {"train_images": "the whole split", "test_images": "the whole split"}

    def check(self) -> None:
        check_name(self.dataset, PIX2PIX_DATASETS, "dataset")
        check_name(self.gan_loss, GAN_LOSSES, "gan_loss", "GAN losses")
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

    @classmethod
    def profile_fields(cls, prof) -> Dict:
        """The sizes of ``profile``'s pix2pix section (see :class:`lossdecay_lib.profiles.Pix2PixSizes`)."""
        s = prof.pix2pix
        return dict(train_images=s.train_images, test_images=s.test_images, image_size=s.image_size,
                    num_downs=s.num_downs, ngf=s.ngf, ndf=s.ndf, epochs=s.epochs, batch_size=s.batch_size)

    @property
    def load_size(self) -> int:
        """pix2pix's jitter: resize to 286 for a 256 crop; the same ratio at other sizes."""
        return int(round(self.image_size * 286 / 256))


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


def _setup(config: Pix2PixConfig, data_root, dev) -> SimpleNamespace:
    """Data, networks, optimizers, weight and the shadow Adam of a run, in the order that fixes its
    random numbers."""
    from ..data.paired import PairedImages

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
    seed_everything(config.seed)
    weight = ScheduledWeight(config.weight, config.weight_place, config.allow_negative)
    lowest_weight = weight.check(config.epochs, steps_per_epoch)
    generator, discriminator = (m.to(dev) for m in build_pix2pix_networks(config))
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=tuple(config.betas))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=tuple(config.betas))
    g_params = [p for p in generator.parameters() if p.requires_grad]
    t = SimpleNamespace(
        device=dev, train_set=train_set, n_train=n_train, steps_per_epoch=steps_per_epoch, test_x=test_x,
        test_y=test_y, sample_idx=list(range(min(config.sample_images, n_test))), weight=weight,
        unweighted=ScheduledWeight(constant(1.0)), generator=generator, discriminator=discriminator,
        opt_g=opt_g, opt_d=opt_d, base_g=base_settings(opt_g), base_d=base_settings(opt_d), g_params=g_params,
        shadow=ShadowAdam(g_params, config.lr, tuple(config.betas), eps=opt_g.defaults["eps"]),
        lag=AdamLagModel(tuple(config.betas)), before=[torch.empty_like(p) for p in g_params])
    t.stateful = dict(generator=generator, discriminator=discriminator, opt_g=opt_g, opt_d=opt_d,
                      shadow=t.shadow, lag=t.lag)
    t.facts = {
        "data": {"dataset": config.dataset, "direction": train_set.direction, "train_images": n_train,
                 "test_images": n_test, "train_files_available": len(train_set), "test_files_available": len(test_set),
                 "load_size": config.load_size, "crop_size": config.image_size, "steps_per_epoch": steps_per_epoch,
                 "folder": train_set.folder.name},
        "parameters": {"generator": sum(p.numel() for p in generator.parameters()),
                       "discriminator": sum(p.numel() for p in discriminator.parameters())},
        "negative_weights": lowest_weight < 0, "lowest_weight": lowest_weight, "sample_indices": t.sample_idx}
    return t


def _discriminator_step(config: Pix2PixConfig, t: SimpleNamespace, x, y, fake, lr_factor: float) -> torch.Tensor:
    """pix2pix's discriminator step: real pairs -> 1, generated pairs -> 0, halved, never weighted."""
    for p in t.discriminator.parameters():
        p.requires_grad_(True)
    loss_d = 0.5 * (_gan_loss(config.gan_loss, t.discriminator(x, y), True)
                    + _gan_loss(config.gan_loss, t.discriminator(x, fake.detach()), False))
    t.unweighted.set_lr(t.opt_d, t.base_d, lr_factor, 1.0)
    t.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    t.opt_d.step()
    for p in t.discriminator.parameters():
        p.requires_grad_(False)
    return loss_d


def train_epoch(config: Pix2PixConfig, t: SimpleNamespace, epoch: int, step: int,
                run: RecordedRun) -> Tuple[Dict, NonFiniteWatch, List[float]]:
    """One epoch from global ``step``: the discriminator's step, then the generator's weighted step
    (paper Eq. 1) and the step multiplier it really made. Returns the means of its steps (the measured
    multipliers summed), the non-finite watch and the lag model's predicted multipliers."""
    t.generator.train()
    t.discriminator.train()
    t.train_set.set_epoch(epoch)
    order = torch.randperm(len(t.train_set), generator=torch.Generator().manual_seed(config.seed * 1_000_003 + epoch))
    order = order[order < t.n_train].tolist()  # a seeded order of the first n_train pairs
    sums = EpochSums(t.device, d_loss=(), g_gan_loss=(), g_l1_loss=(), g_l1_loss_weighted=(), g_loss=(),
                     g_loss_weighted=(), multiplier=(), multiplier_steps=())
    watch, predicted = NonFiniteWatch(t.device), []
    for b in range(t.steps_per_epoch):
        x, y = _stack_pairs(t.train_set, order[b * config.batch_size:(b + 1) * config.batch_size], t.device)
        fake = t.generator(x)
        progress = Progress(step, t.steps_per_epoch, config.epochs)
        lr_factor = config.lr_schedule(progress)
        loss_d = _discriminator_step(config, t, x, y, fake, lr_factor)
        loss_gan = _gan_loss(config.gan_loss, t.discriminator(x, fake), True)  # fool the discriminator
        loss_l1 = F.l1_loss(fake, y)
        loss_g = loss_gan + config.lambda_l1 * loss_l1
        w = t.weight.value(progress)  # the weight for this step
        lr = t.weight.set_lr(t.opt_g, t.base_g, lr_factor, w)  # x w at place "lr"
        t.opt_g.zero_grad(set_to_none=True)
        t.weight.scale_loss(loss_g, w).backward()  # w x loss at place "loss"
        # the unweighted gradient is the weighted one / w (at the loss or gradient place); w = 0 hides it
        scale = 1.0 if config.weight_place == "lr" else (1.0 / w if w != 0 else 0.0)
        if scale != 0.0:
            torch._foreach_copy_(t.before, [p.detach() for p in t.g_params])
            t.shadow.update([p.grad for p in t.g_params], scale)
        t.weight.scale_grads(t.opt_g, w)  # w x gradient at place "grad"
        t.opt_g.step()
        if scale != 0.0:
            sums.add(multiplier=_step_multiplier(t), multiplier_steps=1)
        on_loss = w if config.weight_place == "loss" else 1.0  # the factor the loss itself carries
        watch.observe(step, loss_d, loss_g)
        sums.add(d_loss=loss_d.detach().double(), g_gan_loss=loss_gan.detach().double(),
                 g_l1_loss=loss_l1.detach().double(), g_loss=loss_g.detach().double(),
                 g_loss_weighted=loss_g.detach().double() * on_loss,
                 g_l1_loss_weighted=loss_l1.detach().double() * (config.lambda_l1 * on_loss))
        predicted.append(lr / config.lr * (t.lag.update(w) if config.weight_place != "lr" else w))
        run.log_step(w, lr)
        step += 1
    schedule = run.epoch_schedule()
    return dict(sums.means(schedule["steps"], "multiplier", "multiplier_steps"), **schedule), watch, predicted


@torch.no_grad()
def _step_multiplier(t: SimpleNamespace) -> torch.Tensor:
    """The least-squares scale of the shadow Adam's unweighted step that matches the step taken."""
    taken = torch._foreach_sub(t.before, [p.detach() for p in t.g_params])  # what the step subtracted
    unweighted = t.shadow.step_direction()
    along = dot(taken, unweighted, torch.float32)
    return (along / dot(unweighted, unweighted, torch.float32).clamp_min(1e-300)).double()


def train_pix2pix(config: Pix2PixConfig, data_root=None, device: str = "auto", store=None, force: bool = False,
                  progress: bool = True, checkpoint_every: int = 1) -> Dict:
    """Train (or load) one pix2pix run and return its record (a JSON-ready dict).

    ``store`` is a :class:`lossdecay_lib.runs.RunStore` (default: the checkout's ``records/``); a finished
    record with the same key is returned as is unless ``force``. The run is checkpointed every
    ``checkpoint_every`` epochs and resumes from there. The sample grid is written beside the record
    (``<key>.samples.pt``, read it with :func:`load_samples`).
    """
    run = RecordedRun.for_config(config, store, force=force, checkpoint_every=checkpoint_every)
    if run.finished is not None:
        return run.finished
    t = _setup(config, data_root, resolve_device(device))
    record = run.new_record("pix2pix", config, t.device)
    record.update(t.facts, samples_file=_samples_path(run.store, run.key).name)
    start_epoch, step, record = run.resume(record, **t.stateful)
    run.show_progress(config.epochs * t.steps_per_epoch, f"{config.label or 'pix2pix'}, seed {config.seed}",
                       progress, done=step)
    for epoch in range(start_epoch, config.epochs):
        train, watch, predicted = train_epoch(config, t, epoch, step, run)
        step += t.steps_per_epoch
        if watch.first() is not None:
            return run.diverge(record, epoch, watch.first(), step)
        test = _test_scores(t)
        losses = ("d_loss", "g_gan_loss", "g_l1_loss", "g_l1_loss_weighted", "g_loss", "g_loss_weighted")
        steps = train["multiplier_steps"]
        record["epochs"].append({
            "epoch": epoch, **{name: train[name] for name in losses},
            "weight_mean": train["weight_mean"], "lr_mean": train["lr_mean"],
            "step_multiplier": train["multiplier"] / steps if steps else float("nan"),
            "step_multiplier_steps": int(steps),
            "step_multiplier_predicted": sum(predicted) / len(predicted),
            "test_l1": test["l1"], "test_psnr": test["psnr"], "test_ssim": test["ssim"],
            "seconds": run.elapsed})
        run.bar.set_postfix(test_l1=f"{test['l1']:.3f}", psnr=f"{test['psnr']:.2f}")
        run.end_epoch(record, epoch, config.epochs, step, **t.stateful)
    return run.finish(record, _summary(t, record, test, run))


def _test_scores(t: SimpleNamespace) -> Dict:
    scores = ImageScores(t.device)
    scores.update(_generate(t.generator, t.test_x, t.device), t.test_y)
    return scores.result()


def _summary(t: SimpleNamespace, record: Dict, test: Dict, run: RecordedRun) -> Dict:
    """The final metrics, and the sample grid written beside the record."""
    idx = t.sample_idx
    samples = {"input": _to_uint8(t.test_x[idx]), "output": _to_uint8(_generate(t.generator, t.test_x[idx], t.device)),
               "target": _to_uint8(t.test_y[idx]), "indices": torch.tensor(idx)}
    write_atomically(_samples_path(run.store, run.key), lambda tmp: torch.save(samples, tmp))
    last = record["epochs"][-1]
    mults = [e["step_multiplier"] for e in record["epochs"]]
    return {
        "final_test_l1": last["test_l1"], "final_test_psnr": last["test_psnr"], "final_test_ssim": last["test_ssim"],
        "final_test_std_over_images": {k: test[f"{k}_std"] for k in ImageScores.NAMES},
        "step_multiplier_mean": sum(mults) / len(mults),
    }
