"""Hostile values shared by the fuzz, the lockstep machine and the benches:
objects whose dunders raise, lie or disagree. The same object goes to both
backends; each name has one meaning."""

from __future__ import annotations


class HostileError(RuntimeError):
    """Raised by a hostile value's dunder; the message is the dunder's name."""


class Hostile:
    """Base of the objects whose dunders raise; hashable by identity unless told."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class BadFloat(Hostile):
    """``float()`` raises."""

    def __float__(self) -> float:
        raise HostileError("__float__")


class BadStr(Hostile):
    """Hashable; ``str()`` and ``format()`` raise ``exc`` (``HostileError`` by default)."""

    def __init__(self, exc: type[Exception] = HostileError) -> None:
        self.exc = exc

    def __str__(self) -> str:
        raise self.exc("__str__")

    def __format__(self, spec: str) -> str:
        raise self.exc("__format__")

    def __repr__(self) -> str:
        return f"BadStr({self.exc.__name__})"


class BadFormat(Hostile):
    """``str()`` works, ``format()`` does not (the router formats with ``format``)."""

    def __str__(self) -> str:
        return "BadFormat"

    def __format__(self, spec: str) -> str:
        raise HostileError("__format__")


class BadHash(Hostile):
    """``hash()`` raises."""

    def __hash__(self) -> int:
        raise HostileError("__hash__")


class BadEq(Hostile):
    """Hashes like ``1`` (so it collides with the id ``1``); ``==`` raises."""

    def __hash__(self) -> int:
        return 1

    def __eq__(self, other: object) -> bool:
        raise HostileError("__eq__")

    __ne__ = __eq__  # type: ignore[assignment]


class BadBool(Hostile):
    """Truthiness raises; ``str()`` works."""

    def __bool__(self) -> bool:
        raise HostileError("__bool__")


class BadCompare(Hostile):
    """``float()`` works; ``>`` raises."""

    def __float__(self) -> float:
        return 1.0

    def __gt__(self, other: object) -> bool:
        raise HostileError("__gt__")


class BadFloatValue(Hostile):
    """``float()`` raises a ``ValueError`` (the router reports a ``ValueError``)."""

    def __float__(self) -> float:
        raise ValueError("__float__")


class FloatOnly(Hostile):
    """``float()`` works; comparisons and ``str()`` do not."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __float__(self) -> float:
        return self.value

    def __str__(self) -> str:
        raise HostileError("__str__")

    def __repr__(self) -> str:
        return f"FloatOnly({self.value!r})"


class AliasStr(str):
    """A ``str`` subclass whose ``str()`` differs from its value (legacy calls ``str()``)."""

    alias: str

    def __new__(cls, value: str, alias: str = "alias") -> AliasStr:
        obj = super().__new__(cls, value)
        obj.alias = alias
        return obj

    def __str__(self) -> str:
        return self.alias

    def __repr__(self) -> str:
        return f"AliasStr({str.__repr__(self)}, {self.alias!r})"


class LyingFloat(float):
    """A float subclass whose ``>`` always says no (legacy compares with ``>``)."""

    def __gt__(self, other: object) -> bool:
        return False

    def __repr__(self) -> str:
        return f"LyingFloat({float(self)!r})"


class NumpyLikeFloat(float):
    """A float subclass with its own ``repr`` (so its ``str()`` and f-string too)."""

    def __repr__(self) -> str:
        return f"np.float64({float(self)!r})"
