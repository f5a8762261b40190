"""Grid sweeps: ExecConfig values from text, and the grid of configs (run by executors.py)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from exec_router import ExecConfig

from .options import SWEEPABLE

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_value(key: str, text: str) -> Any:
    """One ExecConfig field value from text, typed by the field."""
    kind = SWEEPABLE.get(key)
    if kind is None:
        raise ValueError(f"unknown ExecConfig field {key!r}; choose from {', '.join(SWEEPABLE)}")
    text = text.strip()
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise ValueError(f"{key}={text!r}: expected {kind}") from None
    if kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"{key}={text!r}: expected true or false")
    return text


def parse_assignments(specs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs into ExecConfig keyword arguments."""
    out: dict[str, Any] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep:
            raise ValueError(f"{spec!r}: expected key=value")
        out[key.strip()] = parse_value(key.strip(), value)
    return out


def parse_grid(specs: Sequence[str]) -> dict[str, list[Any]]:
    """``key=v1,v2,...`` specs into an ordered grid."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        if not sep or not values.strip():
            raise ValueError(f"{spec!r}: expected key=v1,v2,...")
        grid[key] = [parse_value(key, v) for v in values.split(",")]
    return grid


def grid_configs(base: dict[str, Any], grid: dict[str, list[Any]]) -> list[ExecConfig]:
    """Every combination of the grid over the base settings (ConfigError on a bad value)."""
    keys = list(grid)
    return [
        ExecConfig(**{**base, **dict(zip(keys, combo, strict=True))})
        for combo in itertools.product(*(grid[k] for k in keys))
    ]
