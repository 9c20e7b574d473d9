import json
import os

import pytest
import torch

from lossdecay_lib.profiles import get_profile, resolve_device
from lossdecay_lib.atomic import read_json, write_json_atomic
from lossdecay_lib.data.seeding import seed_everything
from lossdecay_lib.provenance import start_chapter


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown profile 'fast'; valid profiles: smoke, quick, cpu, gpu, paper, auto"):
        get_profile("fast")


@pytest.mark.parametrize("cuda, profile, device", [(True, "gpu", "cuda"), (False, "cpu", "cpu")])
def test_auto_profile_and_device_follow_cuda(monkeypatch, cuda, profile, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert get_profile("auto").name == profile and resolve_device("auto").type == device
    assert get_profile(profile) is get_profile("auto")  # auto is a name for another profile, not a sixth one


def test_profiles_grow_from_smoke_to_gpu():
    smoke, cpu, gpu = (get_profile(n).equivalence for n in ("smoke", "cpu", "gpu"))
    assert smoke.steps < cpu.steps <= gpu.steps
    assert get_profile("cpu").seeds >= 3 and get_profile("gpu").seeds >= 3


def test_resolve_device_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_seed_everything_validates():
    seed_everything(3)
    a = torch.rand(3)
    seed_everything(3)
    assert torch.equal(a, torch.rand(3))
    for bad in (-1, 1.5, "1", True):
        with pytest.raises(ValueError, match="non-negative integer"):
            seed_everything(bad)


def test_write_json_atomic_replaces_and_never_leaves_a_broken_file(tmp_path):
    path = tmp_path / "sub" / "record.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2})
    assert read_json(path) == {"a": 2}
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object()})  # not serialisable: fails mid-write
    assert read_json(path) == {"a": 2}
    assert os.listdir(path.parent) == ["record.json"]


def test_start_chapter_prints_what_it_runs_with(capsys):
    run = start_chapter(profile="quick", seed=5, device="cpu")
    out = capsys.readouterr().out
    assert "profile: quick" in out and "seed: 5" in out and "lossdecay_lib 0.1.0" in out
    assert run.info["device"] == "cpu" and run.info["device_name"].startswith("CPU (")
    assert run.seeds == [5, 6, 7]  # the quick profile's three seeds, from the chapter's seed on
    run.started -= 2.0  # as if the chapter had run for two seconds
    assert 2.0 <= run.finish() < 60
    assert "Executed in 2." in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown profile"):
        start_chapter(profile="laptop")
    json.dumps(run.info)  # provenance is plain JSON


def test_setting_names_show_diverged_runs_and_negative_weights():
    from lossdecay_lib.statistics import summarize
    from lossdecay_lib.tables import setting_name

    ok = {"status": "finished", "negative_weights": False}
    assert setting_name("decay", [ok, ok]) == "decay (n=2)"
    assert setting_name("x", [ok, {"status": "diverged"}]) == "x (n=1, 1 diverged)"
    neg = {"status": "finished", "negative_weights": True}
    assert setting_name("code", [neg, neg]) == "code (n=2, negative weights)"
    rec = dict(neg, final_test_acc=0.5, best_test_acc_over_epochs=0.6, config={"seed": 0},
               provenance={"profile": "smoke", "device_name": "CPU"})
    assert summarize([rec])["negative_weights"] is True


@pytest.mark.parametrize("parameters, error, message", [
    (dict(profile="laptop"), ValueError, "unknown profile 'laptop'; valid profiles: smoke, quick, cpu, gpu, paper, auto"),
    (dict(seed=-1), ValueError, "seed must be a non-negative integer"),
    (dict(seed="3"), ValueError, "seed must be a non-negative integer"),
    (dict(device="tpu"), ValueError, "unknown device 'tpu'"),
    (dict(data_root="/no/such/folder"), FileNotFoundError, "the data root /no/such/folder .* does not exist"),
    (dict(force="yes"), ValueError, "force must be True or False"),
    (dict(epochs=0), ValueError, "epochs must be a positive integer"),
    (dict(batch_size=2.5), ValueError, "batch_size must be a positive integer"),
])
def test_chapter_parameters_are_validated_before_any_work(parameters, error, message):
    from lossdecay_lib.provenance import start_chapter

    with pytest.raises(error, match=message):
        start_chapter(**{"profile": "smoke", **parameters}, quiet=True)
