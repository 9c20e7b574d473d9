"""Runs in parallel (identical records), the campaign's plan and command line, the cpu profile's sizes,
and the one-commit key migration of the committed records."""

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lossdecay_lib import experiments as E
from lossdecay_lib import schedules as S
from lossdecay_lib.campaign import cost, plan, run_parallel
from lossdecay_lib.data import CifarBatches
from lossdecay_lib.profiles import get_profile
from lossdecay_lib.runs import RunStore, config_key, run_key
from lossdecay_lib.tables import cost_table
from lossdecay_lib.training import ClassificationConfig, train_classifier, train_seeds

ROOT = Path(__file__).resolve().parents[1]
TIMING = {"seconds", "wall_seconds", "cpu_seconds", "date", "device_name"}


def _tiny(**changes):
    base = ClassificationConfig(profile="smoke", model_settings=(("depth", 5), ("widths", 4)), train_per_class=8,
                                test_per_class=4, epochs=2, batch_size=16, image_size=16)
    return base.with_(**changes)


def _numbers(record):
    """A record without what a clock or a process sets (wall times, dates, thread counts)."""
    if isinstance(record, dict):
        return {k: _numbers(v) for k, v in record.items() if k not in TIMING}
    if isinstance(record, list):
        return [_numbers(v) for v in record]
    return record


def test_two_jobs_write_the_records_of_one(tmp_path):
    configs = [_tiny(label="constant"), _tiny(weight=S.linear_decay(2.0), label="decay")]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each parallel job runs; more threads sum in another order
    try:
        one = train_seeds(train_classifier, configs, [0, 1], jobs=1, store=RunStore(tmp_path / "one"),
                          progress=False)
    finally:
        torch.set_num_threads(threads)
    two = train_seeds(train_classifier, configs, [0, 1], jobs=2, store=RunStore(tmp_path / "two"), progress=False)
    assert [r["key"] for r in one] == [r["key"] for r in two]
    assert [_numbers(r) for r in one] == [_numbers(r) for r in two]
    assert sorted(p.name for p in (tmp_path / "two").glob("*.json")) == sorted(f"{r['key']}.json" for r in one)


def test_run_parallel_keeps_order_and_reports_each_run():
    seen = []
    out = run_parallel(math.sqrt, [4.0, 9.0, 16.0], 2, on_done=lambda i, r: seen.append(i))
    assert out == [2.0, 3.0, 4.0] and sorted(seen) == [0, 1, 2]
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        run_parallel(math.sqrt, [4.0], 0)


def test_pooled_batches_are_the_average_of_the_full_ones():
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(6)
    full = next(iter(CifarBatches((images, labels), 6, seed=3, device="cpu")))[0]
    pooled = next(iter(CifarBatches((images, labels), 6, seed=3, device="cpu", pool=2)))[0]
    assert pooled.shape == (6, 3, 16, 16)
    torch.testing.assert_close(pooled, F.avg_pool2d(full, 2))
    with pytest.raises(ValueError, match="pool must be a positive integer dividing the image side 32"):
        CifarBatches((images, labels), 6, pool=3)
    with pytest.raises(ValueError, match="image_size must be 8, 16 or 32"):
        _tiny(image_size=12).validate()


def test_pooled_run_trains_on_small_images(tmp_path):
    rec = train_classifier(_tiny(), store=RunStore(tmp_path), progress=False)
    assert rec["config"]["image_size"] == 16 and rec["status"] == "finished"
    e = rec["epochs"][-1]
    assert len(e["layer_weight_norms"]) == len(e["layer_effective_steps"]) == len(rec["layers"])
    assert all(v > 0 for v in e["layer_weight_norms"] + e["layer_effective_steps"])
    # an image_size of 32 is left out of the key, so records from before the field keep their keys
    assert "image_size" not in _tiny(image_size=32).describe()


def test_cpu_profile_trains_on_all_of_cifar10_at_16_pixels():
    sizes = get_profile("cpu").classification
    assert (sizes.train_images, sizes.test_images, sizes.image_size) == (50_000, 10_000, 16)
    quick = get_profile("quick").classification
    assert (quick.train_images, quick.image_size) == (2_000, 32)
    assert get_profile("quick").segmentation == get_profile("cpu").segmentation  # shared runs


def test_cpu_profile_runs_every_claim_of_schedules_compared_and_no_extra_baseline():
    # today's baselines answer no claim of the paper; the cpu budget cut them (issue 14)
    configs = E.schedules_compared("cpu")
    assert not set(configs) & set(E.EXTRA_BASELINES)
    assert {c.epochs for c in configs.values()} == {get_profile("cpu").classification.epochs}
    assert sum(c.model == "resnet34_cifar" for c in configs.values()) == 2


def test_campaign_shares_runs_between_chapters(tmp_path):
    configs = E.campaign_configs("cpu", list(E.CHAPTERS), [0, 1, 2])
    keys = [run_key(c) for c in configs]
    assert len(keys) == len(set(keys))
    per_chapter = {name: {run_key(c.with_(seed=s)) for c in E._flat(fn("cpu")) for s in (0, 1, 2)}
                   for name, fn in E.CHAPTERS.items()}
    assert set(keys) == set().union(*per_chapter.values())
    # the deep-plain-network runs come first, seed 0 of every setting before seed 1
    first = configs[:len(per_chapter["deep_plain_networks"])]
    assert {run_key(c) for c in first} == per_chapter["deep_plain_networks"]
    assert [c.seed for c in first] == sorted(c.seed for c in first)
    todo = plan("cpu", ["deep_plain_networks"], [0], RunStore(tmp_path))
    assert todo["done"] == [] and len(todo["missing"]) == 2 * len(get_profile("cpu").classification.depths)


@pytest.mark.parametrize("chapter", list(E.CHAPTERS))
def test_a_chapter_trains_only_the_runs_the_campaign_trains_for_it(chapter):
    """The campaign trains ``E.CHAPTERS[chapter]``'s runs; a chapter that also trained another chapter's
    settings (Death convergence once took its Fig. 4d control from "Schedules compared") would train at
    render time, or race the campaign for the same run."""
    source = (ROOT / "book" / f"{chapter}.py").read_text()
    assert set(re.findall(r"experiments\.(\w+)\(", source)) == {chapter}
    assert source.count("train_seeds(") == 1


@pytest.mark.parametrize("args, message", [
    (["--profile", "huge"], "error: unknown profile 'huge'"),
    (["--chapters", "nosuch"], "error: unknown chapter 'nosuch'"),
    (["--jobs", "0"], "error: jobs must be a positive integer"),
])
def test_campaign_command_line_errors_are_one_line(args, message, tmp_path):
    done = subprocess.run([sys.executable, "-m", "lossdecay_lib.campaign", "--dry-run", *args], cwd=ROOT,
                          capture_output=True, text=True, env={"LOSSDECAY_RECORDS": str(tmp_path), "PATH": ""})
    assert done.returncode == 2 and done.stderr.startswith(message) and "Traceback" not in done.stderr


def test_committed_records_migrated_to_keys_without_the_profile():
    migration = json.loads((ROOT / "records" / "migrations" / "2026-12-02-keys-without-profile.json").read_text())
    migration = migration["old_to_new"]
    assert len(set(migration.values())) == len(migration)  # one to one
    store = RunStore(ROOT / "records")
    for path in sorted((ROOT / "records").glob("*.json")):
        record = json.loads(path.read_text())
        without = {k: v for k, v in record["config"].items() if k != "profile"}
        assert record["key"] == path.stem == config_key(without), path.name
        for sidecar in re.findall(r"[0-9a-f]{16}\.(?:val_predictions\.png|samples\.pt)", path.read_text()):
            assert sidecar.startswith(record["key"]) and (ROOT / "records" / sidecar).is_file(), sidecar
        old = dict(record["config"], profile=record["provenance"].get("profile_renamed_from", record["config"]["profile"]))
        if config_key(old) in migration:
            assert migration[config_key(old)] == record["key"]
    migrated = ["deep_plain_networks", "death_convergence", "schedules_compared", "second_order"]  # before issue 19
    quick = E.campaign_configs("quick", migrated, [0, 1, 2])
    assert all(store.load(run_key(c)) is not None for c in quick)  # every quick-profile run still found


def test_cost_counts_finished_runs_and_their_core_hours(tmp_path):
    store = RunStore(tmp_path)
    first = E.campaign_configs("smoke", ["deep_plain_networks"], [0])[0]
    record = train_classifier(first, store=store, progress=False)
    rows = {r["chapter"]: r for r in cost("smoke", ["deep_plain_networks", "death_convergence"], [0], store)}
    dpn = rows["deep_plain_networks"]
    assert (dpn["finished"], dpn["runs"]) == (1, 2 * len(get_profile("smoke").classification.depths))
    assert dpn["core_hours"] == pytest.approx(record["cpu_seconds"] / 3600)
    assert 0 < record["cpu_seconds"] <= 1.5 * record["wall_seconds"]  # one thread: CPU time within wall time
    assert dpn["core_hours_left"] == pytest.approx(dpn["core_hours"] * (dpn["runs"] - 1))
    # a run the deep-plain-networks chapter shares with death convergence is counted once, in the first
    shared = {run_key(c) for c in E.campaign_configs("smoke", ["deep_plain_networks"], [0])}
    later = {run_key(c) for c in E.campaign_configs("smoke", ["death_convergence"], [0])}
    assert rows["death_convergence"]["runs"] == len(later - shared) and rows["death_convergence"]["finished"] == 0
    # a chapter with no finished run is estimated from the mean CPU time of the campaign's runs so far
    assert rows["death_convergence"]["core_hours_left"] == pytest.approx(dpn["core_hours"] * len(later - shared))
    assert dpn["wall_time_only"] == 0
    # a record from before cpu_seconds was kept counts its wall time, and says so
    store.save(record["key"], dict(record, cpu_seconds=None, wall_seconds=7200.0))
    dpn = {r["chapter"]: r for r in cost("smoke", ["deep_plain_networks"], [0], store)}["deep_plain_networks"]
    assert (dpn["core_hours"], dpn["wall_time_only"]) == (pytest.approx(2.0), 1)
    assert math.isnan(dpn["core_hours_left"])  # no run with a measured CPU time to estimate from


def test_cost_table_sets_each_budget_beside_its_chapters():
    rows = [{"chapter": "a", "runs": 4, "finished": 2, "core_hours": 1.0, "core_hours_left": 1.5, "wall_time_only": 1},
            {"chapter": "b", "runs": 2, "finished": 2, "core_hours": 0.5, "core_hours_left": 0.0, "wall_time_only": 0}]
    table = cost_table(rows, {"a and b": (("a", "b"), 20.0), "c": (("c",), 6.0)}).splitlines()
    assert table[2] == "| a | 2 of 4 | 1.0 (1 by wall time) | about 1.5 |  |"
    assert table[3] == "| b | 2 of 2 | 0.5 | - |  |"
    assert table[4] == "| **a and b** | 4 of 6 | 1.5 so far; about 3.0 in all |  | 20 |"
    assert len(table) == 5  # a budget none of whose chapters is shown gets no row
