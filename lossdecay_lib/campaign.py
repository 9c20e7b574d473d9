"""Many independent runs at once, and the training campaign behind the rendered book.

:func:`run_parallel` trains runs in ``jobs`` separate processes with one thread each (on these small
networks one thread per process is as fast as two, so two processes train about twice the runs per
hour of one). Every run writes its own record atomically; a run's record is the one a sequential run
writes (tested: same key, same numbers).

The campaign (``python -m lossdecay_lib.campaign`` or ``make records``) trains every missing run of the
chosen chapters ahead of rendering them (:mod:`lossdecay_lib.experiments` says which runs), in
parallel, in priority order, printing runs done of total and the estimated time left. An interrupted
run resumes from its last checkpoint the next time; ``--commit`` commits each finished record to git as
it lands, so an interruption loses at most the runs in flight::

    python -m lossdecay_lib.campaign --profile cpu --jobs 2 --commit
    python -m lossdecay_lib.campaign --profile cpu --chapters deep_plain_networks --dry-run
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import math
import multiprocessing
import os
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

__all__ = ["default_jobs", "run_parallel", "plan", "cost", "main"]

JOBS_ENV = "LOSSDECAY_JOBS"


def default_jobs() -> int:
    """``$LOSSDECAY_JOBS`` if set, else 1 on a CUDA machine (one GPU), else the number of CPU cores."""
    env = os.environ.get(JOBS_ENV)
    if env:
        return check_jobs(int(env) if env.isdigit() else env)
    import torch

    return 1 if torch.cuda.is_available() else max(1, os.cpu_count() or 1)


def check_jobs(jobs) -> int:
    from .checks import check_positive_int

    check_positive_int("jobs", jobs)
    return jobs


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)
    os.environ["LOSSDECAY_PROGRESS"] = "0"


def _call(fn, config, kwargs):
    return fn(config, **kwargs)


def run_parallel(fn: Callable, configs: Sequence, jobs: int, on_done: Optional[Callable] = None, **kwargs) -> List[Dict]:
    """``[fn(c, **kwargs) for c in configs]``, in ``jobs`` worker processes (spawned, one thread each).

    Records come back in the order of ``configs``; ``on_done(index, record)`` is called as each lands.
    ``jobs=1`` runs in this process, one after another.
    """
    jobs = check_jobs(jobs)
    if jobs == 1 or len(configs) <= 1:
        out = []
        for i, c in enumerate(configs):
            out.append(fn(c, **kwargs))
            if on_done:
                on_done(i, out[-1])
        return out
    results: List[Optional[Dict]] = [None] * len(configs)
    context = multiprocessing.get_context("spawn")  # fork after torch has threads can deadlock
    with cf.ProcessPoolExecutor(max_workers=min(jobs, len(configs)), mp_context=context,
                                initializer=_one_thread) as pool:
        futures = {pool.submit(_call, fn, c, kwargs): i for i, c in enumerate(configs)}
        for future in cf.as_completed(futures):
            i = futures[future]
            results[i] = future.result()
            if on_done:
                on_done(i, results[i])
    return results


def plan(profile: str, chapters: Sequence[str], seeds: Sequence[int], store) -> Dict[str, List]:
    """The campaign's runs: ``{"done": [...], "missing": [...]}`` configurations, in priority order."""
    from .experiments import campaign_configs
    from .runs import run_key

    configs = campaign_configs(profile, chapters, seeds)
    done = [c for c in configs if store.load(run_key(c)) is not None]
    return {"done": done, "missing": [c for c in configs if store.load(run_key(c)) is None]}


def _core_seconds(record: Dict) -> float:
    """The CPU seconds a run used (its wall time for records from before ``cpu_seconds`` was kept)."""
    cpu = record.get("cpu_seconds")
    return cpu if cpu is not None else record.get("wall_seconds", 0.0)


def cost(profile: str, chapters: Sequence[str], seeds: Sequence[int], store) -> List[Dict]:
    """Per chapter: its runs, how many are finished, the core-hours they took (the CPU time of each run's
    process, which does not grow when other work shares the cores), and an estimate for the rest (the
    mean CPU time of its finished runs; of all the campaign's finished runs for a chapter with none
    measured yet). A run shared by two chapters counts in the first (priority order).
    ``wall_time_only`` counts the records from before ``cpu_seconds`` was kept, whose wall time stands in
    (an overestimate when other work shared the cores)."""
    from .experiments import campaign_configs
    from .runs import run_key

    rows, counted, measured = [], set(), {}
    for name in chapters:
        configs = [c for c in campaign_configs(profile, [name], seeds) if run_key(c) not in counted]
        counted.update(run_key(c) for c in configs)
        records = [r for r in (store.load(run_key(c)) for c in configs) if r is not None]
        measured[name] = [r["cpu_seconds"] / 3600 for r in records if r.get("cpu_seconds") is not None]
        rows.append({"chapter": name, "runs": len(configs), "finished": len(records),
                     "core_hours": sum(_core_seconds(r) for r in records) / 3600,
                     "wall_time_only": sum(r.get("cpu_seconds") is None for r in records)})
    every = [h for hours in measured.values() for h in hours]
    for r in rows:  # a run to go costs the mean CPU time of the chapter's runs (else of all runs so far)
        hours = measured[r["chapter"]] or every
        r["core_hours_left"] = (r["runs"] - r["finished"]) * (sum(hours) / len(hours) if hours else math.nan)
    return rows


def _commit(paths: Sequence[str], message: str) -> None:
    """Commit just these paths (other staged work is left alone); retried while git's index is locked."""
    for attempt in range(10):
        added = subprocess.run(["git", "add", "--", *paths], capture_output=True, text=True)
        done = added.returncode == 0 and subprocess.run(
            ["git", "commit", "-q", "-m", message, "--", *paths], capture_output=True, text=True).returncode == 0
        if done:
            return
        time.sleep(2 + attempt)
    print(f"  warning: could not commit {', '.join(paths)}; commit it by hand", flush=True)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _print_status(rows: Sequence[Dict]) -> int:
    for row in rows:
        left = row["core_hours_left"]
        left = "not estimated yet" if math.isnan(left) else f"about {left:.1f} to go"
        print(f"{row['chapter']}: {row['finished']}/{row['runs']} runs, {row['core_hours']:.1f} core-hours "
              f"spent, {left}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .executors import add_arguments, executor_options, run_runs
    from .experiments import CHAPTERS
    from .runs import RunStore, run_key
    from .training import train_classifier

    parser = argparse.ArgumentParser(prog="python -m lossdecay_lib.campaign", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--chapters", nargs="*", default=list(CHAPTERS), help=f"default: all, in order ({', '.join(CHAPTERS)})")
    parser.add_argument("--seeds", nargs="*", type=int, default=None, help="default: the profile's seeds from 0")
    parser.add_argument("--jobs", type=int, default=None, help="parallel runs (default: $LOSSDECAY_JOBS, else the cores)")
    parser.add_argument("--data-root", default=None)
    add_arguments(parser)  # --executor local|ray, --ray-address, --cpus-per-run, --gpus-per-run, --max-retries
    parser.add_argument("--commit", action="store_true", help="git-commit each finished record as it lands")
    parser.add_argument("--dry-run", action="store_true", help="list the runs, train nothing")
    parser.add_argument("--status", action="store_true", help="runs finished and core-hours per chapter, train nothing")
    args = parser.parse_args(argv)
    try:
        from .profiles import get_profile

        prof = get_profile(args.profile)
        jobs = check_jobs(args.jobs) if args.jobs is not None else default_jobs()
        engine = executor_options(args)
        seeds = args.seeds if args.seeds is not None else list(range(prof.seeds))
        store = RunStore.default()
        todo = plan(prof.name, args.chapters, seeds, store)
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    if args.status:
        return _print_status(cost(prof.name, args.chapters, seeds, store))
    missing, total = todo["missing"], len(todo["done"]) + len(todo["missing"])
    where = f"{jobs} job(s)" if engine["executor"] == "local" else \
        f"Ray ({engine['ray_address'] or os.environ.get('RAY_ADDRESS') or 'a local cluster'})"
    print(f"campaign {prof.name}: {total} runs of {', '.join(args.chapters)}; {len(todo['done'])} done, "
          f"{len(missing)} to train with {where}; records in {store.root}", flush=True)
    for c in missing:
        print(f"  to train: {run_key(c)} {c.label}, seed {c.seed}", flush=True)
    if args.dry_run or not missing:
        return 0
    started, finished = time.time(), []

    def on_done(i, record):
        finished.append(record)
        c = missing[i]
        left = len(missing) - len(finished)
        # runs go `jobs` at a time: the mean wall time of a finished run, times the rounds left
        eta = sum(r.get("wall_seconds", 0.0) for r in finished) / len(finished) * math.ceil(left / jobs)
        print(f"[{len(todo['done']) + len(finished)}/{total}] {c.label}, seed {c.seed}: {record['status']}, "
              f"final test acc {record.get('final_test_acc', float('nan')):.3f}, "
              f"{record.get('wall_seconds', 0) / 60:.1f} min; about {_minutes(eta)} left", flush=True)
        if args.commit:
            key = record["key"]
            _commit([str(store.path(key))], f"Record ({prof.name}): {c.label}, seed {c.seed} "
                    f"({record['status']}, {record.get('wall_seconds', 0) / 60:.0f} min)")

    run_runs(train_classifier, missing, jobs=jobs, on_done=on_done, data_root=args.data_root, store=store,
             progress=False, **engine)
    print(f"campaign done: {len(finished)} runs in {_minutes(time.time() - started)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
