"""Runs on a Ray cluster (lossdecay_lib.executors): the records of local sequential runs, sidecar files
carried back to the driver, a worker killed mid-run retried to the right record; Ray never imported on
the default path.

The cluster is a real one, started by the tests on this machine alone (``ray.init`` of a 2-CPU local
cluster, every server bound to 127.0.0.1). Without Ray these tests are skipped, except under ``CI=true``,
where they fail (``requirements.txt`` pins it).
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lossdecay_lib import schedules as S
from lossdecay_lib.campaign import main as campaign_main
from lossdecay_lib.executors import default_executor, run_on_ray, run_runs, worker_store_root
from lossdecay_lib.runs import RunStore, run_key
from lossdecay_lib.training import train_classifier, train_seeds
from test_campaign import _numbers, _tiny

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_cluster():
    if importlib.util.find_spec("ray") is None:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("Ray is not installed, and under CI=true the Ray tests must run: pip install -r requirements.txt")
        pytest.skip("Ray is not installed (pip install 'lossdecay_lib[ray]')")
    saved = {k: os.environ.get(k) for k in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")}
    # Ray's local-only mode, read when ray is imported: every server listens on 127.0.0.1, not on the
    # machine's network address.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ.pop("RAY_ADDRESS", None)
    import ray
    from ray import cloudpickle

    assert ray._private.services.get_node_ip_address() == "127.0.0.1"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False, object_store_memory=100 * 1024**2)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers need this file's helpers
    yield ray
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _sequential(configs, seeds, store):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray task trains (one CPU, one thread)
    try:
        return train_seeds(train_classifier, configs, seeds, jobs=1, executor="local", store=store, progress=False)
    finally:
        torch.set_num_threads(threads)


def test_ray_writes_the_records_of_local_sequential_runs(ray_cluster, tmp_path):
    configs = [_tiny(label="constant"), _tiny(weight=S.linear_decay(2.0), label="decay")]
    one = _sequential(configs, [0, 1], RunStore(tmp_path / "local"))
    on_ray = train_seeds(train_classifier, configs, [0, 1], executor="ray", store=RunStore(tmp_path / "ray"), progress=False)
    assert [r["key"] for r in one] == [r["key"] for r in on_ray]
    assert [_numbers(r) for r in one] == [_numbers(r) for r in on_ray]
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == sorted(f"{r['key']}.json" for r in one)
    assert not any(worker_store_root(r["key"]).exists() for r in one)  # the workers cleaned up


def _with_sidecar(config, store, **kwargs):
    key = run_key(config)
    (store.root / f"{key}.samples.pt").write_bytes(b"sidecar of " + key.encode())
    record = {"key": key, "status": "finished", "label": config.label}
    store.save(key, record)
    return record


def test_sidecar_files_come_back_with_the_record(ray_cluster, tmp_path):
    config = _tiny(label="with a sidecar", seed=7)
    key = run_key(config)
    seen = []
    records = run_runs(_with_sidecar, [config], executor="ray", store=RunStore(tmp_path),
                       on_done=lambda i, r: seen.append(i))
    assert records[0]["key"] == key and seen == [0]
    assert (tmp_path / f"{key}.samples.pt").read_bytes() == b"sidecar of " + key.encode()
    assert json.loads((tmp_path / f"{key}.json").read_text())["status"] == "finished"


def _dies_after_first_checkpoint(config, store, attempts, **kwargs):
    """Train; on the first attempt, the worker process dies right after the run's first checkpoint."""
    from lossdecay_lib.training import loop

    with open(attempts, "a") as f:
        f.write(f"{os.getpid()}\n")
    if len(Path(attempts).read_text().split()) == 1:
        save = loop.save_checkpoint

        def save_then_die(path, state):
            save(path, state)
            os._exit(1)  # as a kill or a lost node would: no cleanup, no exception

        loop.save_checkpoint = save_then_die
    return train_classifier(config, store=store, **kwargs)


def test_a_worker_killed_mid_run_is_retried_to_the_right_record(ray_cluster, tmp_path):
    config = _tiny(epochs=3, label="killed once")
    expected = _sequential([config], [0], RunStore(tmp_path / "local"))[0]
    attempts = tmp_path / "attempts"
    record = run_on_ray(_dies_after_first_checkpoint, [config], store=RunStore(tmp_path / "ray"),
                        max_retries=2, attempts=str(attempts), progress=False)[0]
    pids = attempts.read_text().split()
    assert len(pids) == 2 and pids[0] != pids[1]  # killed once, retried in a new worker
    assert record["key"] == expected["key"] and _numbers(record) == _numbers(expected)
    assert _numbers(json.loads((tmp_path / "ray" / f"{record['key']}.json").read_text())) == _numbers(expected)


def test_campaign_command_line_trains_on_ray(ray_cluster, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOSSDECAY_RECORDS", str(tmp_path))
    assert campaign_main(["--profile", "smoke", "--chapters", "deep_plain_networks", "--seeds", "0",
                          "--executor", "ray"]) == 0
    out = capsys.readouterr().out
    assert "to train with Ray" in out and "[4/4]" in out
    assert len(list(tmp_path.glob("*.json"))) == 4


def test_ray_is_never_imported_on_the_default_path(tmp_path):
    code = ("import argparse, math, sys\n"
            "from lossdecay_lib.executors import add_arguments, executor_options, run_runs\n"
            "parser = argparse.ArgumentParser()\n"
            "add_arguments(parser)\n"
            "options = executor_options(parser.parse_args([]))\n"
            "assert options['executor'] == 'local'\n"
            "assert run_runs(math.sqrt, [4.0, 9.0], jobs=1, **options) == [2.0, 3.0]\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\n")
    env = {k: v for k, v in os.environ.items() if k not in ("LOSSDECAY_EXECUTOR", "RAY_ADDRESS")}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env=dict(env, LOSSDECAY_RECORDS=str(tmp_path)))
    assert done.returncode == 0, done.stderr


def test_executor_names_are_checked(monkeypatch, capsys):
    monkeypatch.setenv("LOSSDECAY_EXECUTOR", "spark")
    with pytest.raises(ValueError, match="unknown executor 'spark'; valid executors: local, ray"):
        default_executor()
    monkeypatch.delenv("LOSSDECAY_EXECUTOR")
    with pytest.raises(SystemExit):
        campaign_main(["--dry-run", "--executor", "dask"])
    assert capsys.readouterr().err.startswith("error: unknown executor 'dask'")
