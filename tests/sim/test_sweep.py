"""Sweeps over configs × tapes: executors agree, statistics hold, outputs, Ctrl-C."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from exec_router import ExecConfig
from exec_router.__main__ import main
from exec_router.simulator import simulate, summarize, synthetic_tape
from exec_router.simulator.cache import TapeCache
from exec_router.simulator.executors import (
    LocalExecutor,
    SerialExecutor,
    make_executor,
    run_task,
)
from exec_router.simulator.stats import choose_method, intent_costs, pool, rank_with_ci
from exec_router.simulator.strategy import Bracket
from exec_router.simulator.venue import Venue

from .sweep_support import comparable, small_job


def noop(i: int, r: dict[str, Any]) -> None:
    pass


def test_intent_costs_add_up_to_the_reported_total() -> None:
    tape = synthetic_tape(hours=2)
    venue = Venue("through", 50)
    strategy = Bracket(every_s=60, asset="BTCUSDT", start_ms=tape.start_ms, end_ms=tape.end_ms)
    for style in ("taker", "maker_both"):
        run = simulate(tape, ExecConfig(style=style), strategy, venue)
        cost, trip = intent_costs(run, venue)
        summary = summarize(run, tape, venue)
        assert len(cost) == summary["entries"]["planned"]
        assert trip.sum() == summary["exits"]["round_trips"]
        assert cost.sum() / trip.sum() == pytest.approx(summary["costs_bps"]["total_incl_missed"])
        assert cost[trip == 1].mean() == pytest.approx(summary["costs_bps"]["total_per_round_trip"])


def test_local_processes_give_the_serial_results_in_order(tmp_path: Path) -> None:
    cache = TapeCache(tmp_path)
    job = small_job(cache)
    serial = SerialExecutor().run(job, noop)
    assert len(serial) == 8
    assert [(r["unit"], r["config_index"]) for r in serial] == job.tasks
    seen: list[int] = []
    local = LocalExecutor(2)
    try:
        assert local.method == "forkserver"
        parallel = local.run(job, lambda i, r: seen.append(i))
    finally:
        local.close()
    assert comparable(parallel) == comparable(serial)
    assert sorted(seen) == list(range(8))
    assert len({r["pid"] for r in parallel} - {os.getpid()}) >= 1


def test_spawn_works_and_fork_is_refused(tmp_path: Path) -> None:
    job = small_job(TapeCache(tmp_path), days=1, configs=1)
    local = LocalExecutor(2, method="spawn")
    try:
        assert comparable(local.run(job, noop)) == comparable(SerialExecutor().run(job, noop))
    finally:
        local.close()
    with pytest.raises(ValueError, match="fork"):
        LocalExecutor(2, method="fork")
    assert isinstance(make_executor(None, 1, 10), SerialExecutor)
    assert isinstance(make_executor(None, 2, 10), LocalExecutor)


def test_a_task_without_the_cache_parses_and_agrees(tmp_path: Path) -> None:
    cache = TapeCache(tmp_path)
    job = small_job(cache, days=1, configs=1)
    from dataclasses import replace

    uncached = replace(job, keys=(None,) * len(job.keys))
    assert comparable([run_task(uncached, 1, 0)]) == comparable([run_task(job, 1, 0)])


def _fake(unit_costs: list[list[float]], unit_trips: list[list[float]], cfg: int) -> list[Any]:
    out = []
    for u, (c, t) in enumerate(zip(unit_costs, unit_trips, strict=True)):
        cost, trip = np.array(c), np.array(t)
        n = int(trip.sum())
        mean = float(cost[trip == 1].mean()) if n else None
        missed = int((trip == 0).sum())
        out.append(
            {
                "tape": f"t{u}",
                "config": {"style": "maker_both", "offset_ticks": cfg},
                "cost": cost,
                "trip": trip,
                "summary": {
                    "style": "maker_both",
                    "entries": {"planned": len(c), "skipped": missed},
                    "exits": {"round_trips": n},
                    "costs_bps": {
                        "fees": 7.0,
                        "entry_slippage": 0.0,
                        "exit_slippage": 0.0,
                        "total_per_round_trip": mean,
                        "missed_opportunity": 0.0,
                        "total_incl_missed": float(cost.sum() / n) if n else None,
                    },
                    "markouts_bps": {"maker_fills": 0, "1s": None, "5s": None, "30s": None},
                    "counters": {"fills": n},
                },
            }
        )
    return out


def test_pooling_and_the_bootstrap_by_hand() -> None:
    rng = np.random.default_rng(1)
    trips = [[1.0] * 40 for _ in range(12)]
    base = [list(rng.normal(5.0, 1.0, 40)) for _ in range(12)]
    close = [[x + 0.01 for x in u] for u in base]  # a hair worse on every round trip
    far = [[x + 2.0 for x in u] for u in base]
    noise = rng.normal(0.0, 3.0, (12, 40))
    noise += 0.05 - noise.mean()  # worse by 0.05 on average, by ±3 on each round trip
    noisy = [[x + e for x, e in zip(u, n, strict=True)] for u, n in zip(base, noise, strict=True)]
    per_config = [_fake(c, trips, k) for k, c in enumerate((far, base, close, noisy))]
    ranked, info = rank_with_ci(per_config, method="auto")
    assert info["method"] == "tapes"  # 12 tapes
    assert [r["config"]["offset_ticks"] for r in ranked][:1] == [1]
    by = {r["config"]["offset_ticks"]: r for r in ranked}
    best = by[1]
    point = float(np.concatenate(base).mean())
    assert best["costs_bps"]["total_incl_missed"] == pytest.approx(point)
    low, high = best["ci95_bps"]
    assert low < point < high
    assert high - low == pytest.approx(2 * 1.96 / np.sqrt(480), rel=0.35)
    assert best["vs_best"] == {"diff_bps": 0.0, "ci95_bps": [None, None], "significant": None}
    assert by[0]["vs_best"]["diff_bps"] == pytest.approx(2.0)
    assert by[0]["vs_best"]["significant"] is True
    assert by[2]["vs_best"]["significant"] is True  # a constant shift: paired, always worse
    assert by[2]["vs_best"]["ci95_bps"] == pytest.approx([0.01, 0.01])
    assert by[3]["vs_best"]["diff_bps"] == pytest.approx(0.05)
    assert by[3]["vs_best"]["significant"] is False  # noise swamps it
    d_low, d_high = by[3]["vs_best"]["ci95_bps"]
    assert d_low < 0 < d_high
    assert by[0]["round_trips"] == 480
    again, _ = rank_with_ci(per_config, method="auto")
    assert json.dumps(again) == json.dumps(ranked)  # the same draws every time
    intents, info2 = rank_with_ci(per_config, method="intents")
    assert info2["method"] == "intents"
    assert intents[0]["costs_bps"] == ranked[0]["costs_bps"]


def test_missed_entries_count_in_the_total_not_the_round_trips() -> None:
    (pooled,) = [pool(_fake([[6.0, -1.0, 8.0], [7.0]], [[1, 0, 1], [1]], 0))]
    assert pooled["round_trips"] == 3
    assert pooled["costs_bps"]["total_incl_missed"] == pytest.approx((6 - 1 + 8 + 7) / 3)
    assert pooled["costs_bps"]["total_per_round_trip"] == pytest.approx(7.0)
    assert pooled["entries"] == {"planned": 4, "skipped": 1}


def test_method_choice() -> None:
    assert choose_method("auto", 14, [100, 100]) == "tapes"
    assert choose_method("auto", 2, [100, 100]) == "intents"
    assert choose_method("auto", 2, [100, 90]) == "tapes"
    with pytest.raises(ValueError, match="same intents"):
        choose_method("intents", 2, [100, 90])
    with pytest.raises(ValueError, match="choose from"):
        choose_method("days", 2, [1])


SWEEP = [
    "simulate",
    "--hours",
    "0.5",
    "--days",
    "2",
    "--symbols",
    "BTCUSDT,ETHUSDT",
    "--every-s",
    "60",
    "--sweep",
    "entry_ttl_s=2,8",
    "offset_ticks=0,1",
]


def test_sweep_command_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    js, table, png = tmp_path / "s.json", tmp_path / "s.csv", tmp_path / "s.png"
    argv = [*SWEEP, "--jobs", "1", "--json", str(js), "--csv", str(table), "--plot", str(png)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "Tapes: 4 (BTCUSDT day 1, BTCUSDT day 2, ETHUSDT day 1, ETHUSDT day 2)\n" in out
    assert "Strategy: bracket, an entry every 60 s: 100 entry intents per config\n" in out
    assert "bootstrap over entry intents" in out
    assert "4 configs × 4 tapes = 16 tasks on this process" in out
    lines = err.splitlines()  # not a TTY: one line per finished task
    assert len(lines) == 16
    assert lines[0].startswith("[ 1/16] BTCUSDT day 1 · entry_ttl_s=2.0 offset_ticks=0: ")
    ranked = json.loads(js.read_text())["sweep"]["ranked"]
    rows = list(csv.DictReader(table.open()))
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    for row, r in zip(rows, ranked, strict=True):
        assert float(row["total_incl_missed_bps"]) == r["costs_bps"]["total_incl_missed"]
        assert float(row["ci95_low_bps"]) == r["ci95_bps"][0]
        assert row["entry_ttl_s"] == str(r["config"]["entry_ttl_s"])
        assert int(row["round_trips"]) == r["round_trips"]
        assert r["tapes"] == 4
        assert [t["tape"] for t in r["per_tape"]][:2] == ["BTCUSDT day 1", "BTCUSDT day 2"]
    assert rows[0]["significant"] == ""
    assert {rows[k]["significant"] for k in (1, 2, 3)} <= {"true", "false"}
    assert png.stat().st_size > 10_000
    # Two processes: the same numbers in the same order.
    js2 = tmp_path / "s2.json"
    assert main([*SWEEP, "--jobs", "2", "--json", str(js2), "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    assert json.loads(js2.read_text())["sweep"]["ranked"] == ranked


def test_ctrl_c_cancels_and_prints_what_finished(tmp_path: Path) -> None:
    argv = [*SWEEP[:3], "--days", "6", *SWEEP[5:], "--jobs", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "exec_router", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)},
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()  # the first finished task
    assert line.startswith("[ 1/48] "), line
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Interrupted: " in out
    assert "of 48 tasks finished; the rest were cancelled" in out
    assert "Traceback" not in err


def test_a_failing_task_stops_the_sweep_with_its_error(tmp_path: Path) -> None:
    from dataclasses import replace

    from exec_router.simulator.cache import TapeSpec
    from exec_router.simulator.errors import TapeError

    job = small_job(TapeCache(tmp_path), days=1, configs=2)
    gone = TapeSpec.of("csv", [str(tmp_path / "gone.csv")], symbol="BTCUSDT", sizes=False)
    bad = replace(job, specs=(gone, *job.specs[1:]), keys=(None, *job.keys[1:]))
    local = LocalExecutor(2)
    try:
        with pytest.raises(TapeError, match=r"gone\.csv: no such file"):
            local.run(bad, noop)
    finally:
        local.close()
    assert local._pool is None  # stopped, not left to finish the other tasks


def test_intents_are_split_by_tape(tmp_path: Path) -> None:
    from exec_router.simulator.executors import IntentPlan
    from exec_router.simulator.strategy import EntryIntent, ExitIntent, IntentList

    tape = synthetic_tape(hours=0.1, symbol="ETHUSDT")
    intents = IntentList(
        [
            EntryIntent(tape.start_ms + 1_000, "a", "ETHUSDT", "LONG"),
            EntryIntent(tape.start_ms + 2_000, "b", "BTCUSDT", "LONG"),
            EntryIntent(tape.end_ms + 1, "c", "ETHUSDT", "SHORT"),
        ],
        [ExitIntent(tape.start_ms + 5_000, "a", "X"), ExitIntent(tape.start_ms + 6_000, "b", "X")],
    )
    plan = IntentPlan(intents)
    assert plan.make(tape, filter_asset=False) is intents  # one tape: as given
    mine = plan.make(tape, filter_asset=True)
    assert [e.trade_id for e in mine.entries()] == ["a"]
    assert [x.trade_id for x in mine.scheduled_exits()] == ["a"]


def test_a_terminal_gets_a_progress_bar_not_lines(tmp_path: Path) -> None:
    import pty

    master, slave = pty.openpty()
    argv = ["simulate", "--hours", "0.2", "--sweep", "offset_ticks=0,1,2", "--jobs", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "exec_router", *argv],
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path), "COLUMNS": "100"},
    )
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    out, _ = proc.communicate(timeout=60)
    os.close(master)
    assert proc.returncode == 0
    assert b"3/3" in seen  # the bar's count, drawn on the terminal
    assert b"[1/3]" not in seen  # not the line per task of a pipe
    assert b"Sweep ranked" in out


def test_a_config_without_round_trips_ranks_last_without_an_interval() -> None:
    rng = np.random.default_rng(2)
    costs = [list(rng.normal(5.0, 1.0, 20)) for _ in range(3)]
    some = [_fake(costs, [[1.0] * 20] * 3, 0), _fake(costs, [[0.0] * 20] * 3, 1)]
    ranked, _ = rank_with_ci(some)
    assert [r["config"]["offset_ticks"] for r in ranked] == [0, 1]
    last = ranked[1]
    assert last["costs_bps"]["total_incl_missed"] is None
    assert last["ci95_bps"] == [None, None]
    assert last["vs_best"]["diff_bps"] is None
    assert last["vs_best"]["significant"] is None


def test_json_to_stdout_keeps_the_report_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", "--hours", "0.3", "--sweep", "offset_ticks=0,1", "--jobs", "1"]
    assert main([*argv, "--json", "-", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    payload = json.loads(out)  # stdout is the JSON alone
    assert sorted(r["config"]["offset_ticks"] for r in payload["sweep"]["ranked"]) == [0, 1]
    assert "Sweep ranked by total cost" in err
    assert "JSON written" not in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--sweep", "offset_ticks=0,1", "--jobs", "-1"], "--jobs must be >= 0"),
        (["--sweep", "offset_ticks=0,1", "--days", "0"], "--days must be >= 1"),
        (["--sweep", "offset_ticks=0,1", "--symbols", "ETHUSDT,ethusdt"], "give each symbol once"),
        (["--sweep", "offset_ticks=0,1", "--hours", "25"], "--hours must be in (0, 24]"),
        (["--days", "2"], "--days, --symbols, --scheduler and --csv go with --sweep"),
        (["--csv", "x.csv"], "--days, --symbols, --scheduler and --csv go with --sweep"),
        (["--sweep", "offset_ticks=0,1", "--csv", "/nonexistent/x.csv"], "--csv /nonexistent"),
        (
            ["--sweep", "offset_ticks=0,1", "--scheduler", "tcp://127.0.0.1:notaport"],
            "expected tcp://HOST:PORT",
        ),
    ],
)
def test_bad_sweep_arguments_are_one_line_and_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "--hours", "0.2", *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert err.count("\n") == 1
    assert err.startswith("exec-router: ")


def test_days_are_refused_with_a_book(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    book = tmp_path / "b.csv"
    book.write_text("ts_ms,bid,ask\n1000,99.9,100.1\n2000,99.9,100.1\n")
    assert (
        main(["simulate", "--book", str(book), "--days", "3", "--sweep", "offset_ticks=0,1"]) == 2
    )
    assert "--days and --symbols make synthetic tapes: not with --book" in capsys.readouterr().err
