"""Clock readings and deadlines (package rule). A reading that is not a finite
number is refused with a ValueError naming the clock, and nothing is
registered; ``expired(now)`` refuses a ``now`` that is not finite; a deadline
is always finite. So a registered maker exit is always reported by
``expired()`` once its TTL has passed: Rule 1 holds whatever the clock did."""

from __future__ import annotations

import contextlib
import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..conftest import Impl
from ..support import maker_plan, register

NAN, INF = math.nan, math.inf


class Raises:
    """A clock reading that is an exception to raise."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __repr__(self) -> str:
        return f"Raises({self.exc!r})"


class Clock:
    """Returns ``value``, or raises it when it is a ``Raises``."""

    def __init__(self, value: Any = 1000.0) -> None:
        self.value = value

    def __call__(self) -> Any:
        if isinstance(self.value, Raises):
            raise self.value.exc
        return self.value


BAD_READINGS: list[Any] = [
    NAN,
    INF,
    -INF,
    10**400,
    "5",
    None,
    [5],
    Decimal("5"),
    1j,
    Raises(RuntimeError("clock is down")),
    Raises(ZeroDivisionError()),
]


@pytest.mark.parametrize("reading", BAD_READINGS, ids=repr)
def test_a_bad_clock_reading_is_refused_and_registers_nothing(impl: Impl, reading: Any) -> None:
    clock = Clock()
    router = impl.router(clock=clock)
    wo = register(router, impl, "A", "EXIT")
    clock.value = reading
    with pytest.raises(ValueError, match=r"register_working\(\) got .*clock") as info:
        register(router, impl, "B", "EXIT")
    if isinstance(reading, Raises):
        assert info.value.__cause__ is reading.exc
    assert router.working_orders() == [wo]
    assert router.working("B") is None
    with pytest.raises(ValueError, match=r"expired\(\) got .*clock"):
        router.expired()
    with pytest.raises(ValueError, match=r"snapshot\(\) got .*clock"):
        router.snapshot()
    clock.value = wo.deadline
    assert router.expired() == [wo]


def test_a_memory_error_from_the_clock_propagates(impl: Impl) -> None:
    clock = Clock(Raises(MemoryError()))
    router = impl.router(clock=clock)
    with pytest.raises(MemoryError):
        register(router, impl, "A")
    assert router.working_orders() == []


@pytest.mark.parametrize("now", [NAN, INF, -INF])
def test_expired_refuses_a_now_that_is_not_finite(impl: Impl, now: float) -> None:
    router = impl.router(clock=Clock())
    register(router, impl, "A")
    with pytest.raises(ValueError, match=r"expired\(\) got an invalid now"):
        router.expired(now)


@pytest.mark.parametrize("value", [NAN, INF, -INF, 10**400])
def test_a_deadline_that_is_not_finite_is_refused(impl: Impl, value: Any) -> None:
    router = impl.router(clock=Clock())
    wo = register(router, impl, "A", "EXIT")
    before = wo.deadline
    with pytest.raises(ValueError, match="deadline"):
        wo.deadline = value
    assert wo.deadline == before
    assert router.expired(before) == [wo]
    fields = {
        "trade_id": "B",
        "asset": "BTCUSDT",
        "side": "LONG",
        "action": "EXIT",
        "plan": maker_plan(impl, "EXIT"),
        "submitted_at": 1.0,
        "deadline": value,
        "retries_left": 0,
        "base_trade_id": "B",
    }
    with pytest.raises(ValueError, match="deadline"):
        impl.WorkingOrder(**fields)


@pytest.mark.parametrize("ttl_s", [INF, 1e308])
def test_a_ttl_that_gives_no_finite_deadline_is_refused(impl: Impl, ttl_s: float) -> None:
    router = impl.router(clock=Clock(1e308))
    with pytest.raises(ValueError, match="ttl_s"):
        register(router, impl, "A", "EXIT", ttl_s=ttl_s)
    assert router.working_orders() == []


READINGS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**400), 10**400),
    st.sampled_from(BAD_READINGS),
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    before=st.lists(st.tuples(READINGS, st.sampled_from(["register", "expired", "snapshot"]))),
    start=st.floats(-1e12, 1e12),
    ttl_s=st.one_of(st.floats(0.0, 1e6), st.just(NAN)),
)
def test_a_registered_maker_exit_expires_after_its_ttl(
    impl: Impl, before: list[tuple[Any, str]], start: float, ttl_s: float
) -> None:
    """Rule 1 under any clock: whatever the readings before, an exit quote
    that registers is due once its TTL has passed, by argument and by clock."""
    clock = Clock()
    router = impl.router("maker_exit", clock=clock)
    for reading, call in before:
        clock.value = reading
        with contextlib.suppress(ValueError, OverflowError):
            if call == "register":
                register(router, impl, "X", "EXIT", ttl_s=ttl_s)
            elif call == "expired":
                router.expired()
            else:
                router.snapshot()
    clock.value = start
    wo = register(router, impl, "X", "EXIT", ttl_s=ttl_s)
    due = start + max(0.5, ttl_s)
    assert math.isfinite(wo.deadline)
    assert wo.deadline == due
    assert wo in router.expired(due)
    clock.value = due
    assert wo in router.expired()
    clock.value = math.nextafter(due, -INF)
    assert wo not in router.expired()
