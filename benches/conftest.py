"""Benchmark fixtures: each case runs on the Rust core and on the pure reference.

Each case times ``INNER`` calls written out at a call site, as a runtime makes
them; ``benches/report.py`` divides by ``inner`` (kept in ``extra_info``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from tests.backends import BACKENDS

from exec_router import ExecConfig

INNER = 100
REPEAT = range(INNER)
#: The largest registry the scaling cases build (``make test`` smoke-runs with less).
MAX_N = int(os.environ.get("BENCH_MAX_N", "1000000"))
#: The pure reference scans its whole registry: past this size it only slows the run.
PURE_MAX_N = 100_000


@dataclass(frozen=True)
class Impl:
    name: str
    module: ModuleType

    def router(self, style: str = "maker_both", clock: Any = None) -> Any:
        config_type = getattr(self.module, "ExecConfig", ExecConfig)  # legacy has its own
        return self.module.ExecutionRouter(
            config_type(style=style), clock=clock or (lambda: 1000.0)
        )


IMPLS = [Impl(name, module) for name, module in BACKENDS]


def legacy_impl() -> Impl | None:
    """The legacy router module at ``$BENCH_LEGACY`` (``make bench LEGACY=path``), if given."""
    path = os.environ.get("BENCH_LEGACY", "").strip()
    if not path:
        return None
    spec = importlib.util.spec_from_file_location("exec_router_legacy", path)
    if spec is None or spec.loader is None:
        raise pytest.UsageError(f"LEGACY={path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return Impl("legacy", module)


LEGACY = legacy_impl()
#: The router cases also time the legacy module when one is given.
ROUTER_IMPLS = IMPLS + ([LEGACY] if LEGACY else [])


@pytest.fixture(params=IMPLS, ids=[i.name for i in IMPLS])
def impl(request: pytest.FixtureRequest) -> Impl:
    return request.param  # type: ignore[no-any-return]


def timed(
    benchmark: Any, group: str, run: Any, impl: Impl | None = None, inner: int = INNER, **info: Any
) -> None:
    """Time ``run`` (which makes ``inner`` calls) as ``impl``'s entry in ``group``."""
    benchmark.group = group
    benchmark.extra_info.update(info, inner=inner, impl=impl.name if impl else "python")
    benchmark(run)
