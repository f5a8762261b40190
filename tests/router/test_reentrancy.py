"""User code that re-enters the router from awkward places: a number's
``__float__``, a trade id's ``__eq__``, a value's ``__del__``, a hook's
``__eq__``. The router must neither crash nor lose track of its registry."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

import pytest

from ..conftest import FakeClock, Impl
from ..support import FAR_FUTURE, register


def assert_consistent(router: Any) -> None:
    """The dict view, the expiry index and the entry guard agree."""
    orders = router.working_orders()
    assert [id(w) for w in router.expired(FAR_FUTURE)] == [id(w) for w in orders]
    assert router.has_working_entry() == any(w.action == "ENTER" for w in orders)


class Key:
    """A trade id whose ``__eq__`` runs a scheduled action on its n-th call."""

    calls = 0
    fire: dict[int, Callable[[], object]] = {}  # noqa: RUF012 - shared on purpose

    def __init__(self, name: str) -> None:
        self.name = name

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        Key.calls += 1
        action = Key.fire.pop(Key.calls, None)
        if action is not None:
            action()
        return isinstance(other, Key) and self.name == other.name

    def __format__(self, spec: str) -> str:
        return self.name


@pytest.mark.parametrize("scenario", ["register/register", "fill/register", "fill/clear"])
def test_key_eq_reentering_the_registry(impl: Impl, clock: FakeClock, scenario: str) -> None:
    router = impl.router(clock=clock)
    register(router, impl, Key("a"))
    Key.calls = 0
    outer, inner = scenario.split("/")
    nested = {
        "register": lambda: register(router, impl, Key("a")),
        "clear": lambda: router.clear_working(Key("a")),
    }[inner]
    Key.fire = {2: nested}
    try:
        if outer == "register":
            register(router, impl, Key("a"))
        else:
            router.note_fill(Key("a"))
    except KeyError:
        pass  # a nested removal may leave nothing for the outer call to remove
    finally:
        Key.fire = {}
    assert_consistent(router)


def test_float_reentering_during_assignment(impl: Impl, clock: FakeClock) -> None:
    router = impl.router(clock=clock)
    wo = register(router, impl, "a")

    class Reentrant(int):
        def __float__(self) -> float:
            router.note_fill("a")
            return 5.0

    wo.submitted_at = Reentrant(3)
    wo.retries_left = 2
    assert_consistent(router)
    plan = router.plan_entry(
        trade_id="b", asset="BTCUSDT", position_side="LONG", reference_price=100.0
    )
    assert plan.suppress == router.has_working_entry()


def test_del_of_old_action_reassigning_it(impl: Impl, clock: FakeClock) -> None:
    router = impl.router(clock=clock)
    wo = register(router, impl, "a")

    class Action(str):
        def __del__(self) -> None:
            wo.action = "EXIT"

    wo.action = Action("EXIT")
    wo.action = "ENTER"
    gc.collect()
    assert wo.action == "EXIT"
    assert_consistent(router)


def test_unregister_with_an_eq_that_registers_hooks(impl: Impl, clock: FakeClock) -> None:
    router = impl.router(clock=clock)
    calls = []

    class Hook:
        def __call__(self, *args: object) -> None:
            pass

        def __eq__(self, other: object) -> bool:
            calls.append(other)
            assert len(calls) < 50, "unregister keeps retrying"
            router.register_hook("on_fill", lambda *a: None)
            return False

        __hash__ = object.__hash__

    router.register_hook("on_fill", Hook())
    router.register_hook("on_fill", lambda *a: None)()
    assert len(calls) == 1


@pytest.mark.parametrize("reason", [int, Key])
def test_a_class_as_exit_reason_is_formatted(impl: Impl, clock: FakeClock, reason: Any) -> None:
    router = impl.router(clock=clock)
    plan = router.plan_exit(
        trade_id="a", asset="BTCUSDT", position_side="LONG", reference_price=1.0, reason=reason
    )
    assert plan.reason == f"taker_exit:{reason}"
