"""The segmentation training loop: PSPNet with and without the loss weight (paper Section III.B, Table I).

A run is described by a :class:`SegmentationConfig`; :func:`train_segmenter` validates it before any
work, trains (:func:`train_epoch`: the weighted step of paper Eq. 1 written out) inside the shared
recorded-run lifecycle (:class:`~lossdecay_lib.training.loop.RecordedRun`), evaluates on the val split
after every epoch and writes a run record keyed by the configuration.

The protocol of the paper's text (Sec. III.B): PSPNet, SGD with momentum 0.95 and learning rate 0.001,
the "poly" learning-rate policy ``(1 - iter/max_iter)^0.9``, batch 4, 224x224 crops, random mirroring.
The text gives no weight decay; we take the authors' script's 5e-4. The loss is
``CE(main) + 0.4 * CE(aux)`` (PSPNet's deep supervision), pixels labelled ``ignore_index`` left out,
and the loss weight multiplies that total. The authors' script reported the best mean IoU over epochs on
the val split; records keep it (``best_val_miou_over_epochs``, labelled as selected on val) beside the
final epoch's (``final_val_miou``), which is the fair number.

Data (small profiles): ``train_images``/``val_images`` pairs spaced evenly over the split (CamVid's
lists are video frames in order, so the first N would be near-copies of one scene); every image is
resized so its short side is ``image_size`` (``None``: kept) before cropping, so a small crop still
sees a good part of the scene, and validation is scored at that size against the mask resized by
nearest neighbour. Batches are drawn from memory with seeded per-item augmentation
(:func:`lossdecay_lib.data.seeding.item_generator`): the same seed gives the same batches.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .loop import EpochSums, NonFiniteWatch, RecordedRun, RunConfig
from ..atomic import write_atomically
from ..runs import RunStore
from ..metrics import ConfusionMatrix, segmentation_scores
from ..models.pspnet import AUX_LOSS_WEIGHT, BACKBONES, PSPNet, cached_imagenet_weights
from ..models import channels_last_is_safe
from ..profiles import resolve_device
from ..data.seeding import seed_everything
from ..schedules import Progress, Schedule, constant, poly
from ..checks import check_name
from ..weighting import ScheduledWeight, base_settings

__all__ = ["DATASETS", "PAPER_SGD", "SegmentationConfig", "train_segmenter", "load_val_predictions",
           "validation_examples", "train_epoch"]

#: ``dataset`` names of a config and the data module's names for them.
DATASETS = {"camvid": "camvid", "voc": "voc2012"}

#: The paper's text: momentum 0.95, learning rate 0.001; weight decay 5e-4 from the authors' script.
PAPER_SGD: Tuple[Tuple[str, object], ...] = (("lr", 0.001), ("momentum", 0.95), ("weight_decay", 5e-4))

#: How many fixed validation images keep their final predictions (for the paper's Fig. 6).
SHOWN_VAL_IMAGES = 3


@dataclass(frozen=True)
class SegmentationConfig(RunConfig):
    """Everything that defines a segmentation run (and so its record's key).

    ``pretrained``: start the backbone from torchvision's ImageNet weights, which must already be in
    torch hub's local cache (nothing is downloaded; :meth:`from_profile` with ``pretrained="auto"``
    uses them exactly when they are there). ``weight`` is the loss-weight schedule at ``weight_place``;
    ``lr_schedule`` multiplies the base learning rate per step (poly 0.9, the paper's policy).
    ``scale_range`` is the random rescaling before the crop: ``(1, 1)`` by default, since the paper
    names random mirroring as its only augmentation.
    """

    profile: str
    dataset: str = "camvid"
    backbone: str = "resnet101"
    pretrained: bool = False
    train_images: Optional[int] = None
    val_images: Optional[int] = None
    image_size: Optional[int] = None  # short side every image is resized to; None: as stored
    crop: int = 224
    epochs: int = 10
    batch_size: int = 4
    optimizer_settings: Tuple[Tuple[str, object], ...] = PAPER_SGD
    lr_schedule: Schedule = field(default_factory=lambda: poly(0.9))
    weight: Schedule = field(default_factory=constant)
    weight_place: str = "loss"
    allow_negative: bool = False
    scale_range: Tuple[float, float] = (1.0, 1.0)
    flip: bool = True
    seed: int = 0
    label: str = ""  # a reader's name for the run in figures; not part of the key

    _POSITIVE = ("epochs", "crop")
    _OPTIONAL = {"train_images": "", "val_images": "", "image_size": ""}

    def check(self) -> None:
        check_name(self.dataset, DATASETS, "dataset")
        check_name(self.backbone, BACKBONES, "backbone")
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or self.batch_size < 2:
            raise ValueError(f"batch_size must be an integer >= 2 (PSPNet's 1x1 pyramid bin needs batch "
                             f"statistics over at least 2 images), got {self.batch_size!r}")
        if self.train_images is not None and self.train_images < self.batch_size:
            raise ValueError(f"train_images ({self.train_images}) must be at least batch_size ({self.batch_size})")
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {self.scale_range}")
        settings = dict(self.optimizer_settings)
        if "lr" not in settings:
            raise ValueError("optimizer_settings must include the base learning rate 'lr'")
        unknown = set(settings) - {"lr", "momentum", "weight_decay", "nesterov", "dampening"}
        if unknown:
            raise ValueError(f"unknown SGD settings {sorted(unknown)}; valid: lr, momentum, weight_decay, "
                             "nesterov, dampening")
        if self.pretrained and cached_imagenet_weights(self.backbone) is None:
            raise ValueError(
                f"pretrained=True but no ImageNet weights for {self.backbone} are in torch hub's cache "
                f"({torch.hub.get_dir()}/checkpoints; nothing is downloaded): put torchvision's file there, "
                "or use pretrained=False (or 'auto' in from_profile)")

    @classmethod
    def profile_fields(cls, prof, pretrained="auto", dataset: str = "camvid") -> Dict:
        """A run at the sizes of ``profile``'s segmentation section with the paper's protocol.

        ``pretrained="auto"`` starts from ImageNet weights exactly when they are in the local cache.
        """
        sizes = prof.segmentation
        if pretrained == "auto":
            pretrained = cached_imagenet_weights(sizes.backbone) is not None
        return dict(dataset=dataset, backbone=sizes.backbone, pretrained=bool(pretrained),
                    train_images=sizes.train_images, val_images=sizes.val_images, image_size=sizes.image_size,
                    crop=sizes.crop, epochs=sizes.epochs, batch_size=sizes.batch_size)


# --------------------------------------------------------------------------------------------------
# Data: a subset of a split, resized once, held in memory
# --------------------------------------------------------------------------------------------------

def _spaced(count: int, wanted: Optional[int]) -> List[int]:
    """``wanted`` indices spread evenly over ``range(count)`` (all of them for ``None``)."""
    if wanted is None or wanted >= count:
        return list(range(count))
    return [int(i * count / wanted) for i in range(wanted)]


def _short_side(image: torch.Tensor, mask: torch.Tensor, size: Optional[int]):
    from ..data.segmentation import resize_pair

    if size is None:
        return image, mask
    h, w = mask.shape
    scale = size / min(h, w)
    target = (max(1, round(h * scale)), max(1, round(w * scale)))
    img, msk = resize_pair(image.float(), mask.long(), target)
    return img.round().clamp(0, 255).to(torch.uint8), msk.to(torch.uint8)


class _Split:
    """The chosen pairs of one split, decoded and resized once (uint8), and the dataset's transform."""

    def __init__(self, config: SegmentationConfig, split: str, wanted: Optional[int], data_root, augment: bool):
        from ..data.segmentation import SegmentationDataset

        ds = SegmentationDataset(DATASETS[config.dataset], split, data_root, preload=False, augment=augment,
                                 crop_size=config.crop, scale_range=config.scale_range, flip=config.flip,
                                 seed=config.seed)
        self.info, self.transform, self.seed = ds.info, ds.transform, config.seed
        self.indices = _spaced(len(ds), wanted)
        self.pairs = [_short_side(*ds.load_pair(i), config.image_size) for i in self.indices]
        self.names = [ds.pairs[i][0].name for i in self.indices]

    def __len__(self):
        return len(self.pairs)

    def item(self, position: int, epoch: int):
        from ..data.seeding import item_generator

        image, mask = self.pairs[position]
        gen = item_generator(self.seed, epoch, position) if self.transform.augment else None
        return self.transform(image, mask, gen)

    def train_batches(self, epoch: int, batch_size: int, device, channels_last: bool):
        """One epoch: a seeded permutation, full batches only (the last partial batch is dropped)."""
        from ..data.seeding import epoch_generator

        order = torch.randperm(len(self), generator=epoch_generator(self.seed, epoch)).tolist()
        for start in range(0, len(order) - batch_size + 1, batch_size):
            items = [self.item(i, epoch) for i in order[start:start + batch_size]]
            x = torch.stack([a for a, _ in items]).to(device, non_blocking=True)
            y = torch.stack([b for _, b in items]).to(device, non_blocking=True)
            yield (x.contiguous(memory_format=torch.channels_last) if channels_last else x), y

    def eval_batches(self, device, channels_last: bool, batch_size: int = 8):
        """The whole split in order, batching consecutive images of equal size (VOC's sizes vary)."""
        batch: list = []
        for i in range(len(self)):
            x, y = self.item(i, 0)
            if batch and (len(batch) == batch_size or batch[0][1].shape != y.shape):
                yield self._stack(batch, device, channels_last)
                batch = []
            batch.append((x, y))
        if batch:
            yield self._stack(batch, device, channels_last)

    @staticmethod
    def _stack(batch, device, channels_last):
        x = torch.stack([a for a, _ in batch]).to(device)
        y = torch.stack([b for _, b in batch]).to(device)
        return (x.contiguous(memory_format=torch.channels_last) if channels_last else x), y


def _shown_positions(count: int) -> List[int]:
    return _spaced(count, min(SHOWN_VAL_IMAGES, count))


@torch.no_grad()
def _evaluate(model, batches, num_classes: int, ignore_index: int, device, keep: Sequence[int] = ()):
    """Val loss (main head, mean over scored pixels), the confusion matrix, and the label maps at ``keep``."""
    model.eval()
    cm = ConfusionMatrix(num_classes, ignore_index, device=device)
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    pixels = torch.zeros((), device=device, dtype=torch.float64)
    kept, position = {}, 0
    for x, y in batches:
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, ignore_index=ignore_index, reduction="sum").double()
        pixels += (y != ignore_index).sum()
        prediction = logits.argmax(1)
        cm.update(prediction, y)
        for j in range(len(y)):
            if position + j in keep:
                kept[position + j] = prediction[j].to(torch.uint8).cpu()
        position += len(y)
    return float(loss_sum / pixels.clamp_min(1)), cm.matrix, [kept[i] for i in keep]


def _sidecar_name(key: str) -> str:
    return f"{key}.val_predictions.png"


def _write_predictions(path: Path, maps: List[torch.Tensor]) -> None:
    """The label maps stacked vertically into one 8-bit greyscale PNG (lossless), written atomically."""
    from PIL import Image

    stacked = torch.cat(maps, dim=0).numpy()

    def write(tmp: Path):
        buffer = io.BytesIO()
        Image.fromarray(stacked, mode="L").save(buffer, format="PNG")
        tmp.write_bytes(buffer.getvalue())

    write_atomically(path, write)


def load_val_predictions(record: Dict, store=None) -> torch.Tensor:
    """The final-epoch label maps a run kept for its fixed val images: uint8 ``[n, H, W]``."""
    from PIL import Image

    store = store or RunStore.default()
    meta = record["val_predictions"]
    n, h, w = meta["shape"]
    with Image.open(store.root / meta["file"]) as im:
        array = torch.from_numpy(np.array(im, copy=True))
    if tuple(array.shape) != (n * h, w):
        raise ValueError(f"{meta['file']} is {tuple(array.shape)}, the record says {n} maps of {h}x{w}")
    return array.view(n, h, w)


def validation_examples(config: SegmentationConfig, data_root=None) -> Dict:
    """The fixed val images a run of ``config`` keeps predictions for, as the run saw them.

    Returns ``{"images": uint8 [n, H, W, 3], "masks": uint8 [n, H, W], "names": [...], "info": info}``.
    """
    config.validate()
    val = _Split(config, "val", config.val_images, data_root, augment=False)
    shown = _shown_positions(len(val))
    return {
        "images": torch.stack([val.pairs[i][0].permute(1, 2, 0) for i in shown]),
        "masks": torch.stack([val.pairs[i][1] for i in shown]),
        "names": [val.names[i] for i in shown],
        "info": val.info,
    }


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------

def _setup(config: SegmentationConfig, data_root, dev) -> SimpleNamespace:
    """Data, network, optimizer and weight of a run, in the order that fixes its random numbers."""
    train = _Split(config, "train", config.train_images, data_root, augment=True)
    val = _Split(config, "val", config.val_images, data_root, augment=False)
    info = train.info
    steps_per_epoch = len(train) // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {config.batch_size} is larger than the {len(train)} training images")
    weight = ScheduledWeight(config.weight, config.weight_place, config.allow_negative)
    lowest_weight = weight.check(config.epochs, steps_per_epoch)
    seed_everything(config.seed)
    model = PSPNet(info.num_classes, config.backbone,
                   pretrained_backbone="imagenet" if config.pretrained else None).to(dev)
    channels_last = channels_last_is_safe(model, dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), **dict(config.optimizer_settings))
    shown = _shown_positions(len(val))
    facts = {
        "data": {"dataset": info.name, "train_images": len(train), "val_images": len(val),
                 "num_classes": info.num_classes, "class_names": list(info.class_names),
                 "ignore_index": info.ignore_index, "steps_per_epoch": steps_per_epoch,
                 "val_image_shape": list(val.pairs[0][1].shape), "shown_val_images": [val.names[i] for i in shown]},
        "backbone_init": "imagenet" if config.pretrained else "random",
        "backbone_weights_file": model.backbone_init if config.pretrained else None,
        "aux_loss_weight": AUX_LOSS_WEIGHT,
        "negative_weights": lowest_weight < 0,
    }
    return SimpleNamespace(device=dev, train=train, val=val, info=info, steps_per_epoch=steps_per_epoch,
                           weight=weight, model=model, channels_last=channels_last, optimizer=optimizer,
                           base=base_settings(optimizer), shown=shown, facts=facts)


def train_epoch(config: SegmentationConfig, t: SimpleNamespace, epoch: int, step: int,
                run: RecordedRun) -> Tuple[Dict, NonFiniteWatch]:
    """One epoch of weighted steps (paper Eq. 1) from global ``step``: the means of its steps and its
    non-finite watch."""
    t.model.train()
    sums = EpochSums(t.device, loss=(), weighted_loss=(), main_loss=())
    watch = NonFiniteWatch(t.device)
    ignore = t.info.ignore_index
    for x, y in t.train.train_batches(epoch, config.batch_size, t.device, t.channels_last):
        out = t.model(x)
        main = F.cross_entropy(out.main, y, ignore_index=ignore)
        loss = main + AUX_LOSS_WEIGHT * F.cross_entropy(out.aux, y, ignore_index=ignore)
        progress = Progress(step, t.steps_per_epoch, config.epochs)
        w = t.weight.value(progress)  # the weight for this step
        lr = t.weight.set_lr(t.optimizer, t.base, config.lr_schedule(progress), w)  # x w at place "lr"
        t.optimizer.zero_grad(set_to_none=True)
        t.weight.scale_loss(loss, w).backward()  # w x loss at place "loss"
        t.weight.scale_grads(t.optimizer, w)  # w x gradient at place "grad"
        t.optimizer.step()
        watch.observe(step, loss)
        sums.add(loss=loss.detach().double(), main_loss=main.detach().double(),
                 weighted_loss=loss.detach().double() * (w if config.weight_place == "loss" else 1.0))
        run.log_step(w, lr)
        step += 1
    schedule = run.epoch_schedule()
    return dict(sums.means(schedule["steps"]), **schedule), watch


def _validate(t: SimpleNamespace):
    return _evaluate(t.model, t.val.eval_batches(t.device, t.channels_last), t.info.num_classes,
                     t.info.ignore_index, t.device, keep=t.shown)


def train_segmenter(config: SegmentationConfig, data_root=None, device: str = "auto", store=None,
                    force: bool = False, progress: bool = True, checkpoint_every: int = 1) -> Dict:
    """Train (or load) one PSPNet run and return its record (a JSON-ready dict).

    ``store``: a :class:`lossdecay_lib.runs.RunStore` (default: the checkout's ``records/``); a finished
    record with the same key is returned as is unless ``force``. The run checkpoints every
    ``checkpoint_every`` epochs and resumes from there if interrupted. Besides per-epoch train and val
    metrics the record names the backbone's initialisation (``backbone_init``) and the PNG beside it
    holding the final predictions for :data:`SHOWN_VAL_IMAGES` fixed val images.
    """
    run = RecordedRun.for_config(config, store, force=force, checkpoint_every=checkpoint_every)
    if run.finished is not None:
        return run.finished
    t = _setup(config, data_root, resolve_device(device))
    record = run.new_record("segmentation", config, t.device)
    record.update(t.facts)
    stateful = dict(model=t.model, optimizer=t.optimizer)
    start_epoch, step, record = run.resume(record, **stateful)
    run.show_progress(config.epochs * t.steps_per_epoch, f"{config.label or 'PSPNet'}, seed {config.seed}",
                       progress, done=step)
    kept: List[torch.Tensor] = []
    for epoch in range(start_epoch, config.epochs):
        train, watch = train_epoch(config, t, epoch, step, run)
        step += t.steps_per_epoch
        if watch.first() is not None:
            return run.diverge(record, epoch, watch.first(), step)
        val_loss, matrix, kept = _validate(t)
        scores = segmentation_scores(matrix, list(t.info.class_names))
        record["epochs"].append({
            "epoch": epoch, "train_loss": train["loss"], "train_loss_weighted": train["weighted_loss"],
            "train_main_loss": train["main_loss"], "val_loss": val_loss, "val_miou": scores["miou"],
            "val_pixel_acc": scores["pixel_acc"], "val_per_class_iou": scores["per_class_iou"],
            "val_classes_scored": scores["classes_scored"], "weight_mean": train["weight_mean"], "lr_mean": train["lr_mean"],
            "seconds": run.elapsed})
        run.bar.set_postfix(val_miou=f"{scores['miou']:.3f}")
        run.end_epoch(record, epoch, config.epochs, step, **stateful)
    if not kept:  # resumed after the last epoch's checkpoint: nothing was evaluated in this process
        kept = _validate(t)[2]
    return run.finish(record, _summary(record, kept, t.shown, run))


def _summary(record: Dict, kept: List[torch.Tensor], shown: List[int], run: RecordedRun) -> Dict:
    """The final metrics, and the final predictions written beside the record (a PNG)."""
    sidecar = _sidecar_name(run.key)
    _write_predictions(run.store.root / sidecar, kept)
    mious = [e["val_miou"] for e in record["epochs"]]
    best = max(range(len(mious)), key=lambda i: -math.inf if math.isnan(mious[i]) else mious[i])
    last = record["epochs"][-1]
    return {
        "final_val_miou": last["val_miou"],
        "final_val_pixel_acc": last["val_pixel_acc"],
        "final_val_per_class_iou": last["val_per_class_iou"],
        "best_val_miou_over_epochs": mious[best],  # selects the epoch on the val split: the authors' number
        "best_epoch": best,
        "val_predictions": {"file": sidecar, "shape": [len(kept), *kept[0].shape], "positions": shown,
                            "images": record["data"]["shown_val_images"], "epoch": len(mious) - 1},
    }
