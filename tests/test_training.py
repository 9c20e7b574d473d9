"""The classification loop on real CIFAR-10 (tiny subsets): records, keys, validation, divergence."""

import math

import pytest

from lossdecay_lib import schedules as S
from lossdecay_lib.runs import RunStore
from lossdecay_lib.statistics import summarize
from lossdecay_lib.training import ClassificationConfig, train_classifier, train_seeds


def _tiny(**changes):
    base = ClassificationConfig(profile="smoke", model_settings=(("depth", 5), ("widths", 4)), train_per_class=8,
                                test_per_class=4, epochs=2, batch_size=16)
    return base.with_(**changes)


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "records")


def test_record_has_everything_and_is_reloaded_by_key(store):
    cfg = _tiny(weight=S.linear_decay(2.0), label="decay")
    rec = train_classifier(cfg, store=store, progress=False)
    assert rec["status"] == "finished" and len(rec["epochs"]) == 2
    e = rec["epochs"][0]
    for k in ("train_loss", "train_loss_weighted", "test_acc", "test_loss", "weight_mean", "lr_mean", "grad_norm"):
        assert math.isfinite(e[k]), k
    assert len(e["layer_grad_norms"]) == 5 == len(rec["layers"])
    # 5 steps per epoch: epoch 0's weights are 2, 1.8, ..., 1.2 (mean 1.6).
    assert e["weight_mean"] == pytest.approx(1.6)
    assert e["train_loss_weighted"] == pytest.approx(e["train_loss"] * e["weight_mean"], rel=0.15)
    for k in ("profile", "seed", "device", "torch", "lossdecay_lib", "date"):
        assert k in rec["provenance"]
    assert rec["data"]["train_images"] == 80 and rec["data"]["test_images"] == 40
    accs = [e["test_acc"] for e in rec["epochs"]]
    assert all((a * 40).is_integer() for a in accs)  # a share of the 40 test images
    assert rec["final_test_acc"] == accs[-1] and rec["best_test_acc_over_epochs"] == accs[rec["best_epoch"]] == max(accs)
    assert store.path(rec["key"]).is_file()
    again = train_classifier(cfg, store=store, progress=False)
    assert again == rec  # loaded, not retrained
    other = train_classifier(cfg.with_(seed=1), store=store, progress=False)
    assert other["key"] != rec["key"]


def test_same_seed_same_record_on_the_cpu(tmp_path):
    a = train_classifier(_tiny(), store=RunStore(tmp_path / "a"), progress=False)
    b = train_classifier(_tiny(), store=RunStore(tmp_path / "b"), progress=False)
    strip = lambda r: [{k: v for k, v in e.items() if k != "seconds"} for e in r["epochs"]]  # noqa: E731
    assert strip(a) == strip(b)


def test_loss_and_learning_rate_places_agree_for_plain_sgd(store):
    sgd = (("lr", 0.05),)
    on_loss = train_classifier(_tiny(weight=S.linear_decay(2.0), optimizer_settings=sgd), store=store, progress=False)
    on_lr = train_classifier(_tiny(weight=S.linear_decay(2.0), weight_place="lr", optimizer_settings=sgd), store=store,
                             progress=False)
    for a, b in zip(on_loss["epochs"], on_lr["epochs"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["test_acc"] == pytest.approx(b["test_acc"], abs=1e-9)


def test_divergence_is_recorded_not_hidden(store):
    no_norm = (("depth", 5), ("widths", 4), ("batch_norm", False))
    with pytest.warns(RuntimeWarning, match=r"diverged: non-finite loss or gradient at step \d+ \(epoch 0, weight 1, "
                                            r"learning rate 1e\+06\)"):
        rec = train_classifier(_tiny(model_settings=no_norm, optimizer_settings=(("lr", 1e6),), epochs=3), store=store,
                               progress=False)
    assert rec["status"] == "diverged" and rec["diverged_at"]["epoch"] == 0
    assert 0 <= rec["diverged_at"]["step"] < rec["data"]["steps_per_epoch"]
    s = summarize([rec])
    assert s["diverged"] == [0] and s["seeds"] == []


@pytest.mark.parametrize("changes, message", [
    (dict(profile="laptop"), "unknown profile 'laptop'; valid profiles"),
    (dict(model="vgg"), "unknown network 'vgg'; valid networks: plain, resnet18_cifar, resnet34_cifar"),
    (dict(optimizer="lamb"), "unknown optimizer 'lamb'; valid optimizers"),
    (dict(weight_place="weights"), "unknown place 'weights'"),
    (dict(epochs=0), "epochs must be a positive integer"),
    (dict(batch_size=-1), "batch_size must be a positive integer"),
    (dict(train_per_class=0), "train_per_class must be a positive integer or None"),
    (dict(model_settings=(("depth", 2),)), "depth"),
    (dict(optimizer_settings=(("momentum", 0.9),)), "must include the base learning rate"),
])
def test_bad_configurations_fail_before_any_work(changes, message, store):
    with pytest.raises(ValueError, match=message):
        train_classifier(_tiny(**changes), store=store, progress=False)
    assert not store.root.exists() or not list(store.root.glob("*.json"))


def test_negative_weights_need_permission(store):
    with pytest.raises(ValueError, match="goes negative"):
        train_classifier(_tiny(weight=S.linear_decay(1.0, -1.0)), store=store, progress=False)


def test_schedule_free_sgd_trains_and_evaluates(store):
    rec = train_classifier(_tiny(optimizer="sgd_schedule_free", optimizer_settings=(("lr", 0.5), ("momentum", 0.9))),
                           store=store, progress=False)
    correct = rec["final_test_acc"] * rec["data"]["test_images"]  # a count of the 40 test images
    assert rec["status"] == "finished" and correct == pytest.approx(round(correct))
    assert [e["lr_mean"] for e in rec["epochs"]] == [0.5, 0.5]  # no schedule: Schedule-Free needs none


def test_curvature_tracking_is_recorded_and_keys_of_untracked_runs_are_unchanged(store):
    plain = _tiny()
    assert "curvature_every" not in plain.describe()  # old records keep their keys
    tracked = _tiny(curvature_every=3, sharpness_every=2)
    assert tracked.describe()["curvature_every"] == 3
    rec = train_classifier(tracked, store=store, progress=False)
    rows = rec["curvature"]
    assert [r["step"] for r in rows] == [0, 3, 6, 9]
    assert [(r["weight"], r["lr"]) for r in rows] == [(1.0, 0.05)] * 4  # what was in force at each step
    assert [r["sharpness"] is not None for r in rows] == [True, False, True, False]
    untracked = train_classifier(plain, store=store, progress=False)
    assert "curvature" not in untracked
    assert [e["test_acc"] for e in untracked["epochs"]] == [e["test_acc"] for e in rec["epochs"]]
    with pytest.raises(ValueError, match="curvature_every must be a non-negative integer"):
        _tiny(curvature_every=-1).validate()


def test_a_curvature_adaptive_weight_is_set_from_the_measurements(store):
    adaptive = S.curvature_adaptive(max_weight=2.0, momentum=0.0, smoothing=0.0)
    with pytest.raises(ValueError, match="needs curvature_every > 0"):
        _tiny(weight=adaptive).validate()
    rec = train_classifier(_tiny(weight=adaptive, curvature_every=2, optimizer_settings=(("lr", 0.05),)),
                           store=store, progress=False)
    rows = rec["curvature"]
    # each measurement sets the weight of the steps after it to min(2, g^T g / (lr g^T H g))
    expected = [adaptive.target(r["gTg"], r["gTHg"], r["lr"]) for r in rows]
    assert [r["weight"] for r in rows[1:]] == pytest.approx(expected[:-1])
    assert rows[0]["weight"] == 2.0


def test_loss_decay_means_the_same_under_bf16_autocast(store):
    """Under autocast the weight multiplies the fp32 loss: for plain SGD, weighting the loss still equals
    weighting the learning rate (up to bf16 rounding of the backward pass), and the record says bf16."""
    sgd = (("lr", 0.05),)
    cfg = _tiny(weight=S.linear_decay(2.0), optimizer_settings=sgd, precision="bf16")
    assert cfg.describe()["precision"] == "bf16" and "precision" not in _tiny().describe()
    on_loss = train_classifier(cfg, store=store, progress=False)
    on_lr = train_classifier(cfg.with_(weight_place="lr"), store=store, progress=False)
    fp32 = train_classifier(cfg.with_(precision="fp32"), store=store, progress=False)
    for a, b, c in zip(on_loss["epochs"], on_lr["epochs"], fp32["epochs"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=2e-2)
        assert a["train_loss"] == pytest.approx(c["train_loss"], rel=5e-2)
        assert a["train_loss_weighted"] == pytest.approx(a["train_loss"] * a["weight_mean"], rel=0.15)
    assert on_loss["epochs"][0]["train_loss"] != fp32["epochs"][0]["train_loss"]  # autocast really ran
    with pytest.raises(ValueError, match="unknown precision 'fp16'; valid precisions: fp32, bf16"):
        _tiny(precision="fp16").validate()
    with pytest.raises(ValueError, match="compile must be True or False"):
        _tiny(compile="yes").validate()


def test_the_measurement_batch_can_be_smaller_than_the_training_batch(store):
    tracked = _tiny(curvature_every=5, curvature_batch=8)
    assert tracked.describe()["curvature_batch"] == 8 and "curvature_batch" not in _tiny().describe()
    rec = train_classifier(tracked, store=store, progress=False)
    full = train_classifier(tracked.with_(curvature_batch=0), store=store, progress=False)
    assert [r["gTg"] for r in rec["curvature"]] != [r["gTg"] for r in full["curvature"]]  # another batch
    assert [e["test_acc"] for e in rec["epochs"]] == [e["test_acc"] for e in full["epochs"]]  # same training


def test_train_seeds_trains_every_configuration_at_every_seed_with_the_tasks_function(tmp_path):
    seen = []

    def train(config, store, **kwargs):  # stands for train_classifier, train_segmenter or train_pix2pix
        seen.append((config.label, config.seed, kwargs))
        return {"label": config.label, "seed": config.seed}

    records = train_seeds(train, [_tiny(label="a"), _tiny(label="b")], [0, 3], jobs=1, executor="local",
                          store=RunStore(tmp_path), progress=False)
    assert [(r["label"], r["seed"]) for r in records] == [("a", 0), ("a", 3), ("b", 0), ("b", 3)]
    assert all(kwargs == {"progress": False} for _, _, kwargs in seen)
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        train_seeds(train, [_tiny(epochs=0)], [0], jobs=1, store=RunStore(tmp_path))  # validated first
