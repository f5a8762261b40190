"""SimClock: the injectable clock the simulated runtime moves by hand."""

from __future__ import annotations


class SimClock:
    """A monotonic clock in seconds whose value the event loop sets."""

    __slots__ = ("now",)

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def set_ms(self, t_ms: int) -> None:
        self.now = t_ms / 1000.0
