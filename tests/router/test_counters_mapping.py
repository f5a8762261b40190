"""``router.counters`` is a ``collections.abc.MutableMapping`` on both backends."""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from typing import Any

import pytest

from exec_router.constants import COUNTER_KEYS


def test_counters_are_a_mutable_mapping(impl: Any) -> None:
    router = impl.router()
    router.plan_entry(trade_id="a", asset="BTCUSDT", position_side="LONG", reference_price=1.0)
    counters = router.counters
    assert isinstance(counters, Mapping)
    assert isinstance(counters, MutableMapping)
    assert json.loads(json.dumps(dict(counters))) == dict(
        zip(COUNTER_KEYS, counters.values(), strict=True)
    )
    assert counters["plans_entry"] == 1


def test_update_and_setdefault(impl: Any) -> None:
    counters = impl.router().counters
    counters.update({"cancels": 3})
    counters.update([("fills_working", 4)], hook_errors=5)
    assert (counters["cancels"], counters["fills_working"], counters["hook_errors"]) == (3, 4, 5)
    assert counters.setdefault("cancels", 9) == 3
    assert counters["cancels"] == 3


def test_native_counters_refuse_unknown_keys_and_deletion(impl: Any) -> None:
    if impl.name != "native":
        pytest.skip("the pure backend's counters are a plain dict")
    counters = impl.router().counters
    with pytest.raises(KeyError, match="unknown counter"):
        counters.update({"cancels": 7, "nope": 1})
    assert counters["cancels"] == 0  # checked before any write
    with pytest.raises(TypeError, match="must be int"):
        counters.update(cancels=1, fills_working="2")
    assert counters["cancels"] == 0
    with pytest.raises(KeyError):
        counters.setdefault("nope", 0)
    for delete in (lambda: counters.pop("cancels"), counters.popitem, counters.clear):
        with pytest.raises(TypeError, match="cannot be deleted"):
            delete()
    assert len(counters) == len(COUNTER_KEYS)
