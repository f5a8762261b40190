"""ExecConfig: the validated, frozen execution policy, and its environment reader."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .constants import LOGGER, VALID_EXHAUST, VALID_MISS, VALID_STYLES
from .errors import ExecRouterError

_INT64_MAX = 2**63 - 1


class ConfigError(ExecRouterError, ValueError):
    """An ``ExecConfig`` field holds a value outside its domain."""


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"ExecConfig.{name} must be one of {choices}, got {_show(value)}")
    return value


def _show(value: object) -> str:
    """A short repr for an error message; never raises."""
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__}>"
    return text if len(text) <= 80 else f"{text[:77]}..."


def _as_float(value: int | float) -> float:
    """``float(value)``, with ints beyond float range mapped to ±inf."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _check_seconds(name: str, value: object) -> float:
    if not _is_real(value):
        raise ConfigError(f"ExecConfig.{name} must be a number, got {type(value).__name__}")
    number = _as_float(value)  # type: ignore[arg-type]
    if not math.isfinite(number) or number < 0.0:
        raise ConfigError(f"ExecConfig.{name} must be finite and >= 0, got {_show(value)}")
    return number


def _check_count(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"ExecConfig.{name} must be an int, got {type(value).__name__}")
    if not 0 <= value <= _INT64_MAX:
        raise ConfigError(f"ExecConfig.{name} must be >= 0 and fit in 64 bits, got {_show(value)}")
    return value


def _check_ticks(value: object) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"ExecConfig.tick_overrides must be a mapping, got {type(value).__name__}"
        )
    ticks: dict[str, float] = {}
    for sym, tick in value.items():
        if not isinstance(sym, str) or not sym:
            raise ConfigError(
                f"ExecConfig.tick_overrides keys must be non-empty str, got {_show(sym)}"
            )
        if not _encodable(sym):
            raise ConfigError(f"ExecConfig.tick_overrides key {_show(sym)} is not valid text")
        if not _is_real(tick) or not (0.0 < _as_float(tick) < math.inf):
            raise ConfigError(
                f"ExecConfig.tick_overrides[{sym!r}] must be a finite number > 0, got {_show(tick)}"
            )
        ticks[sym] = float(tick)
    return ticks


@dataclass(frozen=True)
class ExecConfig:
    """Execution policy. Frozen and validated: build it once at boot.

    Direct construction rejects bad values with a ``ValueError`` naming the
    field; :meth:`from_env` stays lenient and never stops a boot.
    """

    style: str = "taker"
    entry_ttl_s: float = 8.0
    exit_ttl_s: float = 5.0
    entry_miss: str = "skip"
    entry_retries: int = 1
    retry_exhaust: str = "skip"
    offset_ticks: int = 1
    max_spread_bps: float = 5.0
    post_only: bool = True
    tick_overrides: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_choice("style", self.style, VALID_STYLES)
        _check_choice("entry_miss", self.entry_miss, VALID_MISS)
        _check_choice("retry_exhaust", self.retry_exhaust, VALID_EXHAUST)
        _check_count("entry_retries", self.entry_retries)
        _check_count("offset_ticks", self.offset_ticks)
        if not isinstance(self.post_only, bool):
            raise ConfigError(
                f"ExecConfig.post_only must be a bool, got {type(self.post_only).__name__}"
            )
        normalised = {
            "entry_ttl_s": _check_seconds("entry_ttl_s", self.entry_ttl_s),
            "exit_ttl_s": _check_seconds("exit_ttl_s", self.exit_ttl_s),
            "max_spread_bps": _check_seconds("max_spread_bps", self.max_spread_bps),
            "tick_overrides": _check_ticks(self.tick_overrides),
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    @property
    def maker_entry(self) -> bool:
        return self.style in ("maker_entry", "maker_both")

    @property
    def maker_exit(self) -> bool:
        return self.style in ("maker_exit", "maker_both")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, prefix: str = "DOLPHIN_PINK_"
    ) -> ExecConfig:
        """Read the policy from ``environ`` (default ``os.environ``).

        Bad values are logged and replaced by the default or clamped to the
        legacy bounds; this never raises on a bad environment.
        """
        env = _EnvReader(_text_environ(os.environ if environ is None else environ, prefix), prefix)
        ticks = env.ticks("TICK_SIZE_")  # read first: legacy logs its warnings first
        return cls(
            style=env.choice("EXEC_STYLE", "taker", VALID_STYLES),
            entry_ttl_s=env.number("MAKER_ENTRY_TTL_S", 8.0, 0.5, 300.0),
            exit_ttl_s=env.number("MAKER_EXIT_TTL_S", 5.0, 0.5, 300.0),
            entry_miss=env.choice("MAKER_ENTRY_MISS", "skip", VALID_MISS),
            entry_retries=int(env.number("MAKER_ENTRY_RETRIES", 1.0, 0.0, 10.0)),
            retry_exhaust=env.choice("MAKER_RETRY_EXHAUST", "skip", VALID_EXHAUST),
            offset_ticks=int(env.number("MAKER_OFFSET_TICKS", 1.0, 0.0, 100.0)),
            max_spread_bps=env.number("MAKER_MAX_SPREAD_BPS", 5.0, 0.0, 1000.0),
            post_only=env.flag("POST_ONLY", True),
            tick_overrides=ticks,
        )


def _text_environ(environ: object, prefix: object) -> dict[str, Any]:
    """The ``prefix`` entries of ``environ``, their values as text."""
    method = "ExecConfig.from_env()"
    if not isinstance(prefix, str):
        raise TypeError(f"{method} got an invalid prefix: {type(prefix).__name__}")
    if not isinstance(environ, Mapping):
        raise TypeError(f"{method} got an invalid environ: {type(environ).__name__}")
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not isinstance(key, str):
            raise TypeError(f"{method} got an invalid environ: a {type(key).__name__} key")
        if not key.startswith(prefix):
            continue
        if value is None or type(value) is str:
            out[key] = value
            continue
        try:
            out[key] = str(value)
        except Exception as exc:
            raise TypeError(f"{method} got an invalid environ: {key} is not text") from exc
    return out


class _EnvReader:
    """Lenient readers with the legacy bounds, messages and clamping."""

    def __init__(self, environ: Mapping[str, str], prefix: str) -> None:
        self.environ = environ
        self.prefix = prefix

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        name = self.prefix + key
        raw: Any = self.environ.get(name)
        if raw is None or not str(raw).strip():
            return default
        try:
            value = float(str(raw).strip())
        except ValueError:
            value = math.nan
        if math.isnan(value):
            LOGGER.warning("exec_router: bad %s=%r — using default %s", name, raw, default)
            return default
        if not lo <= value <= hi:
            clamped = min(max(value, lo), hi)
            LOGGER.warning(
                "exec_router: %s=%s outside [%s, %s] — clamped to %s", name, value, lo, hi, clamped
            )
            return clamped
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        name = self.prefix + key
        raw = str(self.environ.get(name, default) or default).strip().lower()
        if raw not in choices:
            LOGGER.warning("exec_router: %s=%r not in %s — using %r", name, raw, choices, default)
            return default
        return raw

    def flag(self, key: str, default: bool) -> bool:
        raw = self.environ.get(self.prefix + key)
        if raw is None or not str(raw).strip():
            return default
        return str(raw).strip().lower() in ("1", "true", "yes", "on")

    def ticks(self, key: str) -> dict[str, float]:
        start = self.prefix + key
        ticks: dict[str, float] = {}
        for name, raw in self.environ.items():
            if not name.startswith(start):
                continue
            sym = name[len(start) :].upper()
            try:
                value = float(raw)
            except (TypeError, ValueError):
                LOGGER.warning("exec_router: bad tick override %s=%r", name, raw)
                continue
            if math.isinf(value) or not sym or not _encodable(sym):
                LOGGER.warning("exec_router: bad tick override %s=%r", name, raw)
            elif value > 0:
                ticks[sym] = value
        return ticks
