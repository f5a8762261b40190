"""Shared fixtures: every behavioural test runs on both backends."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest

from exec_router import config as config_module
from exec_router import constants, reference

from .backends import BACKENDS, NATIVE_MISSING


@dataclass(frozen=True)
class Impl:
    """One backend of the API: its router, plan and working-order types."""

    name: str
    module: ModuleType

    @property
    def ExecutionRouter(self) -> Any:
        return self.module.ExecutionRouter

    @property
    def ExecutionPlan(self) -> Any:
        return self.module.ExecutionPlan

    @property
    def WorkingOrder(self) -> Any:
        return self.module.WorkingOrder

    ExecConfig = config_module.ExecConfig
    MissAction = constants.MissAction

    def router(self, style: str = "maker_both", **kwargs: Any) -> Any:
        config = kwargs.pop("config", None) or self.ExecConfig(style=style)
        return self.ExecutionRouter(config, **kwargs)


PURE = Impl("pure", reference)


def _impls() -> list[Any]:
    impls: list[Any] = [Impl(name, module) for name, module in BACKENDS]
    if NATIVE_MISSING is not None:  # only while developing without a build
        impls.append(pytest.param(None, marks=pytest.mark.skip(reason=NATIVE_MISSING), id="native"))
    return impls


IMPLS = _impls()


@pytest.fixture(params=IMPLS, ids=lambda i: getattr(i, "name", "native"))
def impl(request: pytest.FixtureRequest) -> Impl:
    """The backend under test: the Rust core, then the pure reference."""
    return request.param  # type: ignore[no-any-return]


class FakeClock:
    """A settable monotonic clock."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
