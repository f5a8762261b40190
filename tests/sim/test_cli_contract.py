"""What the command promises in its help and its outputs.

Every option states its default; ``--help`` and ``--version`` work without the ``sim`` extra;
``--json -`` writes to stdout; ``--plot`` names the file it wrote; loading a file shows the
percentage of its bytes read; the install hint names what works from a checkout.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import pty
import select
import subprocess
import sys
import zipfile
from importlib.metadata import metadata
from pathlib import Path

import numpy as np
import pytest

from exec_router.__main__ import main
from exec_router.simulator.loaders import load_tape
from exec_router.simulator.options import INSTALL_HINT, build_parser

ROOT = Path(__file__).resolve().parents[2]


def _simulate_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    simulate: argparse.ArgumentParser = sub.choices["simulate"]
    return simulate


def _env() -> dict[str, str]:
    import exec_router

    root = str(Path(exec_router.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def _options() -> list[argparse.Action]:
    return [a for a in _simulate_parser()._actions if not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("action", _options(), ids=lambda a: a.option_strings[0])
def test_every_option_states_its_default_once(action: argparse.Action) -> None:
    parser = _simulate_parser()
    text = parser.formatter_class(prog="exec-router")._expand_help(action)  # type: ignore[attr-defined]
    assert text.count("default:") == 1, text
    assert "default: None" not in text
    if action.default not in (None, [], False):
        assert f"default: {action.default}" in text


def test_help_and_version_work_without_the_extras() -> None:
    code = (
        "import sys\n"
        "for name in ('numpy', 'pyarrow', 'rich', 'matplotlib'):\n"
        "    sys.modules[name] = None\n"
        "from exec_router.__main__ import main\n"
        "for argv in (['--version'], ['simulate', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, exc.code\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("exec-router ")
    assert "--fill-model {through,touch,queue,print,all}" in proc.stdout
    assert "(default: through)" in proc.stdout


def test_json_dash_writes_to_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["simulate", "--hours", "1", "--styles", "taker", "--json", "-"])
    out, err = capsys.readouterr()
    assert code == 0
    payload = json.loads(out)  # stdout is the JSON alone
    assert list(payload["styles"]) == ["taker"]
    assert "Execution styles compared" in err  # the report went to stderr
    assert "JSON written" not in err
    assert list(tmp_path.iterdir()) == []  # no file named "-"


def test_plot_names_the_file_it_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    code = main(
        ["simulate", "--hours", "2", "--styles", "maker_both", "--plot", str(tmp_path / "out")]
    )
    out, _ = capsys.readouterr()
    written = tmp_path / "out.png"
    assert code == 0
    assert f"Plot written to {written}" in out
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_with_an_unknown_suffix_fails_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out.txt"
    code = main(["simulate", "--hours", "1", "--plot", str(target)])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.startswith(f"exec-router: --plot {target}: the suffix must be one of .png")


def _book_csv(rows: int) -> bytes:
    ts = 1_700_000_000_000 + np.arange(rows) * 100
    bid = 65_000.0 + np.round(np.sin(np.arange(rows) / 50.0) * 10, 1)
    lines = [f"{t},{b:.1f},{b + 0.1:.1f},1.5,2.5" for t, b in zip(ts, bid, strict=True)]
    return ("ts_ms,bid,ask,bid_qty,ask_qty\n" + "\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("kind", ["plain", "gz", "zip"])
def test_loading_reports_the_bytes_read(tmp_path: Path, kind: str) -> None:
    raw = _book_csv(400_000)  # ~14 MB: several 4 MiB reader blocks
    path = tmp_path / {"plain": "book.csv", "gz": "book.csv.gz", "zip": "book.zip"}[kind]
    if kind == "plain":
        path.write_bytes(raw)
    elif kind == "gz":
        path.write_bytes(gzip.compress(raw, compresslevel=1))
    else:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("book.csv", raw)
    calls: list[tuple[str, int, int]] = []
    tape = load_tape(str(path), progress=lambda *a: calls.append(a))
    seen = [c[1] for c in calls]
    total = raw.__len__() if kind == "zip" else path.stat().st_size
    assert {c[0] for c in calls} == {str(path)}
    assert {c[2] for c in calls} == {total}
    assert len(calls) >= 2
    assert seen == sorted(seen)
    assert seen[-1] == total
    plain = load_tape(str(path))
    assert np.array_equal(tape.ts, plain.ts)
    assert np.array_equal(tape.bid, plain.bid)


def test_loading_shows_a_percentage_on_a_terminal(tmp_path: Path) -> None:
    book = tmp_path / "book.csv"
    book.write_bytes(_book_csv(400_000))
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "exec_router", "simulate", "--book", str(book)),
            *("--symbol", "BTCUSDT", "--styles", "taker"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env={**_env(), "TERM": "xterm", "COLUMNS": "100"},
    )
    os.close(follower)
    shown = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 120)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert proc.wait(timeout=120) == 0
    text = shown.decode(errors="replace")
    assert "loading book.csv" in text
    assert "100%" in text


def test_install_hint_works_from_a_checkout() -> None:
    hint = INSTALL_HINT.format(extra="sim")
    assert "pip install '.[sim]'" in hint
    assert "make simulate" in hint
    assert "\nsimulate:" in (ROOT / "Makefile").read_text()
    # The installed metadata (built from this checkout) provides the extras the hints name.
    meta = metadata("exec-router")
    assert {"sim", "plot"} <= set(meta.get_all("Provides-Extra") or [])
    requires = meta.get_all("Requires-Dist") or []
    for extra, names in (("sim", ("numpy", "pyarrow", "rich")), ("plot", ("matplotlib",))):
        given = {r.split(">")[0].split("=")[0].strip() for r in requires if f"'{extra}'" in r}
        assert set(names) <= given, (extra, requires)
