"""Runs per hour with each executor on the same cores: local processes (1 and 2 jobs) and Ray (issue 18).

The same ``--runs`` classification runs (one network and size, seeds 0..N-1, real CIFAR-10) are
trained three or four ways, each into a fresh record store:

* ``local, 1 job``: one after another in this process, one thread;
* ``local, 2 jobs``: :func:`lossdecay_lib.campaign.run_parallel`, two spawned processes of one thread;
* ``ray, 2 CPUs``: :func:`lossdecay_lib.executors.run_on_ray` on a local Ray cluster of ``--cpus`` CPUs
  (started here, every server on 127.0.0.1), one CPU and one thread per run, records carried back to the
  driver and written there.

Runs per hour count everything each engine does (spawning workers and importing torch in them included);
the Ray cluster's start is timed apart and shown both ways. The engine's overhead is Ray's wall time over
that of the local executor with as many jobs as Ray has CPUs (goal: at most 10%). Every way must write
the same records (same keys, per-epoch losses and accuracies): checked at the end.

On an idle 2-core machine the default size (6 runs of about 15 s of training each) takes about 4 minutes
in all (1 job: 90 s, 2 jobs: 50 s, Ray: 50 s plus its start); run it with nothing else training::

    OMP_NUM_THREADS=1 python benchmarks/bench_executors.py            # about 4 minutes on 2 idle cores
    OMP_NUM_THREADS=1 python benchmarks/bench_executors.py --size tiny  # a check that it works, ~1 min
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

SIZES = {
    # a plain-20 network (widths 8/16/32) on 2,000 images at 16x16, 8 epochs: about 15 s a run on one idle
    # core (4 epochs took 17 s on a core shared with two training processes)
    "small": dict(model_settings=(("depth", 20), ("widths", 8)), train_per_class=200, test_per_class=100,
                  epochs=8, batch_size=100, image_size=16),
    # a check that the script works: a second or two a run
    "tiny": dict(model_settings=(("depth", 5), ("widths", 4)), train_per_class=10, test_per_class=5,
                 epochs=1, batch_size=20, image_size=16),
}


def curves(records):
    """Each run's key and per-epoch training loss and test accuracy: what must not depend on the engine."""
    return [(r["key"], [(e["train_loss"], e["test_acc"]) for e in r["epochs"]]) for r in records]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--runs", type=int, default=None, help="runs per engine (default: 6, tiny: 4)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray cluster and jobs of the local one")
    parser.add_argument("--no-ray", action="store_true", help="local executor only")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    runs = args.runs or (4 if args.size == "tiny" else 6)

    import torch

    from lossdecay_lib.campaign import run_parallel
    from lossdecay_lib.runs import RunStore
    from lossdecay_lib.training import ClassificationConfig, train_classifier

    torch.set_num_threads(1)
    os.environ["LOSSDECAY_PROGRESS"] = "0"
    base = ClassificationConfig(profile="smoke", label=f"bench {args.size}", **SIZES[args.size])
    configs = [base.with_(seed=s) for s in range(runs)]
    from lossdecay_lib.data import load_cifar10

    load_cifar10("train"), load_cifar10("test")  # the decoded cache exists before any engine is timed
    scratch = Path(tempfile.mkdtemp(prefix="bench-executors-"))
    results, records = {}, {}

    def timed(name, train, startup=0.0):
        store = RunStore(scratch / name.replace(" ", "_").replace(",", ""))
        t0 = time.perf_counter()
        out = train(store)
        seconds = time.perf_counter() - t0
        results[name] = {"seconds": seconds, "startup_seconds": startup, "runs": runs,
                         "runs_per_hour": runs / seconds * 3600,
                         "runs_per_hour_with_startup": runs / (seconds + startup) * 3600,
                         "training_seconds": sum(r["wall_seconds"] for r in out)}
        records[name] = out
        print(f"{name:>14}: {seconds:6.1f} s for {runs} runs, {runs / seconds * 3600:6.0f} runs/h "
              f"(runs' own training {results[name]['training_seconds']:.1f} s)", flush=True)

    timed("local, 1 job", lambda store: run_parallel(train_classifier, configs, 1, store=store, progress=False))
    timed(f"local, {args.cpus} jobs",
          lambda store: run_parallel(train_classifier, configs, args.cpus, store=store, progress=False))
    if not args.no_ray:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # a cluster on 127.0.0.1 alone
        os.environ.pop("RAY_ADDRESS", None)
        t0 = time.perf_counter()
        import ray

        from lossdecay_lib.executors import run_on_ray

        ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        start = time.perf_counter() - t0
        print(f"{'ray start':>14}: {start:6.1f} s", flush=True)
        timed(f"ray, {args.cpus} CPUs", lambda store: run_on_ray(train_classifier, configs, store=store,
                                                                 cpus_per_run=1, progress=False), startup=start)
        ray.shutdown()
        local, remote = results[f"local, {args.cpus} jobs"], results[f"ray, {args.cpus} CPUs"]
        overhead = remote["seconds"] / local["seconds"] - 1
        with_start = (remote["seconds"] + start) / local["seconds"] - 1
        results["ray_overhead"] = overhead
        results["ray_overhead_with_start"] = with_start
        print(f"Ray's overhead over {args.cpus} local jobs: {overhead:+.1%} of the wall time "
              f"({with_start:+.1%} counting the cluster's start); goal: at most +10%", flush=True)
    first = curves(next(iter(records.values())))
    same = all(curves(out) == first for out in records.values())
    results["identical_records"] = same
    print(f"every engine wrote the same records: {same}", flush=True)
    results.update(size=args.size, config=base.describe(), cpus=args.cpus, cores=os.cpu_count(),
                   torch=torch.__version__)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
