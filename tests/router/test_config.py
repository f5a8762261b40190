"""ExecConfig: defaults, validation of direct construction, and the lenient from_env()."""

from __future__ import annotations

import logging
import math
import os
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exec_router.config import ConfigError, ExecConfig
from exec_router.constants import VALID_EXHAUST, VALID_MISS, VALID_STYLES

NAN = math.nan
INF = math.inf
P = "DOLPHIN_PINK_"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """os.environ without any DOLPHIN_PINK_* variable."""
    for key in list(os.environ):
        if key.startswith(P):
            monkeypatch.delenv(key)
    return monkeypatch


def read(env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, **values: str) -> Any:
    for key, value in values.items():
        env.setenv(P + key, value)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="exec_router"):
        config = ExecConfig.from_env()
    messages = [r.getMessage() for r in caplog.records if r.name == "exec_router"]
    return config, messages


# ── defaults and properties ──────────────────────────────────────────────────


def test_defaults() -> None:
    config = ExecConfig()
    assert (
        config.style,
        config.entry_ttl_s,
        config.exit_ttl_s,
        config.entry_miss,
        config.entry_retries,
        config.retry_exhaust,
        config.offset_ticks,
        config.max_spread_bps,
        config.post_only,
        config.tick_overrides,
    ) == ("taker", 8.0, 5.0, "skip", 1, "skip", 1, 5.0, True, {})
    assert type(config.entry_retries) is int
    assert type(config.offset_ticks) is int
    assert ExecConfig().tick_overrides is not config.tick_overrides


@pytest.mark.parametrize(
    ("style", "entry", "exit_"),
    [
        ("taker", False, False),
        ("maker_entry", True, False),
        ("maker_exit", False, True),
        ("maker_both", True, True),
    ],
)
def test_maker_properties(style: str, entry: bool, exit_: bool) -> None:
    config = ExecConfig(style=style)
    assert config.maker_entry is entry
    assert config.maker_exit is exit_


def test_ints_are_stored_as_floats() -> None:
    config = ExecConfig(entry_ttl_s=3, exit_ttl_s=0, max_spread_bps=10**3, tick_overrides={"X": 1})
    assert (config.entry_ttl_s, config.exit_ttl_s, config.max_spread_bps) == (3.0, 0.0, 1000.0)
    for value in (config.entry_ttl_s, config.exit_ttl_s, config.max_spread_bps):
        assert type(value) is float
    assert type(config.tick_overrides["X"]) is float


def test_tick_overrides_are_copied_to_a_new_dict() -> None:
    source = {"BTCUSDT": 0.5}
    config = ExecConfig(tick_overrides=source)
    source["BTCUSDT"] = 9.0
    source["NEW"] = 1.0
    assert config.tick_overrides == {"BTCUSDT": 0.5}
    proxy: Any = MappingProxyType({"ETHUSDT": 0.02})
    proxied = ExecConfig(tick_overrides=proxy)
    assert type(proxied.tick_overrides) is dict
    assert proxied.tick_overrides == {"ETHUSDT": 0.02}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"entry_ttl_s": 0.0, "exit_ttl_s": 0, "max_spread_bps": 0.0},
        {"entry_retries": 0, "offset_ticks": 0},
        {"entry_retries": 2**63 - 1, "offset_ticks": 2**63 - 1},
        {"entry_ttl_s": 1e300, "max_spread_bps": 1e300},
        {"tick_overrides": {"X": 5e-324}},
        {"post_only": False},
    ],
)
def test_boundary_values_are_accepted(kwargs: dict[str, Any]) -> None:
    config = ExecConfig(**kwargs)
    for name, value in kwargs.items():
        assert getattr(config, name) == value


# ── validation of direct construction ────────────────────────────────────────

BAD_VALUES: list[tuple[str, Any]] = [
    ("style", "bogus"),
    ("style", "TAKER"),
    ("style", None),
    ("style", 1),
    ("entry_ttl_s", NAN),
    ("entry_ttl_s", INF),
    ("entry_ttl_s", -0.5),
    ("entry_ttl_s", "8"),
    ("entry_ttl_s", None),
    ("entry_ttl_s", True),
    ("entry_ttl_s", 10**400),
    ("exit_ttl_s", -INF),
    ("exit_ttl_s", -1),
    ("exit_ttl_s", NAN),
    ("entry_miss", "SKIP"),
    ("entry_miss", ""),
    ("entry_miss", None),
    ("entry_retries", -1),
    ("entry_retries", 1.5),
    ("entry_retries", 1.0),
    ("entry_retries", True),
    ("entry_retries", "1"),
    ("entry_retries", 2**63),
    ("retry_exhaust", "retry"),
    ("retry_exhaust", None),
    ("offset_ticks", -1),
    ("offset_ticks", 1.0),
    ("offset_ticks", False),
    ("offset_ticks", 2**64),
    ("max_spread_bps", NAN),
    ("max_spread_bps", -1.0),
    ("max_spread_bps", INF),
    ("max_spread_bps", "5"),
    ("post_only", 1),
    ("post_only", "yes"),
    ("post_only", None),
    ("tick_overrides", None),
    ("tick_overrides", [("X", 0.1)]),
    ("tick_overrides", {"": 0.1}),
    ("tick_overrides", {1: 0.1}),
    ("tick_overrides", {"X": 0}),
    ("tick_overrides", {"X": -0.1}),
    ("tick_overrides", {"X": INF}),
    ("tick_overrides", {"X": NAN}),
    ("tick_overrides", {"X": "0.1"}),
    ("tick_overrides", {"X": True}),
    ("tick_overrides", {"\ud800": 0.1}),
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES, ids=repr)
def test_bad_value_raises_a_value_error_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"ExecConfig\.{field}\b") as info:
        ExecConfig(**{field: value})
    assert isinstance(info.value, ConfigError)


@pytest.mark.parametrize(
    ("field", "choices"),
    [("style", VALID_STYLES), ("entry_miss", VALID_MISS), ("retry_exhaust", VALID_EXHAUST)],
)
def test_every_choice_is_accepted(field: str, choices: tuple[str, ...]) -> None:
    for choice in choices:
        kwargs: dict[str, Any] = {field: choice}
        assert getattr(ExecConfig(**kwargs), field) == choice


# ── from_env() with no arguments reads os.environ ────────────────────────────


def test_from_env_empty_is_the_default(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    env.setenv("UNRELATED_EXEC_STYLE", "maker_both")
    config, messages = read(env, caplog)
    assert config == ExecConfig()
    assert messages == []


def test_from_env_reads_every_variable(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config, messages = read(
        env,
        caplog,
        EXEC_STYLE="maker_both",
        MAKER_ENTRY_TTL_S="12.5",
        MAKER_EXIT_TTL_S="3",
        MAKER_ENTRY_MISS="retry",
        MAKER_ENTRY_RETRIES="3",
        MAKER_RETRY_EXHAUST="market",
        MAKER_OFFSET_TICKS="2",
        MAKER_MAX_SPREAD_BPS="7.5",
        POST_ONLY="0",
        TICK_SIZE_BTCUSDT="0.5",
        TICK_SIZE_ethusdt="0.02",
    )
    assert config == ExecConfig(
        style="maker_both",
        entry_ttl_s=12.5,
        exit_ttl_s=3.0,
        entry_miss="retry",
        entry_retries=3,
        retry_exhaust="market",
        offset_ticks=2,
        max_spread_bps=7.5,
        post_only=False,
        tick_overrides={"BTCUSDT": 0.5, "ETHUSDT": 0.02},
    )
    assert messages == []


#: variable -> (field, default, lo, hi), the legacy bounds
BOUNDS: dict[str, tuple[str, float, float, float]] = {
    "MAKER_ENTRY_TTL_S": ("entry_ttl_s", 8.0, 0.5, 300.0),
    "MAKER_EXIT_TTL_S": ("exit_ttl_s", 5.0, 0.5, 300.0),
    "MAKER_ENTRY_RETRIES": ("entry_retries", 1.0, 0.0, 10.0),
    "MAKER_OFFSET_TICKS": ("offset_ticks", 1.0, 0.0, 100.0),
    "MAKER_MAX_SPREAD_BPS": ("max_spread_bps", 5.0, 0.0, 1000.0),
}


def number_warning(var: str, raw: str, kind: str | None, value: Any) -> list[str]:
    _, default, lo, hi = BOUNDS[var]
    name = P + var
    if kind == "clamp":
        parsed = float(raw.strip())
        return [f"exec_router: {name}={parsed} outside [{lo}, {hi}] — clamped to {float(value)}"]
    if kind == "bad":
        return [f"exec_router: bad {name}={raw!r} — using default {default}"]
    return []


NUMBERS: list[tuple[str, str, Any, str | None]] = [
    ("MAKER_ENTRY_TTL_S", " 12.5 ", 12.5, None),
    ("MAKER_ENTRY_TTL_S", "", 8.0, None),
    ("MAKER_ENTRY_TTL_S", "   ", 8.0, None),
    ("MAKER_ENTRY_TTL_S", "0.1", 0.5, "clamp"),
    ("MAKER_ENTRY_TTL_S", "1000", 300.0, "clamp"),
    ("MAKER_ENTRY_TTL_S", "inf", 300.0, "clamp"),
    ("MAKER_ENTRY_TTL_S", "-Infinity", 0.5, "clamp"),
    ("MAKER_ENTRY_TTL_S", "abc", 8.0, "bad"),
    ("MAKER_ENTRY_TTL_S", "nan", 8.0, "bad"),  # NaN -> default, "bad" warning (package rule)
    ("MAKER_EXIT_TTL_S", "0", 0.5, "clamp"),
    ("MAKER_EXIT_TTL_S", "1_0", 10.0, None),
    ("MAKER_EXIT_TTL_S", "NaN", 5.0, "bad"),
    ("MAKER_ENTRY_RETRIES", "2.9", 2, None),
    ("MAKER_ENTRY_RETRIES", "11", 10, "clamp"),
    ("MAKER_ENTRY_RETRIES", "-3", 0, "clamp"),
    ("MAKER_ENTRY_RETRIES", "1e400", 10, "clamp"),
    ("MAKER_ENTRY_RETRIES", "nan", 1, "bad"),
    ("MAKER_ENTRY_RETRIES", "two", 1, "bad"),
    ("MAKER_OFFSET_TICKS", "3.7", 3, None),
    ("MAKER_OFFSET_TICKS", "250", 100, "clamp"),
    ("MAKER_OFFSET_TICKS", "-nan", 1, "bad"),
    ("MAKER_MAX_SPREAD_BPS", "0", 0.0, None),
    ("MAKER_MAX_SPREAD_BPS", "-1", 0.0, "clamp"),
    ("MAKER_MAX_SPREAD_BPS", "2e3", 1000.0, "clamp"),
    ("MAKER_MAX_SPREAD_BPS", "5bps", 5.0, "bad"),
]


@pytest.mark.parametrize(("var", "raw", "value", "kind"), NUMBERS)
def test_from_env_numbers_bounds_and_warnings(
    env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    var: str,
    raw: str,
    value: Any,
    kind: str | None,
) -> None:
    config, messages = read(env, caplog, **{var: raw})
    got = getattr(config, BOUNDS[var][0])
    assert got == value
    assert type(got) is type(value)
    assert messages == number_warning(var, raw, kind, value)


def choice_warning(name: str, raw: str, choices: tuple[str, ...], default: str) -> str:
    return f"exec_router: {P}{name}={raw!r} not in {choices} — using {default!r}"


#: variable -> (field, choices, default)
CHOICE_VARS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "EXEC_STYLE": ("style", VALID_STYLES, "taker"),
    "MAKER_ENTRY_MISS": ("entry_miss", VALID_MISS, "skip"),
    "MAKER_RETRY_EXHAUST": ("retry_exhaust", VALID_EXHAUST, "skip"),
}


@pytest.mark.parametrize(
    ("var", "raw", "value"),
    [
        ("EXEC_STYLE", "MAKER_BOTH", "maker_both"),
        ("EXEC_STYLE", " Maker_Exit\n", "maker_exit"),
        ("EXEC_STYLE", "", "taker"),
        ("EXEC_STYLE", "BOGUS", None),
        ("EXEC_STYLE", "maker", None),
        ("MAKER_ENTRY_MISS", "Market", "market"),
        ("MAKER_ENTRY_MISS", "never", None),
        ("MAKER_RETRY_EXHAUST", "MARKET ", "market"),
        ("MAKER_RETRY_EXHAUST", " Retry", None),
    ],
)
def test_from_env_choices_are_case_insensitive_and_lenient(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, var: str, raw: str, value: Any
) -> None:
    field, choices, default = CHOICE_VARS[var]
    config, messages = read(env, caplog, **{var: raw})
    if value is None:
        assert getattr(config, field) == default
        assert messages == [choice_warning(var, raw.strip().lower(), choices, default)]
    else:
        assert getattr(config, field) == value
        assert messages == []


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("1", True),
        ("true", True),
        (" YES ", True),
        ("On", True),
        ("", True),
        ("  ", True),
        ("0", False),
        ("false", False),
        ("no", False),
        ("off", False),
        ("garbage", False),
        ("2", False),
    ],
)
def test_from_env_post_only(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, raw: str, value: bool
) -> None:
    config, messages = read(env, caplog, POST_ONLY=raw)
    assert config.post_only is value
    assert messages == []


def tick_warning(suffix: str, raw: str) -> str:
    return f"exec_router: bad tick override {P}TICK_SIZE_{suffix}={raw!r}"


@pytest.mark.parametrize(
    ("suffix", "raw", "ticks", "warning"),
    [
        ("BTCUSDT", "0.5", {"BTCUSDT": 0.5}, None),
        ("shibusdt", " 1e-9 ", {"SHIBUSDT": 1e-9}, None),
        ("X", "0", {}, None),
        ("X", "-1", {}, None),
        ("X", "nan", {}, None),
        ("X", "abc", {}, tick_warning("X", "abc")),
        ("X", "", {}, tick_warning("X", "")),
        ("X", "inf", {}, tick_warning("X", "inf")),
        ("", "0.1", {}, tick_warning("", "0.1")),
    ],
)
def test_from_env_tick_overrides(
    env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    suffix: str,
    raw: str,
    ticks: dict[str, float],
    warning: str | None,
) -> None:
    config, messages = read(env, caplog, **{"TICK_SIZE_" + suffix: raw})
    assert config.tick_overrides == ticks
    assert messages == ([] if warning is None else [warning])


def test_from_env_reports_every_bad_variable(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config, messages = read(
        env, caplog, EXEC_STYLE="x", MAKER_ENTRY_TTL_S="y", TICK_SIZE_A="z", POST_ONLY="w"
    )
    assert config == ExecConfig(post_only=False)
    assert sorted(messages) == sorted(
        [
            choice_warning("EXEC_STYLE", "x", VALID_STYLES, "taker"),
            *number_warning("MAKER_ENTRY_TTL_S", "y", "bad", 8.0),
            tick_warning("A", "z"),
        ]
    )


# ── environ= and prefix= ─────────────────────────────────────────────────────


def test_environ_argument_replaces_os_environ(env: pytest.MonkeyPatch) -> None:
    env.setenv(P + "EXEC_STYLE", "maker_both")
    env.setenv(P + "TICK_SIZE_BTCUSDT", "0.5")
    assert ExecConfig.from_env(environ={}) == ExecConfig()
    mapping = MappingProxyType({P + "EXEC_STYLE": "maker_exit"})
    assert ExecConfig.from_env(mapping) == ExecConfig(style="maker_exit")
    assert ExecConfig.from_env(None).style == "maker_both"


def test_prefix_argument(env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    environ = {
        "ACME_EXEC_STYLE": "maker_entry",
        "ACME_MAKER_ENTRY_TTL_S": "0.01",
        "ACME_TICK_SIZE_btc": "0.5",
        P + "EXEC_STYLE": "maker_exit",
        P + "TICK_SIZE_ETHUSDT": "0.5",
    }
    with caplog.at_level(logging.WARNING, logger="exec_router"):
        config = ExecConfig.from_env(environ=environ, prefix="ACME_")
    assert config == ExecConfig(style="maker_entry", entry_ttl_s=0.5, tick_overrides={"BTC": 0.5})
    assert [r.getMessage() for r in caplog.records] == [
        "exec_router: ACME_MAKER_ENTRY_TTL_S=0.01 outside [0.5, 300.0] — clamped to 0.5"
    ]


def test_empty_prefix() -> None:
    config = ExecConfig.from_env({"EXEC_STYLE": "maker_exit", "TICK_SIZE_X": "2"}, prefix="")
    assert config == ExecConfig(style="maker_exit", tick_overrides={"X": 2.0})


ENV_KEYS = [
    P + name
    for name in (
        "EXEC_STYLE",
        "MAKER_ENTRY_TTL_S",
        "MAKER_EXIT_TTL_S",
        "MAKER_ENTRY_MISS",
        "MAKER_ENTRY_RETRIES",
        "MAKER_RETRY_EXHAUST",
        "MAKER_OFFSET_TICKS",
        "MAKER_MAX_SPREAD_BPS",
        "POST_ONLY",
    )
]
TICK_KEYS = st.text(max_size=6).map(lambda s: P + "TICK_SIZE_" + s)
ENV_VALUES = st.one_of(
    st.text(max_size=8),
    st.floats().map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["nan", "-inf", "1e400", "Infinity", " 3 ", "MAKER_BOTH", "retry"]),
)


@settings(deadline=None)
@given(
    st.dictionaries(
        st.one_of(
            st.sampled_from(ENV_KEYS), st.text(max_size=6).map(lambda s: P + "TICK_SIZE_" + s)
        ),
        ENV_VALUES,
    )
)
def test_from_env_never_raises_and_stays_in_bounds(environ: dict[str, str]) -> None:
    config = ExecConfig.from_env(environ)
    assert 0.5 <= config.entry_ttl_s <= 300.0
    assert 0.5 <= config.exit_ttl_s <= 300.0
    assert 0 <= config.entry_retries <= 10
    assert 0 <= config.offset_ticks <= 100
    assert 0.0 <= config.max_spread_bps <= 1000.0
    assert all(0.0 < tick < INF for tick in config.tick_overrides.values())
