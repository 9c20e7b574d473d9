"""Segmentation metrics against a confusion matrix computed by hand, and against torchmetrics."""

import math

import pytest
import torch

from lossdecay_lib.metrics import ConfusionMatrix, iou_per_class, segmentation_scores


def test_confusion_matrix_by_hand_with_ignore():
    # 3 classes, ignore index 255. Pixels (truth, prediction):
    target = torch.tensor([[0, 0, 1, 1], [2, 255, 1, 0]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 2, 2, 0]])
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(pred, target)
    # (0,0) x2, (0,1) x1, (1,1) x2, (1,2) x1, (2,0) x1; the ignored pixel (predicted 2) is not counted
    expected = torch.tensor([[2, 1, 0], [0, 2, 1], [1, 0, 0]])
    assert torch.equal(cm.matrix, expected)
    s = segmentation_scores(cm.matrix, ["a", "b", "c"])
    # IoU: a = 2/(3+3-2) = 0.5; b = 2/(3+3-2) = 0.5; c = 0/(1+1-0) = 0
    assert s["per_class_iou"] == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.0})
    assert s["miou"] == pytest.approx(1 / 3)
    assert s["pixel_acc"] == pytest.approx(4 / 7)
    assert s["pixels"] == 7


def test_class_absent_from_truth_and_prediction_is_excluded():
    cm = ConfusionMatrix(4, ignore_index=3)
    cm.update(torch.tensor([0, 0, 1, 1, 2]), torch.tensor([0, 1, 1, 1, 3]))
    ious = iou_per_class(cm.matrix)
    # the only pixel predicted 2 has truth 3 = the ignore index: classes 2 and 3 appear nowhere scored
    assert math.isnan(ious[2]) and math.isnan(ious[3]) and not math.isnan(ious[0])
    s = segmentation_scores(cm.matrix)
    assert s["per_class_iou"]["2"] is None and s["per_class_iou"]["3"] is None
    assert s["classes_scored"] == 2
    assert s["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_accumulates_over_batches_and_matches_torchmetrics():
    torchmetrics = pytest.importorskip("torchmetrics")
    g = torch.Generator().manual_seed(0)
    cm = ConfusionMatrix(5, ignore_index=5)
    reference = torchmetrics.classification.MulticlassConfusionMatrix(num_classes=5, ignore_index=5)
    for _ in range(3):
        target = torch.randint(0, 6, (2, 7, 9), generator=g)
        pred = torch.randint(0, 5, (2, 7, 9), generator=g)
        cm.update(pred, target)
        reference.update(pred, target)
    assert torch.equal(cm.matrix, reference.compute().long())
    cm.reset()
    assert int(cm.matrix.sum()) == 0


def test_shape_mismatch_and_bad_class_count():
    with pytest.raises(ValueError, match="shape"):
        ConfusionMatrix(3).update(torch.zeros(2, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="positive integer"):
        ConfusionMatrix(0)
