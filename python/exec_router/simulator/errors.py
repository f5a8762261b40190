"""TapeError: a bad input file, reported as ``file:line: message``."""

from __future__ import annotations


class TapeError(Exception):
    """An input file the simulator cannot use. ``line`` is 1-based, or None for the whole file."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"

    def __reduce__(self) -> tuple[type[TapeError], tuple[str, int | None, str]]:
        # Crosses process boundaries intact (a sweep's worker raising it).
        return (type(self), (self.path, self.line, self.message))
