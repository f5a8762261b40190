"""The public facade: its names, and how it picks the native core or the pure reference."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import MappingProxyType

import pytest

import exec_router

PURE_REQUESTED = os.environ.get("EXEC_ROUTER_PURE", "").strip() not in ("", "0")
PACKAGE_ROOT = str(Path(exec_router.__file__).resolve().parent.parent)
BLOCK_NATIVE = """
import sys

class BlockNative:
    def find_spec(self, name, path=None, target=None):
        if name == "exec_router._core":
            raise ImportError("simulated: native core unavailable")
        return None

sys.meta_path.insert(0, BlockNative())
"""


def run_python(code: str, pure: str | None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter with EXEC_ROUTER_PURE set to ``pure``."""
    env = {k: v for k, v in os.environ.items() if k != "EXEC_ROUTER_PURE"}
    if pure is not None:
        env["EXEC_ROUTER_PURE"] = pure
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_all_names_exist() -> None:
    assert len(exec_router.__all__) == len(set(exec_router.__all__))
    for name in exec_router.__all__:
        assert hasattr(exec_router, name), name
    assert not any(name.startswith("_") and name != "__version__" for name in exec_router.__all__)
    assert "_core" not in exec_router.__all__


def test_public_constants() -> None:
    assert isinstance(exec_router.LOGGER, logging.Logger)
    assert exec_router.LOGGER.name == "exec_router"
    assert frozenset({"TAKE_PROFIT"}) == exec_router.MAKER_EXIT_REASONS
    assert exec_router.VALID_STYLES == ("taker", "maker_entry", "maker_exit", "maker_both")
    assert exec_router.VALID_MISS == ("skip", "retry", "market")
    assert exec_router.VALID_EXHAUST == ("skip", "market")
    assert exec_router.HOOK_STAGES == (
        "pre_plan",
        "pre_submit",
        "on_working",
        "on_fill",
        "on_miss",
        "on_escalate",
        "on_cancel",
    )
    miss = exec_router.MissAction
    assert (miss.SKIP, miss.RETRY, miss.MARKET) == ("skip", "retry", "market")
    assert exec_router.BACKEND in ("native", "pure")
    assert issubclass(exec_router.ConfigError, ValueError)


def test_default_ticks_are_read_only() -> None:
    ticks = exec_router.DEFAULT_TICKS
    assert isinstance(ticks, MappingProxyType)
    assert ticks["BTCUSDT"] == 0.1
    assert ticks["SHIBUSDT"] == 1e-9
    assert len(ticks) == 12
    with pytest.raises(TypeError):
        ticks["BTCUSDT"] = 1.0  # type: ignore[index]


def test_pure_switch_selects_the_reference() -> None:
    result = run_python(
        """
        import exec_router, exec_router.reference as ref
        assert exec_router.BACKEND == "pure", exec_router.BACKEND
        for name in ("ExecutionPlan", "ExecutionRouter", "WorkingOrder"):
            assert getattr(exec_router, name) is getattr(ref, name), name
        print("ok")
        """,
        pure="1",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_pure_switch_works_without_the_native_core() -> None:
    result = run_python(
        BLOCK_NATIVE
        + """
import exec_router
router = exec_router.ExecutionRouter()
plan = router.plan_entry(
    trade_id="t", asset="BTCUSDT", position_side="LONG", reference_price=1.0
)
print(exec_router.BACKEND, plan.reason)
""",
        pure="1",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["pure", "taker_default"]


@pytest.mark.parametrize("pure", [None, "", "0"])
def test_missing_native_core_raises_import_error_naming_the_switch(pure: str | None) -> None:
    result = run_python(
        BLOCK_NATIVE
        + """
try:
    import exec_router
except ImportError as exc:
    print("ImportError:", exc)
    print("cause:", type(exc.__cause__).__name__)
else:
    print("imported", exec_router.BACKEND)
""",
        pure=pure,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("ImportError:"), out
    assert "EXEC_ROUTER_PURE" in out
    assert "exec_router._core" in out
    assert "cause: ImportError" in out


@pytest.mark.skipif(PURE_REQUESTED, reason="EXEC_ROUTER_PURE is set in this environment")
def test_default_backend_is_native() -> None:
    assert exec_router.BACKEND == "native"
    core = exec_router._core
    assert core.__name__ == "exec_router._core"
    for name in ("ExecutionPlan", "ExecutionRouter", "WorkingOrder"):
        assert getattr(exec_router, name) is getattr(core, name), name


@pytest.mark.skipif(PURE_REQUESTED, reason="EXEC_ROUTER_PURE is set in this environment")
def test_native_is_the_default_in_a_fresh_interpreter() -> None:
    result = run_python(
        """
        import exec_router, exec_router._core as core
        print(exec_router.BACKEND, exec_router.ExecutionRouter is core.ExecutionRouter)
        """,
        pure=None,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["native", "True"]


def test_journal_and_state_names_load_on_first_use() -> None:
    code = textwrap.dedent(
        """
        import sys
        import exec_router
        heavy = [m for m in ("sqlite3", "exec_router.journal", "numpy") if m in sys.modules]
        assert not heavy, heavy
        from exec_router import Journal, JournalError, StateError
        assert issubclass(JournalError, ValueError) and issubclass(StateError, ValueError)
        assert Journal.__module__ == "exec_router.journal"
        assert "sqlite3" not in sys.modules  # only a former-format journal needs it
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        exec_router.Nope  # noqa: B018


def test_one_base_for_the_package_errors() -> None:
    from exec_router.journal import JournalError
    from exec_router.state import StateError

    assert exec_router.ExecRouterError is exec_router.errors.ExecRouterError
    for error in (exec_router.ConfigError, StateError, JournalError):
        assert issubclass(error, exec_router.ExecRouterError)
        assert issubclass(error, ValueError)  # each keeps its own base too
        with pytest.raises(exec_router.ExecRouterError):
            raise error("x")
    assert exec_router.StateError is StateError
    assert exec_router.JournalError is JournalError
