"""A real Dask cluster on 127.0.0.1: a scheduler and two workers, started and stopped here.

The sweep through the cluster equals the local executor's, also when one worker is killed
with SIGKILL in the middle, and when the tape entries are shipped to the workers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from exec_router.__main__ import main
from exec_router.simulator.cache import TapeCache
from exec_router.simulator.executors import DaskExecutor, SerialExecutor

from .sweep_support import comparable, small_job

START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dask_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "dask", *args]


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop one process we started, by its pid: SIGTERM, then SIGKILL."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]
    logs: Path

    def start_worker(self, name: str, env: dict[str, str] | None = None) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.workers.append(
            subprocess.Popen(
                dask_cmd(
                    "worker",
                    self.address,
                    "--name",
                    name,
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        )

    def wait_for_workers(self, n: int) -> dict[str, Any]:
        from distributed import Client

        with Client(self.address, timeout=START_TIMEOUT) as client:
            client.wait_for_workers(n, timeout=START_TIMEOUT)
            info: dict[str, Any] = client.scheduler_info()["workers"]
            return info

    def stop_workers(self) -> None:
        for proc in self.workers:
            stop(proc)
        self.workers.clear()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    logs = tmp_path_factory.mktemp("dask-logs")
    port = free_port()
    log = (logs / "scheduler.log").open("wb")
    scheduler = subprocess.Popen(
        dask_cmd("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    c = Cluster(f"tcp://127.0.0.1:{port}", scheduler, [], logs)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if scheduler.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"the scheduler did not start: {(logs / 'scheduler.log').read_text()}"
                    )
                time.sleep(0.1)
        yield c
    finally:
        c.stop_workers()
        stop(scheduler)


@pytest.fixture
def two_workers(cluster: Cluster) -> Iterator[Cluster]:
    cluster.start_worker("w1")
    cluster.start_worker("w2")
    try:
        cluster.wait_for_workers(2)
        yield cluster
    finally:
        cluster.stop_workers()


def test_the_cluster_gives_the_local_results(two_workers: Cluster, tmp_path: Path) -> None:
    job = small_job(TapeCache(tmp_path / "cache"), configs=2)  # 2 configs × 4 tapes
    local = SerialExecutor().run(job, lambda i, r: None)
    dask = DaskExecutor(two_workers.address)
    try:
        remote = dask.run(job, lambda i, r: None)
    finally:
        dask.close()
    assert len(remote) == 8
    assert comparable(remote) == comparable(local)
    pids = {r["pid"] for r in remote}
    assert pids == {p.pid for p in two_workers.workers}  # both workers worked, not us


def test_a_worker_killed_mid_sweep_changes_nothing(two_workers: Cluster, tmp_path: Path) -> None:
    job = small_job(TapeCache(tmp_path / "cache"), hours=1.0, configs=4, every_s=30)  # 16 tasks
    local = SerialExecutor().run(job, lambda i, r: None)
    victim = two_workers.workers[0]
    killed_after: list[int] = []

    def on_done(i: int, result: dict[str, Any]) -> None:
        # Kill the first worker as soon as it has finished one task: it holds others.
        if not killed_after and result["pid"] == victim.pid:
            os.kill(victim.pid, signal.SIGKILL)
            killed_after.append(i)

    dask = DaskExecutor(two_workers.address)
    try:
        remote = dask.run(job, on_done)
    finally:
        dask.close()
    assert killed_after, "the victim never finished a task"
    assert killed_after[0] < len(remote) - 2  # tasks were left to run, some on the victim
    assert victim.wait(timeout=10) == -signal.SIGKILL
    assert comparable(remote) == comparable(local)
    survivor = two_workers.workers[1].pid
    assert sum(r["pid"] == survivor for r in remote) > len(remote) // 2


def test_entries_are_shipped_to_workers_without_the_cache(cluster: Cluster, tmp_path: Path) -> None:
    homes = [tmp_path / "w1-cache", tmp_path / "w2-cache"]
    for name, home in zip(("s1", "s2"), homes, strict=True):
        cluster.start_worker(name, {"XDG_CACHE_HOME": str(home)})
    try:
        cluster.wait_for_workers(2)
        job = small_job(TapeCache(tmp_path / "client-cache"), configs=2)
        local = SerialExecutor().run(job, lambda i, r: None)
        dask = DaskExecutor(cluster.address, ship=True)
        try:
            remote = dask.run(job, lambda i, r: None)
        finally:
            dask.close()
    finally:
        cluster.stop_workers()
    assert comparable(remote) == comparable(local)
    stored = [sorted(p.name for p in (h / "exec-router").glob("*.arrow")) for h in homes]
    want = sorted(f"{k}.arrow" for k in job.keys if k)
    assert any(s == want for s in stored)  # a worker that ran tasks of every tape has all


def test_the_command_runs_on_the_cluster(
    two_workers: Cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["simulate", "--hours", "0.5", "--days", "2", "--symbols", "BTCUSDT,ETHUSDT"]
    common += ["--every-s", "60", "--sweep", "offset_ticks=0,1", "--no-progress"]
    common += ["--cache-dir", str(tmp_path / "cache")]
    a, b = tmp_path / "local.json", tmp_path / "dask.json"
    assert main([*common, "--jobs", "1", "--json", str(a)]) == 0
    assert main([*common, "--scheduler", two_workers.address, "--json", str(b)]) == 0
    out = capsys.readouterr().out
    assert f"tasks on Dask scheduler {two_workers.address}" in out
    assert (
        json.loads(b.read_text())["sweep"]["ranked"] == json.loads(a.read_text())["sweep"]["ranked"]
    )


def test_an_unreachable_scheduler_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    argv = ["simulate", "--hours", "0.2", "--sweep", "offset_ticks=0,1"]
    assert main([*argv, "--scheduler", f"tcp://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"exec-router: cannot reach the Dask scheduler tcp://127.0.0.1:{port}")
    assert err.count("\n") == 1


def test_the_probe_tells_a_shared_cache_from_a_missing_one(tmp_path: Path) -> None:
    from exec_router.simulator.executors import _probe

    cache = TapeCache(tmp_path)
    job = small_job(cache, days=1, configs=1)
    key = job.keys[0]
    assert key is not None
    path = cache.path_of(key)
    size = path.stat().st_size
    assert _probe(str(path), key, size)
    assert not _probe(str(path), key, size + 1)  # another file of the same name
    assert not _probe(str(path), "0" * 40, size)
    assert not _probe(str(tmp_path / "elsewhere" / path.name), key, size)
