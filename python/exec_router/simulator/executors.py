"""Run a sweep's tasks (config × tape) in this process, on local processes, or on Dask.

A task is small: the job (specs, configs, strategy, venue; a few kB) and two indices. It
loads its tape from the cache by key (memory-mapped; kept for the next task on the same
tape) and returns a small summary. Results come back in task order whatever the executor,
so the numbers and their order never depend on where the tasks ran.

- :class:`SerialExecutor`: here, one task after the other.
- :class:`LocalExecutor`: worker processes started by ``forkserver`` (``spawn`` where there
  is none), never ``fork``. Workers ignore SIGINT: Ctrl-C reaches the parent, which cancels.
- :class:`DaskExecutor`: a ``dask.distributed`` scheduler (``tcp://host:port``). Workers
  read the client's cache directory when they can see it (a shared file system); otherwise
  each entry's bytes are scattered once to every worker, which stores them in its own cache.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from exec_router import ExecConfig

from .cache import TapeCache, TapeSpec, _read_meta, default_cache_dir, get_loader, read_entry
from .engine import simulate
from .metrics import summarize
from .stats import intent_costs
from .strategy import Bracket, IntentList, Strategy
from .tape import Tape
from .venue import Venue

OnDone = Callable[[int, dict[str, Any]], None]


# ── the job ──────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class BracketPlan:
    """The bracket strategy's settings; its times and asset come from each tape."""

    every_s: float = 300.0
    take_profit_bps: float = 8.0
    stop_loss_bps: float = 16.0
    max_hold_s: float = 180.0

    def make(self, tape: Tape, filter_asset: bool) -> Strategy:
        return Bracket(
            every_s=self.every_s,
            take_profit_bps=self.take_profit_bps,
            stop_loss_bps=self.stop_loss_bps,
            max_hold_s=self.max_hold_s,
            asset=tape.symbol,
            start_ms=tape.start_ms,
            end_ms=tape.end_ms,
        )


@dataclass(frozen=True)
class IntentPlan:
    """An intents file. With several tapes, each gets the intents of its symbol and time."""

    intents: IntentList

    def make(self, tape: Tape, filter_asset: bool) -> Strategy:
        if not filter_asset:
            return self.intents
        entries = [
            e
            for e in self.intents.entries()
            if e.asset == tape.symbol and tape.start_ms <= e.ts_ms <= tape.end_ms
        ]
        ids = {e.trade_id for e in entries}
        exits = [x for x in self.intents.scheduled_exits() if x.trade_id in ids]
        return IntentList(entries, exits)


@dataclass(frozen=True)
class Job:
    """Everything a task needs besides its indices."""

    specs: tuple[TapeSpec, ...]
    keys: tuple[str | None, ...]  # cache keys (None: no cache)
    configs: tuple[ExecConfig, ...]
    strategy: BracketPlan | IntentPlan
    venue: Venue
    cache_dir: str | None = None  # None: the worker's own default cache directory

    @property
    def tasks(self) -> list[tuple[int, int]]:
        """(tape, config) pairs, tape-major: a worker tends to stay on one tape."""
        return [(u, c) for u in range(len(self.specs)) for c in range(len(self.configs))]


_TAPES: OrderedDict[tuple[str, str], list[Tape]] = OrderedDict()
_KEEP = 2


def _tape(job: Job, unit: int, blob: bytes | None = None) -> Tape:
    spec, key = job.specs[unit], job.keys[unit]
    memo = (job.cache_dir or "", key or repr(spec))
    tapes = _TAPES.get(memo)
    if tapes is None:
        if key is None:
            tapes = get_loader(spec.loader).load(spec.paths, spec.option_dict)
        else:
            cache = TapeCache(Path(job.cache_dir) if job.cache_dir else default_cache_dir())
            if blob is not None:
                install_entry(cache, key, blob)
            tapes = cache.load(spec, key=key)
        _TAPES[memo] = tapes
        while len(_TAPES) > _KEEP:
            _TAPES.popitem(last=False)
    else:
        _TAPES.move_to_end(memo)
    return tapes[0]


def run_task(job: Job, unit: int, config: int, blob: bytes | None = None) -> dict[str, Any]:
    """Simulate one config on one tape: the summary, and the per-intent costs for the CI."""
    tape = _tape(job, unit, blob)
    cfg = job.configs[config]
    strategy = job.strategy.make(tape, filter_asset=len(job.specs) > 1)
    run = simulate(tape, cfg, strategy, job.venue)
    summary = summarize(run, tape, job.venue)
    cost, trip = intent_costs(run, job.venue)
    return {
        "unit": unit,
        "config_index": config,
        "tape": job.specs[unit].label or tape.source,
        "config": config_dict(cfg),
        "summary": summary,
        "cost": cost,
        "trip": trip,
        "pid": os.getpid(),
        "process_cpu_s": time.process_time(),  # this worker's CPU so far (benchmarks)
    }


def config_dict(config: ExecConfig) -> dict[str, Any]:
    from .options import SWEEPABLE

    return {k: getattr(config, k) for k in SWEEPABLE}


def prepare(spec: TapeSpec, cache_dir: str | None) -> str:
    """Build a spec's cache entry (a task of its own, so tapes parse in parallel)."""
    cache = TapeCache(Path(cache_dir) if cache_dir else default_cache_dir())
    return cache.ensure(spec)


def install_entry(cache: TapeCache, key: str, blob: bytes) -> None:
    """Store shipped entry bytes in this worker's cache, once (a sound copy is kept)."""
    path = cache.path_of(key)
    if path.exists():
        try:
            read_entry(path, key)
            return
        except Exception:
            pass
    from .cache import _atomic_write

    _atomic_write(path, blob)


# ── executors ────────────────────────────────────────────────────────────────


class SweepInterrupted(Exception):
    """Ctrl-C: the remaining tasks were cancelled; ``done`` holds the finished ones."""

    def __init__(self, done: dict[int, dict[str, Any]]) -> None:
        super().__init__(f"interrupted after {len(done)} tasks")
        self.done = done


class Executor(Protocol):
    @property
    def name(self) -> str: ...

    def prepare(self, specs: Sequence[TapeSpec], cache_dir: str | None) -> list[str]: ...

    def run(self, job: Job, on_done: OnDone) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


class SerialExecutor:
    name = "this process"

    def prepare(self, specs: Sequence[TapeSpec], cache_dir: str | None) -> list[str]:
        return [prepare(s, cache_dir) for s in specs]

    def run(self, job: Job, on_done: OnDone) -> list[dict[str, Any]]:
        done: dict[int, dict[str, Any]] = {}
        try:
            for i, (u, c) in enumerate(job.tasks):
                done[i] = run_task(job, u, c)
                on_done(i, done[i])
        except KeyboardInterrupt:
            raise SweepInterrupted(done) from None
        finally:
            _TAPES.clear()  # this process goes on after the sweep: keep no tape mapped
        return [done[i] for i in range(len(done))]

    def close(self) -> None:
        pass


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_method() -> str:
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


@dataclass
class LocalExecutor:
    """``workers`` processes on this machine (forkserver or spawn, never fork)."""

    workers: int
    method: str = field(default_factory=start_method)
    _pool: ProcessPoolExecutor | None = None

    def __post_init__(self) -> None:
        if self.method == "fork":
            raise ValueError("the fork start method is not safe here: use forkserver or spawn")

    @property
    def name(self) -> str:
        return f"{self.workers} local processes ({self.method})"

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context(self.method)
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=ctx, initializer=_ignore_sigint
            )
        return self._pool

    def _gather(self, futures: list[Future[Any]], on_done: OnDone | None) -> dict[int, Any]:
        index = {f: i for i, f in enumerate(futures)}
        done: dict[int, Any] = {}
        pending = set(futures)
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in sorted(finished, key=index.__getitem__):
                    done[index[f]] = f.result()
                    if on_done is not None:
                        on_done(index[f], done[index[f]])
        except KeyboardInterrupt:
            self._stop(pending)
            raise SweepInterrupted(done) from None
        except BaseException:
            self._stop(pending)  # a failed task: do not wait for the others
            raise
        return done

    def _stop(self, pending: set[Future[Any]]) -> None:
        for f in pending:
            f.cancel()
        self.terminate()

    def prepare(self, specs: Sequence[TapeSpec], cache_dir: str | None) -> list[str]:
        pool = self._executor()
        try:
            done = self._gather([pool.submit(prepare, s, cache_dir) for s in specs], None)
        except SweepInterrupted:
            raise KeyboardInterrupt from None  # no task of the sweep has run yet
        return [done[i] for i in range(len(specs))]

    def run(self, job: Job, on_done: OnDone) -> list[dict[str, Any]]:
        pool = self._executor()
        futures = [pool.submit(run_task, job, u, c) for u, c in job.tasks]
        done = self._gather(futures, on_done)
        return [done[i] for i in range(len(futures))]

    def terminate(self) -> None:
        """Stop the workers now (Ctrl-C): running tasks are abandoned."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            with contextlib.suppress(Exception):
                proc.terminate()
        # Waiting lets the pool's manager thread see the dead workers and stop cleanly.
        pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


def _probe(path: str, key: str, size: int) -> bool:
    """On a worker: does it see the client's entry at ``path`` (same key and size)?

    Cheap (the footer only): a damaged copy is still caught when a task loads it.
    """
    try:
        return os.path.getsize(path) == size and _read_meta(Path(path)).get("key") == key
    except Exception:
        return False


@dataclass
class DaskExecutor:
    """Tasks on a ``dask.distributed`` cluster.

    ``ship``: None decides by probing the workers; True always sends the entries' bytes.
    """

    address: str
    ship: bool | None = None
    timeout: float = 30.0
    _client: Any = None

    @property
    def name(self) -> str:
        return f"Dask scheduler {self.address}"

    def client(self) -> Any:
        if self._client is None:
            try:
                from distributed import Client
            except ImportError:
                raise RuntimeError(
                    "--scheduler needs the dask extra: pip install 'exec-router[dask]'"
                ) from None
            _reachable(self.address)
            try:
                self._client = Client(self.address, timeout=self.timeout)  # type: ignore[no-untyped-call]
            except (OSError, TimeoutError) as exc:
                raise RuntimeError(
                    f"cannot reach the Dask scheduler {self.address}: {exc}"
                ) from None
        return self._client

    def prepare(self, specs: Sequence[TapeSpec], cache_dir: str | None) -> list[str]:
        # The client holds the input files: it builds the entries; workers read or get them.
        return [prepare(s, cache_dir) for s in specs]

    def run(self, job: Job, on_done: OnDone) -> list[dict[str, Any]]:
        from distributed import as_completed

        client = self.client()
        blobs: list[Any] = [None] * len(job.specs)
        run_job = job
        if any(job.keys):
            cache = TapeCache(Path(job.cache_dir) if job.cache_dir else default_cache_dir())
            entries = [
                (str(cache.path_of(k)), k, cache.path_of(k).stat().st_size) for k in job.keys if k
            ]
            ship = self.ship
            if ship is None:
                seen = client.run(lambda: all(_probe(*e) for e in entries))
                ship = not all(seen.values())
            if ship:
                for u, key in enumerate(job.keys):
                    if key:
                        data = cache.path_of(key).read_bytes()
                        blobs[u] = client.scatter(data, broadcast=True, hash=False)
                run_job = _replace_cache_dir(job, None)
            else:
                run_job = _replace_cache_dir(job, str(cache.root.resolve()))
        job_future = client.scatter(run_job, broadcast=True, hash=False)
        futures = [
            client.submit(run_task, job_future, u, c, blobs[u], pure=False) for u, c in job.tasks
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        done: dict[int, dict[str, Any]] = {}
        try:
            for f in as_completed(futures):  # type: ignore[no-untyped-call]
                i = index[f.key]
                done[i] = f.result()
                on_done(i, done[i])
        except KeyboardInterrupt:
            client.cancel(futures)
            raise SweepInterrupted(done) from None
        except BaseException:
            client.cancel(futures)
            raise
        finally:
            client.cancel([job_future, *(b for b in blobs if b is not None)])
        return [done[i] for i in range(len(futures))]

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()


def _reachable(address: str) -> None:
    """Fail at once, in one line, when nothing listens at a ``tcp://host:port`` address."""
    scheme, _, rest = address.partition("://")
    if scheme != "tcp":
        return
    host, _, port = rest.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except ValueError:
        raise RuntimeError(f"--scheduler {address}: expected tcp://HOST:PORT") from None
    except OSError as exc:
        raise RuntimeError(
            f"cannot reach the Dask scheduler {address}: {exc.strerror or exc}"
        ) from None


def _replace_cache_dir(job: Job, cache_dir: str | None) -> Job:
    from dataclasses import replace

    return replace(job, cache_dir=cache_dir)


def make_executor(scheduler: str | None, jobs: int, tasks: int) -> Executor:
    if scheduler:
        return DaskExecutor(scheduler)
    workers = min(jobs or os.cpu_count() or 1, max(tasks, 1))
    if workers <= 1:
        return SerialExecutor()
    return LocalExecutor(workers)


def is_tty() -> bool:
    return sys.stderr.isatty()
