"""The lent-GPU script (benchmarks/gpu_book.sh) dry-run on the CPU at smoke sizes: the same path as on a
GPU (environment check, the classification campaign, a chapter executed as a script, timings, archive),
and a time limit that stops it cleanly."""

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_book.sh"
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_book  # noqa: E402


def _run(out, limit, chapters, jobs="2"):
    env = dict(os.environ, PROFILE="smoke", CHAPTERS=chapters, PYTHON=sys.executable, MPS="0", OMP_NUM_THREADS="1")
    env.pop("LOSSDECAY_RECORDS", None)
    env.pop("JOBS", None)
    if jobs:
        env["JOBS"] = jobs
    t0 = time.monotonic()
    done = subprocess.run(["bash", str(SCRIPT), str(out), str(limit)], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    return done, time.monotonic() - t0


def _records(folder):
    return {p.stem: json.loads(p.read_text()) for p in Path(folder).glob("*.json")}


def test_dry_run_trains_records_and_times_each_chapter(tmp_path):
    # verdict stands for pix2pix and segmentation (executed by their source the same way, but a minute
    # each here): run by hand with CHAPTERS="deep_plain_networks pix2pix" to see them too
    done, _ = _run(tmp_path, 900, "deep_plain_networks verdict")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    timings = json.loads((tmp_path / "timings.json").read_text())
    chapters = timings["chapters"]
    assert list(chapters) == ["deep_plain_networks", "verdict"] and not timings["stopped_by_time_limit"]
    assert chapters["deep_plain_networks"]["status"] == "finished"
    assert chapters["deep_plain_networks"]["finished"] == chapters["deep_plain_networks"]["runs"] == 4
    assert chapters["deep_plain_networks"]["finished_after_seconds"] > 0
    assert chapters["verdict"]["status"] == "finished" and chapters["verdict"]["seconds"] > 0
    assert timings["seconds"] > 0 and timings["profile"] == "smoke" and timings["device"] == "cpu"
    records = _records(tmp_path / "records")
    assert len(records) == 4 and all(r["status"] == "finished" and r["kind"] == "classification" for r in records.values())
    with tarfile.open(tmp_path / "records.tar.gz") as tar:
        names = tar.getnames()
    assert "timings.json" in names and sorted(n for n in names if n.endswith(".json") and n != "timings.json") == \
        sorted(f"records/{key}.json" for key in records)
    log = (tmp_path / "gpu_book.log").read_text()
    assert "verdict: finished" in log and "Executed in" in log  # the chapter ran to its last cell


def test_the_time_limit_stops_it_cleanly(tmp_path):
    limit = 25  # the check takes 6-20 s: the campaign is stopped in the middle of its runs (or the check is)
    done, seconds = _run(tmp_path, limit, "death_convergence second_order segmentation", jobs=None)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"{len(os.sched_getaffinity(0))} runs at once" in done.stdout  # without a GPU: as many as the cores
    assert seconds < limit + 30  # the stop, the timings and the archive
    timings = json.loads((tmp_path / "timings.json").read_text())
    assert timings["stopped_by_time_limit"]
    # segmentation takes a minute at smoke, so it cannot finish; on a fast machine it starts before the limit
    assert timings["chapters"]["segmentation"]["status"] in ("not started", *gpu_book.STOPPED)
    assert not list((tmp_path / "records").glob(".partial-*"))  # no half-written file left
    for key, record in _records(tmp_path / "records").items():  # what is there is whole and finished
        assert record["status"] in ("finished", "diverged"), key
        assert not (tmp_path / "records" / f"{key}.ckpt.pt").exists()
    with tarfile.open(tmp_path / "records.tar.gz") as tar:
        assert not [n for n in tar.getnames() if n.endswith(".ckpt.pt")]


def test_a_chapter_runs_as_a_script_with_its_profile_injected():
    for name in ("pix2pix", "segmentation"):
        source = gpu_book.chapter_source(name, "smoke")
        compile(source, name, "exec")
        lines = source.splitlines()
        assert "profile = 'smoke'  # injected by gpu_book" in lines
        assert lines.index("profile = 'smoke'  # injected by gpu_book") > next(
            i for i, line in enumerate(lines) if line.startswith("profile = "))
        assert not [line for line in lines if "IPython" in line and not line.lstrip().startswith(("#", "pass"))]


@pytest.mark.parametrize("args", [[], ["out"], ["out", "soon"], ["out", "0"]])
def test_bad_arguments_are_refused(args):
    done = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("usage:")
