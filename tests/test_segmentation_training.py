"""The segmentation loop on real CamVid (tiny subsets): records, keys, scores, predictions, validation.

The network's own shapes and heads are tested in ``tests/test_models.py``; the metrics by hand in
``tests/test_metrics.py``. Here: what the loop makes of them.
"""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from lossdecay_lib import schedules as S
from lossdecay_lib.data.paths import DATA_ENV
from lossdecay_lib.models.pspnet import AUX_LOSS_WEIGHT
from lossdecay_lib.runs import RunStore, run_key
from lossdecay_lib.training import SegmentationConfig, train_segmenter
from lossdecay_lib.training.segmentation import load_val_predictions, validation_examples

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get(DATA_ENV) or REPO.parent / "shared" / "data")


@pytest.fixture
def data_root():
    if not any((DATA_ROOT / entry).exists() for entry in ("CamVid", "camvid.tar.gz")):
        pytest.skip(f"real CamVid not available in {DATA_ROOT} (set {DATA_ENV} to a folder that has it)")
    return DATA_ROOT


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "records")


def _tiny(**changes):
    base = SegmentationConfig(profile="smoke", dataset="camvid", backbone="resnet18", train_images=2,
                              val_images=2, image_size=48, crop=32, epochs=1, batch_size=2)
    return base.with_(**changes)


def test_tiny_camvid_run_is_recorded_scored_and_reloaded_by_key(data_root, store):
    config = _tiny(label="tiny")
    record = train_segmenter(config, data_root=data_root, store=store, progress=False)
    assert record["status"] == "finished" and record["kind"] == "segmentation"
    assert record["key"] == run_key(config)
    assert record["backbone_init"] == "random" and record["aux_loss_weight"] == AUX_LOSS_WEIGHT
    assert record["data"]["train_images"] == 2 and record["data"]["val_images"] == 2
    (epoch,) = record["epochs"]
    for name in ("train_loss", "train_loss_weighted", "train_main_loss", "val_loss", "lr_mean", "weight_mean"):
        assert np.isfinite(epoch[name]), name
    assert epoch["train_loss"] > epoch["train_main_loss"] > 0  # the auxiliary head's loss is added
    assert epoch["weight_mean"] == 1.0 and epoch["train_loss_weighted"] == pytest.approx(epoch["train_loss"])
    ious = [v for v in record["final_val_per_class_iou"].values() if v is not None]
    assert record["final_val_miou"] == pytest.approx(sum(ious) / len(ious))  # classes present only
    assert record["best_val_miou_over_epochs"] == record["final_val_miou"] == epoch["val_miou"]
    assert record["best_epoch"] == 0
    assert set(record["final_val_per_class_iou"]) == set(record["data"]["class_names"])

    # the kept predictions are the whole (2-image) val subset: rescore them independently
    predictions = load_val_predictions(record, store)
    examples = validation_examples(config, data_root=data_root)
    assert predictions.shape == examples["masks"].shape == (2, 48, 64)
    assert examples["images"].shape == (2, 48, 64, 3)
    truth, pred = examples["masks"].long().flatten(), predictions.long().flatten()
    keep = truth != examples["info"].ignore_index
    truth, pred = truth[keep].numpy(), pred[keep].numpy()
    ious = []
    for c in range(examples["info"].num_classes):
        union = np.sum((truth == c) | (pred == c))
        if union:
            ious.append(np.sum((truth == c) & (pred == c)) / union)
    assert record["final_val_miou"] == pytest.approx(float(np.mean(ious)))
    assert record["final_val_pixel_acc"] == pytest.approx(float(np.mean(truth == pred)))

    again = train_segmenter(config.with_(label="shown elsewhere"), data_root=data_root, store=store, progress=False)
    assert again["wall_seconds"] == record["wall_seconds"] and again["epochs"] == record["epochs"]
    assert again["label"] == "shown elsewhere"


def test_same_seed_same_record_on_the_cpu_and_the_weight_is_in_force(data_root, tmp_path):
    config = _tiny(weight=S.linear_decay(start=2.0), epochs=2)
    a = train_segmenter(config, data_root=data_root, store=RunStore(tmp_path / "a"), progress=False)
    b = train_segmenter(config, data_root=data_root, store=RunStore(tmp_path / "b"), progress=False)
    strip = lambda r: [{k: v for k, v in e.items() if k != "seconds"} for e in r["epochs"]]  # noqa: E731
    assert strip(a) == strip(b)
    first, second = a["epochs"]
    assert first["weight_mean"] == pytest.approx(2.0) and second["weight_mean"] == pytest.approx(1.0)
    assert first["train_loss_weighted"] == pytest.approx(2.0 * first["train_loss"])
    assert first["lr_mean"] == pytest.approx(1e-3) and second["lr_mean"] < first["lr_mean"]  # poly 0.9


@pytest.mark.parametrize("changes, message", [
    (dict(dataset="cityscapes"), "unknown dataset 'cityscapes'; valid datasets: camvid, voc"),
    (dict(backbone="vgg16"), "unknown backbone 'vgg16'; valid backbones: resnet18, resnet34, resnet50, resnet101"),
    (dict(weight_place="weights"), "unknown place 'weights'; a schedule can act on one of: loss, grad, lr"),
    (dict(batch_size=1), "batch_size must be an integer >= 2"),
    (dict(crop=0), "crop must be a positive integer"),
    (dict(epochs=0), "epochs must be a positive integer"),
    (dict(train_images=1), r"train_images \(1\) must be at least batch_size \(2\)"),
    (dict(image_size=0), "image_size must be a positive integer or None"),
    (dict(scale_range=(2.0, 1.0)), "scale_range must satisfy"),
    (dict(optimizer_settings=(("betas", (0.9, 0.99)), ("lr", 0.1))), "unknown SGD settings.*valid: lr, momentum"),
    (dict(optimizer_settings=(("momentum", 0.9),)), "must include the base learning rate"),
    (dict(profile="laptop"), "unknown profile 'laptop'; valid profiles"),
])
def test_bad_configurations_fail_before_any_work(changes, message, store, tmp_path):
    missing = tmp_path / "no-data-here"  # the config is refused before any data is looked for
    with pytest.raises(ValueError, match=message):
        train_segmenter(_tiny(**changes), data_root=missing, store=store, progress=False)
    assert not store.root.exists() or not list(store.root.glob("*.json"))


def test_pretrained_needs_local_weights_and_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(ValueError, match="no ImageNet weights for resnet18.*nothing is downloaded"):
        _tiny(pretrained=True).validate()
    assert SegmentationConfig.from_profile("smoke").pretrained is False  # "auto": only when present


def test_negative_weights_need_allow_negative(data_root, store):
    weight = S.random_half(S.stretched(S.authors_code_weight(), epochs=200), seed=0, probability=1.0)
    config = _tiny(weight=weight, epochs=3)  # steps at epochs 0, 67 and 133 of 200: the last is negative
    with pytest.raises(ValueError, match="goes negative.*allow_negative=True"):
        train_segmenter(config, data_root=data_root, store=store, progress=False)
    record = train_segmenter(config.with_(allow_negative=True), data_root=data_root, store=store, progress=False)
    assert record["status"] in ("finished", "diverged") and record["negative_weights"] is True
