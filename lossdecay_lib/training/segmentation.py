"""The segmentation training loop: PSPNet with and without the loss weight (paper Section III.B, Table I).

A run is described by a :class:`SegmentationConfig`; :func:`train_segmenter` validates it before any
work, trains with the shared step (:class:`~lossdecay_lib.training.ScheduleController`) inside the
shared recorded-run lifecycle (:class:`~lossdecay_lib.training.loop.RecordedRun`), evaluates on the val
split after every epoch and writes a run record keyed by the configuration.

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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .classification import ScheduleController
from .loop import NonFiniteWatch, RecordedRun, progress_bar
from ..atomic import write_atomically
from ..runs import RunStore
from ..metrics import ConfusionMatrix, segmentation_scores
from ..models.pspnet import AUX_LOSS_WEIGHT, BACKBONES, PSPNet, cached_imagenet_weights
from ..models import channels_last_is_safe
from ..profiles import get_profile, resolve_device
from ..data.seeding import seed_everything
from ..schedules import Schedule, constant, poly
from ..checks import check_name, check_non_negative_int, check_positive_int
from ..weighting import ScheduledWeight, check_place

__all__ = ["DATASETS", "PAPER_SGD", "SegmentationConfig", "train_segmenter", "load_val_predictions",
           "validation_examples", "train_segmenter_seeds"]

#: ``dataset`` names of a config and the data module's names for them.
DATASETS = {"camvid": "camvid", "voc": "voc2012"}

#: The paper's text: momentum 0.95, learning rate 0.001; weight decay 5e-4 from the authors' script.
PAPER_SGD: Tuple[Tuple[str, object], ...] = (("lr", 0.001), ("momentum", 0.95), ("weight_decay", 5e-4))

#: How many fixed validation images keep their final predictions (for the paper's Fig. 6).
SHOWN_VAL_IMAGES = 3


@dataclass(frozen=True)
class SegmentationConfig:
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

    def validate(self) -> None:
        """Every bad value is an error before any work starts; names list the valid choices."""
        get_profile(self.profile)
        check_name(self.dataset, DATASETS, "dataset")
        check_name(self.backbone, BACKBONES, "backbone")
        check_place(self.weight_place)
        for name in ("epochs", "crop"):
            check_positive_int(name, getattr(self, name))
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or self.batch_size < 2:
            raise ValueError(f"batch_size must be an integer >= 2 (PSPNet's 1x1 pyramid bin needs batch "
                             f"statistics over at least 2 images), got {self.batch_size!r}")
        for name in ("train_images", "val_images", "image_size"):
            check_positive_int(name, getattr(self, name), allow_none=True)
        if self.train_images is not None and self.train_images < self.batch_size:
            raise ValueError(f"train_images ({self.train_images}) must be at least batch_size ({self.batch_size})")
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {self.scale_range}")
        check_non_negative_int("seed", self.seed)
        settings = dict(self.optimizer_settings)
        if "lr" not in settings:
            raise ValueError("optimizer_settings must include the base learning rate 'lr'")
        unknown = set(settings) - {"lr", "momentum", "weight_decay", "nesterov", "dampening"}
        if unknown:
            raise ValueError(f"unknown SGD settings {sorted(unknown)}; valid: lr, momentum, weight_decay, "
                             "nesterov, dampening")
        if not isinstance(self.weight, Schedule) or not isinstance(self.lr_schedule, Schedule):
            raise TypeError("weight and lr_schedule must be lossdecay_lib.schedules.Schedule objects")
        if self.pretrained and cached_imagenet_weights(self.backbone) is None:
            raise ValueError(
                f"pretrained=True but no ImageNet weights for {self.backbone} are in torch hub's cache "
                f"({torch.hub.get_dir()}/checkpoints; nothing is downloaded): put torchvision's file there, "
                "or use pretrained=False (or 'auto' in from_profile)")

    @classmethod
    def from_profile(cls, profile: str, pretrained="auto", dataset: str = "camvid", **changes) -> "SegmentationConfig":
        """A run at the sizes of ``profile``'s segmentation section with the paper's protocol.

        ``pretrained="auto"`` starts from ImageNet weights exactly when they are in the local cache.
        ``changes`` override fields.
        """
        prof = get_profile(profile)
        sizes = prof.segmentation
        if pretrained == "auto":
            pretrained = cached_imagenet_weights(sizes.backbone) is not None
        return cls(profile=prof.name, dataset=dataset, backbone=sizes.backbone, pretrained=bool(pretrained),
                   train_images=sizes.train_images, val_images=sizes.val_images, image_size=sizes.image_size,
                   crop=sizes.crop, epochs=sizes.epochs, batch_size=sizes.batch_size).with_(**changes)

    def with_(self, **changes) -> "SegmentationConfig":
        """A copy with some fields changed; a dict for ``optimizer_settings`` is accepted."""
        if isinstance(changes.get("optimizer_settings"), dict):
            changes["optimizer_settings"] = tuple(sorted(changes["optimizer_settings"].items()))
        return replace(self, **changes)

    def describe(self) -> Dict:
        """A JSON-ready description (schedules by their repr); the record's key is derived from it."""
        d = asdict(self)
        d.pop("label")
        d["weight"] = repr(self.weight)
        d["lr_schedule"] = repr(self.lr_schedule)
        d["optimizer_settings"] = dict(self.optimizer_settings)
        d["scale_range"] = list(self.scale_range)
        return d


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
    store, key = run.store, run.key

    dev = resolve_device(device)
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
    backbone_init = "imagenet" if config.pretrained else "random"
    optimizer = torch.optim.SGD(model.parameters(), **dict(config.optimizer_settings))
    controller = ScheduleController(optimizer, weight, config.lr_schedule, steps_per_epoch, config.epochs)
    shown = _shown_positions(len(val))

    record = run.new_record("segmentation", config, dev)
    record.update({
        "data": {"dataset": info.name, "train_images": len(train), "val_images": len(val),
                 "num_classes": info.num_classes, "class_names": list(info.class_names),
                 "ignore_index": info.ignore_index, "steps_per_epoch": steps_per_epoch,
                 "val_image_shape": list(val.pairs[0][1].shape), "shown_val_images": [val.names[i] for i in shown]},
        "backbone_init": backbone_init,
        "backbone_weights_file": model.backbone_init if config.pretrained else None,
        "aux_loss_weight": AUX_LOSS_WEIGHT,
        "negative_weights": lowest_weight < 0,
    })
    start_epoch, step, record = run.resume(record, model=model, optimizer=optimizer)
    bar = progress_bar(config.epochs * steps_per_epoch, f"{config.label or 'PSPNet'}, seed {config.seed}", progress)
    if bar is not None:
        bar.update(step)
    kept: List[torch.Tensor] = []
    for epoch in range(start_epoch, config.epochs):
        model.train()
        sums = torch.zeros(3, device=dev, dtype=torch.float64)  # loss, weighted loss, main-head loss
        watch = NonFiniteWatch(dev)
        for x, y in train.train_batches(epoch, config.batch_size, dev, channels_last):
            out = model(x)
            main = F.cross_entropy(out.main, y, ignore_index=info.ignore_index)
            loss = main + AUX_LOSS_WEIGHT * F.cross_entropy(out.aux, y, ignore_index=info.ignore_index)
            w, lr = controller.step(step, loss)
            with torch.no_grad():
                watch.observe(step, loss)
                sums[0] += loss.detach().double()
                sums[1] += loss.detach().double() * (w if config.weight_place == "loss" else 1.0)
                sums[2] += main.detach().double()
            run.log_step(w, lr)
            step += 1
            if bar is not None:
                bar.update(1)
        loss_sum, wloss_sum, main_sum = sums.tolist()
        bad_step = watch.first()
        if bad_step is not None:
            if bar is not None:
                bar.close()
            return run.diverge(record, epoch, bad_step, step)
        weight_mean, lr_mean, n_steps = run.epoch_schedule()
        val_loss, matrix, kept = _evaluate(model, val.eval_batches(dev, channels_last), info.num_classes,
                                           info.ignore_index, dev, keep=shown)
        scores = segmentation_scores(matrix, list(info.class_names))
        record["epochs"].append({
            "epoch": epoch,
            "train_loss": loss_sum / n_steps,
            "train_loss_weighted": wloss_sum / n_steps,
            "train_main_loss": main_sum / n_steps,
            "val_loss": val_loss,
            "val_miou": scores["miou"],
            "val_pixel_acc": scores["pixel_acc"],
            "val_per_class_iou": scores["per_class_iou"],
            "val_classes_scored": scores["classes_scored"],
            "weight_mean": weight_mean,
            "lr_mean": lr_mean,
            "seconds": run.elapsed,
        })
        if bar is not None:
            bar.set_postfix(val_miou=f"{scores['miou']:.3f}")
        run.end_epoch(record, epoch, config.epochs, step, model=model, optimizer=optimizer)
    if bar is not None:
        bar.close()
    if not kept:  # resumed after the last epoch's checkpoint: nothing was evaluated in this process
        _, _, kept = _evaluate(model, val.eval_batches(dev, channels_last), info.num_classes,
                               info.ignore_index, dev, keep=shown)
    sidecar = _sidecar_name(key)
    _write_predictions(store.root / sidecar, kept)
    mious = [e["val_miou"] for e in record["epochs"]]
    best = max(range(len(mious)), key=lambda i: -math.inf if math.isnan(mious[i]) else mious[i])
    last = record["epochs"][-1]
    return run.finish(record, {
        "final_val_miou": last["val_miou"],
        "final_val_pixel_acc": last["val_pixel_acc"],
        "final_val_per_class_iou": last["val_per_class_iou"],
        "best_val_miou_over_epochs": mious[best],  # selects the epoch on the val split: the authors' number
        "best_epoch": best,
        "val_predictions": {"file": sidecar, "shape": [len(kept), *kept[0].shape], "positions": shown,
                            "images": record["data"]["shown_val_images"], "epoch": len(mious) - 1},
    })


def train_segmenter_seeds(configs: Sequence[SegmentationConfig], seeds: Sequence[int], **kwargs) -> List[Dict]:
    """Every configuration at every seed (finished runs are loaded, not retrained); records in order."""
    return [train_segmenter(c.with_(seed=s), **kwargs) for c in configs for s in seeds]
