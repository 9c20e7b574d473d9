"""Where a sweep's runs train: local processes (the default) or a Ray cluster.

``executor="local"`` is :func:`lossdecay_lib.campaign.run_parallel`: ``jobs`` processes of one thread
each on this machine, every run writing its record into the store itself. ``executor="ray"`` sends each
run to a Ray cluster as one task asking for ``cpus_per_run`` CPUs (and, on a cluster with GPUs,
``gpus_per_run`` of a GPU, so that several small runs share one). The worker trains into a temporary
store on its own disk and returns the record, with the bytes of its sidecar files (a segmentation run's
``<key>.val_predictions.png``, a pix2pix run's ``<key>.samples.pt``), to the driver, which writes them
atomically into the real store, sidecars first and the record last. No shared filesystem is needed;
each worker finds the data by the data-root rule on its own node (an explicit ``data_root``, else its
``$LOSSDECAY_DATA``, else its user cache). A worker killed in the middle of a run is retried
(``max_retries``): on the same node the retry resumes from the run's checkpoint, elsewhere it starts
afresh, and on a CPU both end with the record of an uninterrupted run.

Ray is an optional extra (``pip install 'lossdecay_lib[ray]'``) and is imported only when
``executor="ray"`` is asked for. The cluster is ``ray_address``, else ``$RAY_ADDRESS``, else a local one
started on this machine (and kept for the rest of the process). ``$LOSSDECAY_EXECUTOR`` sets the
default executor, so chapters executed by the chapter runner use Ray too::

    RAY_ADDRESS=auto LOSSDECAY_EXECUTOR=ray make book PROFILE=paper
    python -m lossdecay_lib.campaign --profile paper --executor ray --ray-address auto
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

__all__ = ["EXECUTORS", "EXECUTOR_ENV", "default_executor", "check_executor", "run_runs", "run_on_ray",
           "add_arguments", "executor_options"]

EXECUTORS = ("local", "ray")
EXECUTOR_ENV = "LOSSDECAY_EXECUTOR"
#: On a cluster with GPUs and no ``gpus_per_run`` given, this many runs share each GPU.
RUNS_PER_GPU = 4


def check_executor(name) -> str:
    from .checks import check_name

    return check_name(name, EXECUTORS, "executor")


def default_executor() -> str:
    """``$LOSSDECAY_EXECUTOR`` if set, else ``"local"``."""
    return check_executor(os.environ.get(EXECUTOR_ENV) or "local")


def run_runs(fn: Callable, configs: Sequence, executor: Optional[str] = None, jobs: Optional[int] = None,
             on_done: Optional[Callable] = None, *, ray_address: Optional[str] = None, cpus_per_run: float = 1,
             gpus_per_run: Optional[float] = None, max_retries: int = 3, **kwargs) -> List[Dict]:
    """Train ``fn(config, **kwargs)`` for every configuration on ``executor`` (default
    :func:`default_executor`); records in the order of ``configs``, ``on_done(index, record)`` as each
    lands. ``jobs`` is for the local executor (default: :func:`lossdecay_lib.campaign.default_jobs`);
    the rest are Ray's (:func:`run_on_ray`)."""
    executor = default_executor() if executor is None else check_executor(executor)
    if executor == "ray":
        return run_on_ray(fn, configs, on_done=on_done, address=ray_address, cpus_per_run=cpus_per_run,
                          gpus_per_run=gpus_per_run, max_retries=max_retries, **kwargs)
    from .campaign import default_jobs, run_parallel

    return run_parallel(fn, configs, default_jobs() if jobs is None else jobs, on_done=on_done, **kwargs)


# -- Ray ---------------------------------------------------------------------------------------------
def _import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError("executor 'ray' needs Ray: pip install 'lossdecay_lib[ray]' (or pip install "
                          "'ray[default]'), on the driver and on every node of the cluster") from None
    return ray


def _connect(ray, address: Optional[str]) -> None:
    """Join the cluster at ``address`` (else ``$RAY_ADDRESS``), or start a local one; once per process."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    options = dict(ignore_reinit_error=True, configure_logging=False, log_to_driver=True)
    if address is None:
        options["include_dashboard"] = False  # a local cluster for this process alone
    ray.init(address=address, **options)


def _gpu_share(ray, gpus_per_run: Optional[float]) -> float:
    if gpus_per_run is not None:
        if not isinstance(gpus_per_run, (int, float)) or isinstance(gpus_per_run, bool) or gpus_per_run < 0:
            raise ValueError(f"gpus_per_run must be a number >= 0, got {gpus_per_run!r}")
        return float(gpus_per_run)
    return 1.0 / RUNS_PER_GPU if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def worker_store_root(key: str) -> Path:
    """Where a Ray worker trains run ``key``: a folder of its node's temporary directory, named by the key
    so that a retry on the same node finds the checkpoint of the attempt that was killed."""
    return Path(tempfile.gettempdir()) / "lossdecay-ray" / key


def _train_on_worker(fn: Callable, config, kwargs: Dict, threads: int) -> Tuple[Dict, Dict[str, bytes]]:
    """A Ray task: train one run into a temporary store; return its record and its sidecar files."""
    import torch

    from .runs import RunStore, run_key

    torch.set_num_threads(max(1, threads))
    os.environ["LOSSDECAY_PROGRESS"] = "0"
    key = run_key(config)
    root = worker_store_root(key)
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{key}.json").unlink(missing_ok=True)  # keep only a checkpoint from an earlier attempt
    record = fn(config, store=RunStore(root), **kwargs)
    key = record.get("key", key)
    sidecars = {p.name: p.read_bytes() for p in sorted(root.iterdir())
                if p.is_file() and p.name.startswith(f"{key}.") and p.name not in (f"{key}.json", f"{key}.ckpt.pt")}
    shutil.rmtree(root, ignore_errors=True)
    return record, sidecars


def land(store, record: Dict, sidecars: Dict[str, bytes]) -> None:
    """Write a run's sidecar files, then its record, atomically into ``store`` (the driver's side)."""
    from .atomic import write_atomically

    for name, data in sidecars.items():
        if Path(name).name != name:
            raise ValueError(f"a sidecar file's name must not hold a folder: {name!r}")
        write_atomically(store.root / name, lambda tmp, data=data: tmp.write_bytes(data))
    store.save(record["key"], record)


def run_on_ray(fn: Callable, configs: Sequence, store=None, on_done: Optional[Callable] = None,
               address: Optional[str] = None, cpus_per_run: float = 1, gpus_per_run: Optional[float] = None,
               max_retries: int = 3, **kwargs) -> List[Dict]:
    """``[fn(c, store=store, **kwargs) for c in configs]`` as Ray tasks; records land in ``store``
    (default :meth:`lossdecay_lib.runs.RunStore.default`) on this machine.

    Each task asks for ``cpus_per_run`` CPUs (its torch threads) and ``gpus_per_run`` of a GPU (default:
    ``1/4`` on a cluster with GPUs, else none); a task whose worker dies is retried up to
    ``max_retries`` times. A run that raises does not stop the others: every other record lands, then
    the first error is raised.
    """
    from .checks import check_non_negative_int
    from .runs import RunStore

    check_non_negative_int("max_retries", max_retries)
    if not isinstance(cpus_per_run, (int, float)) or isinstance(cpus_per_run, bool) or cpus_per_run <= 0:
        raise ValueError(f"cpus_per_run must be a number > 0, got {cpus_per_run!r}")
    store = store or RunStore.default()
    if not configs:
        return []
    ray = _import_ray()
    _connect(ray, address)
    task = ray.remote(_train_on_worker).options(
        num_cpus=cpus_per_run, num_gpus=_gpu_share(ray, gpus_per_run), max_retries=max_retries,
        retry_exceptions=False)
    threads = max(1, int(cpus_per_run))
    pending = {task.remote(fn, c, kwargs, threads): i for i, c in enumerate(configs)}
    results: List[Optional[Dict]] = [None] * len(configs)
    error = None
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        i = pending.pop(done[0])
        try:
            record, sidecars = ray.get(done[0])
        except ray.exceptions.RayError as e:  # the run raised, or its worker died more than max_retries times
            error = error or e
            continue
        land(store, record, sidecars)
        results[i] = record
        if on_done:
            on_done(i, record)
    if error is not None:
        cause = getattr(error, "cause", None)
        raise (cause if isinstance(cause, BaseException) else error)
    return results


# -- command line ------------------------------------------------------------------------------------
def add_arguments(parser) -> None:
    """The executor's options of a command line (the campaign's)."""
    parser.add_argument("--executor", default=None, help="local (processes, --jobs) or ray "
                        "(default: $LOSSDECAY_EXECUTOR, else local)")
    parser.add_argument("--ray-address", default=None, help="the Ray cluster (default: $RAY_ADDRESS, "
                        "else a local cluster on this machine)")
    parser.add_argument("--cpus-per-run", type=float, default=1, help="Ray: CPUs (threads) of each run")
    parser.add_argument("--gpus-per-run", type=float, default=None,
                        help=f"Ray: the share of a GPU each run asks for (default 1/{RUNS_PER_GPU} on GPUs)")
    parser.add_argument("--max-retries", type=int, default=3, help="Ray: retries of a run whose worker died")


def executor_options(args) -> Dict:
    """The keyword arguments of :func:`run_runs` from parsed :func:`add_arguments` options."""
    return dict(executor=default_executor() if args.executor is None else check_executor(args.executor),
                ray_address=args.ray_address, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run,
                max_retries=args.max_retries)
