"""Runs survive interruption: atomic checkpoints, and a run killed with SIGKILL resumes to the same record."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from lossdecay_lib.checkpoints import load_checkpoint, save_checkpoint
from lossdecay_lib.runs import RunStore, run_key
from lossdecay_lib.training import ClassificationConfig, train_classifier

ROOT = Path(__file__).resolve().parents[1]
CONFIG = dict(profile="smoke", model_settings=(("depth", 5), ("widths", 4)), train_per_class=40, test_per_class=4,
              epochs=4, batch_size=10)


def test_checkpoint_roundtrip_and_a_failed_save_keeps_the_old_one(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"step": 3, "w": torch.arange(3.0), "record": {"epochs": [{"a": 1.5}]}})
    with pytest.raises(Exception):
        save_checkpoint(path, {"step": 4, "bad": lambda: 0})  # not serialisable: fails mid-write
    state = load_checkpoint(path)
    assert state["step"] == 3 and torch.equal(state["w"], torch.arange(3.0))
    assert os.listdir(tmp_path) == ["c.pt"]
    assert load_checkpoint(tmp_path / "none.pt") is None


def _epochs(record):
    return [{k: v for k, v in e.items() if k != "seconds"} for e in record["epochs"]]


def test_a_run_killed_mid_epoch_resumes_to_the_record_of_an_uninterrupted_run(tmp_path):
    killed_store = tmp_path / "killed"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        from lossdecay_lib.runs import RunStore
        from lossdecay_lib.training import ClassificationConfig, train_classifier
        train_classifier(ClassificationConfig(**{CONFIG!r}), store=RunStore({str(killed_store)!r}), progress=False)
    """))
    cfg = ClassificationConfig(**CONFIG)
    key = run_key(cfg)
    checkpoint = killed_store / f"{key}.ckpt.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(script)], env=env, cwd=ROOT)
    deadline = time.time() + 180
    while not checkpoint.exists():
        assert proc.poll() is None, "the run ended before writing a checkpoint"
        assert time.time() < deadline, "no checkpoint after 180 s"
        time.sleep(0.02)
    time.sleep(0.05)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed_store / f"{key}.json").exists(), "the run finished before it could be killed"
    partial = load_checkpoint(checkpoint)
    assert 1 <= len(partial["record"]["epochs"]) < CONFIG["epochs"]

    resumed = train_classifier(cfg, store=RunStore(killed_store), progress=False)
    fresh = train_classifier(cfg, store=RunStore(tmp_path / "fresh"), progress=False)
    assert _epochs(resumed) == _epochs(fresh)
    assert resumed["final_test_acc"] == fresh["final_test_acc"]
    assert not checkpoint.exists()
    assert json.loads((killed_store / f"{key}.json").read_text())["status"] == "finished"


def test_checkpoint_every_is_validated(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_every must be a positive integer"):
        train_classifier(ClassificationConfig(**CONFIG), store=RunStore(tmp_path), checkpoint_every=0)
