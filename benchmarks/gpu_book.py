"""The Python half of ``benchmarks/gpu_book.sh`` (issue 18): check, chapter, timings, estimate.

* ``check``: the interpreter has what the chapters need (torch, torchvision, numpy, matplotlib, tqdm,
  torchmetrics, schedulefree, PIL), prints the device and the data root, decodes CIFAR-10 once (so that
  the parallel runs find the decoded cache). Exits 1, naming what is missing, before any training.
* ``chapter NAME``: executes a chapter's percent-format source (``book/NAME.py``) as a plain script, the
  way papermill would run its notebook, with ``profile`` injected after the parameters cell. Machines
  without Jupyter (a lent GPU's image) run it too: the chapter's ``IPython.display`` import is replaced
  by text stand-ins (``display`` prints, ``Markdown`` is its text), always, so that the dry run on a CPU
  takes the same path.
  The runs of ``train_seeds`` still to train go to ``--jobs`` processes first (``$LOSSDECAY_JOBS``).
* ``timings``: writes ``OUT/timings.json`` from the script's step log and the records: per chapter its
  runs, the finished ones, the runs' own seconds and, for the classification chapters (trained by one
  campaign in priority order), when the chapter's last run landed; the whole; the device.
* ``estimate``: the training FLOPs of a profile's classification chapters (counted by
  ``torch.utils.flop_counter`` on the CPU) and the time they would take at an assumed throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OTHER_CHAPTERS = ("pix2pix", "segmentation")  # trained by their chapters, after the classification ones
STOPPED = ("stopped at the time limit", "not started (time limit)")  # gpu_book.sh's words for a step
NEEDED = ("torch", "torchvision", "numpy", "matplotlib", "tqdm", "torchmetrics", "schedulefree", "PIL")


# -- check ---------------------------------------------------------------------------------------------
def check(args) -> int:
    import importlib.util


    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        print(f"missing Python packages: {', '.join(missing)} (carry their wheels: see benchmarks/gpu_book.sh)")
        return 1
    if args.chapters_file:  # the classification chapters, priority order, for the shell script
        from lossdecay_lib.experiments import CHAPTERS

        Path(args.chapters_file).write_text(" ".join(CHAPTERS) + "\n")
    import torch

    from lossdecay_lib.data import load_cifar10
    from lossdecay_lib.data.paths import resolve_data_root

    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, device {name}, "
          f"data root {os.environ.get('LOSSDECAY_DATA') or resolve_data_root(None)}", flush=True)
    t0 = time.perf_counter()
    load_cifar10("train", download=False), load_cifar10("test", download=False)
    print(f"CIFAR-10 decoded and cached in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


def has_data(args) -> int:
    """Exit 0 when dataset ``NAME`` is found by the data-root rule (nothing downloaded), else 3."""
    from lossdecay_lib.data.errors import DatasetNotFoundError
    from lossdecay_lib.data.paths import find_dataset

    try:
        print(f"{args.name}: {find_dataset(args.name, download=False)}", flush=True)
    except DatasetNotFoundError as e:
        print(f"{args.name}: not found ({str(e).splitlines()[0]})", flush=True)
        return 3
    return 0


# -- chapter -------------------------------------------------------------------------------------------
class Markdown:
    """``IPython.display.Markdown`` for a script: its text."""

    def __init__(self, data: str = ""):
        self.data = data

    def __str__(self) -> str:
        return self.data


def _display(*objects, **_) -> None:
    for obj in objects:
        print(obj if isinstance(obj, Markdown) else repr(obj) if not isinstance(obj, str) else obj, flush=True)


DISPLAY_IMPORT = "from IPython.display import Markdown, display"


def chapter_source(name: str, profile: str) -> str:
    """``book/NAME.py`` with ``profile = PROFILE`` injected after its parameters cell (as papermill does),
    and its import of ``IPython.display`` left out (:func:`chapter` supplies text stand-ins)."""
    lines = ["pass  # IPython.display: gpu_book's text stand-ins" if line.strip() == DISPLAY_IMPORT else line
             for line in (ROOT / "book" / f"{name}.py").read_text().splitlines()]
    heads = [i for i, line in enumerate(lines) if line.startswith("# %%")]
    start = next((i for i in heads if "parameters" in lines[i]), None)
    if start is None:
        raise SystemExit(f"book/{name}.py has no cell tagged parameters")
    end = next((i for i in heads if i > start), len(lines))
    return "\n".join(lines[:end] + [f"profile = {profile!r}  # injected by gpu_book"] + lines[end:]) + "\n"


def chapter(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from lossdecay_lib.campaign import JOBS_ENV

    os.environ[JOBS_ENV] = str(args.jobs)  # train_seeds: the runs still to train go to --jobs processes
    code = compile(chapter_source(args.name, args.profile), str(ROOT / "book" / f"{args.name}.py"), "exec")
    os.chdir(ROOT)
    exec(code, {"__name__": "__main__", "Markdown": Markdown, "display": _display})
    return 0


# -- timings -------------------------------------------------------------------------------------------
def _steps(path: Path) -> Dict[str, Dict]:
    """The step log of gpu_book.sh: ``name<TAB>start<TAB>end<TAB>status`` lines (epoch seconds)."""
    steps = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            name, start, end, status = line.split("\t")
            steps[name] = {"start": float(start), "end": float(end), "status": status}
    return steps


def chapter_runs(name: str, profile: str) -> List:
    """The configurations a chapter trains at its profile's seeds (classification chapters only)."""
    from lossdecay_lib.experiments import CHAPTERS, campaign_configs
    from lossdecay_lib.profiles import get_profile

    if name not in CHAPTERS:
        return []
    return campaign_configs(profile, [name], list(range(get_profile(profile).seeds)))


def timings(args) -> int:
    import torch

    from lossdecay_lib.runs import RunStore, run_key

    out = Path(args.out)
    store = RunStore(out / "records")
    steps = _steps(out / "steps.tsv")
    started = args.started
    records = {p.stem: (p, json.loads(p.read_text())) for p in store.root.glob("*.json")}
    from lossdecay_lib.experiments import CHAPTERS

    chapters = {}
    for name in args.chapters:
        entry: Dict = {}
        if name not in CHAPTERS:  # executed by its source; pix2pix and segmentation records are of its kind
            step = steps.get(name, {})
            mine = [r for _, r in records.values() if r.get("kind") == name
                    and r.get("provenance", {}).get("profile") == args.profile]
            entry.update(runs=None, finished=sum(r.get("status") in ("finished", "diverged") for r in mine),
                         run_seconds=round(sum(r.get("wall_seconds", 0.0) for r in mine), 1),
                         status=step.get("status", "not started"))
            if step:
                entry["seconds"] = round(step["end"] - step["start"], 1)
        else:
            keys = [run_key(c) for c in chapter_runs(name, args.profile)]
            done = [records[k] for k in keys if k in records and records[k][1].get("status") in ("finished", "diverged")]
            step = steps.get("classification", {})
            entry.update(runs=len(keys), finished=len(done),
                         run_seconds=round(sum(r.get("wall_seconds", 0.0) for _, r in done), 1),
                         status="finished" if len(done) == len(keys) else step.get("status", "not started"))
            entry["trained_now"] = sum(p.stat().st_mtime >= started for p, _ in done)  # the rest were there
            if done and len(done) == len(keys):
                entry["finished_after_seconds"] = round(max(0.0, max(p.stat().st_mtime for p, _ in done) - started), 1)
        chapters[name] = entry
    ended = time.time()
    summary = {
        "profile": args.profile, "jobs": args.jobs, "time_limit_seconds": args.limit,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__, "mps": args.mps, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(ended - started, 1),
        "stopped_by_time_limit": any(s["status"] in STOPPED for s in steps.values()),
        "chapters": chapters, "steps": {k: dict(v, seconds=round(v["end"] - v["start"], 1)) for k, v in steps.items()},
    }
    (out / "timings.json").write_text(json.dumps(summary, indent=1) + "\n")
    for name, c in chapters.items():
        print(f"  {name}: {c['status']}, {c['finished']}{'' if c['runs'] is None else '/' + str(c['runs'])} runs, "
              f"{c['run_seconds']:.0f} s of runs" + (f", done after {c['finished_after_seconds']:.0f} s"
                                                    if "finished_after_seconds" in c else ""))
    print(f"  whole: {summary['seconds']:.0f} s (limit {args.limit} s)")
    return 0


# -- estimate ------------------------------------------------------------------------------------------
def estimate(args) -> int:
    """Training FLOPs of each classification chapter at ``--profile`` and the time at the assumed rates."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lossdecay_lib.experiments import CHAPTERS
    from lossdecay_lib.models import build_model
    from lossdecay_lib.runs import run_key

    torch.set_num_threads(1)
    per_image, seen, total_seconds = {}, set(), 0.0
    for name in CHAPTERS:
        flops = seconds = 0.0
        runs = [c for c in chapter_runs(name, args.profile) if run_key(c) not in seen]
        seen.update(run_key(c) for c in runs)
        for c in runs:
            shape = (c.model, c.model_settings, c.image_size)
            if shape not in per_image:
                model = build_model(c.model, **dict(c.model_settings))
                with FlopCounterMode(display=False) as counter:
                    model(torch.randn(2, 3, c.image_size, c.image_size)).sum().backward()
                per_image[shape] = counter.get_total_flops() / 2  # forward and backward, per image
            images = (c.train_per_class or 5000) * 10 * c.epochs
            measured = 1.0
            if c.curvature_every:  # g^T H g ~4 steps, Lanczos ~20 products of ~2.5 steps every k-th time
                lanczos = 50.0 / c.sharpness_every if c.sharpness_every else 0.0
                measured += (4 + lanczos) * (c.curvature_batch or c.batch_size) / c.batch_size / c.curvature_every
            run_flops = per_image[shape] * images * measured
            rate = args.resnet_tflops if c.model.startswith("resnet") else args.plain_tflops
            flops += run_flops
            seconds += run_flops / (rate * 1e12)
        total_seconds += seconds
        print(f"{name}: {len(runs)} runs, {flops / 1e15:.1f} PFLOP, about {seconds / 60:.1f} min")
    print(f"all: about {total_seconds / 60:.1f} min of training at {args.plain_tflops:g} TFLOP/s (plain "
          f"networks) and {args.resnet_tflops:g} TFLOP/s (ResNet), all runs at once sharing the GPU")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check").add_argument("--chapters-file", default=None)
    sub.add_parser("has-data").add_argument("name")
    p = sub.add_parser("chapter")
    p.add_argument("name")
    p.add_argument("--profile", default="gpu")
    p.add_argument("--jobs", type=int, default=1)
    p = sub.add_parser("timings")
    p.add_argument("--out", required=True)
    p.add_argument("--profile", default="gpu")
    p.add_argument("--chapters", nargs="*", default=[])
    p.add_argument("--started", type=float, required=True)
    p.add_argument("--limit", type=int, required=True)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--mps", default="off")
    p = sub.add_parser("estimate")
    p.add_argument("--profile", default="gpu")
    p.add_argument("--plain-tflops", type=float, default=35.0, help="assumed throughput of the plain networks")
    p.add_argument("--resnet-tflops", type=float, default=150.0, help="assumed throughput of ResNet-34")
    args = parser.parse_args(argv)
    return {"check": check, "has-data": has_data, "chapter": chapter, "timings": timings, "estimate": estimate}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
