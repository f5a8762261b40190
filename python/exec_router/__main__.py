"""``python -m exec_router`` (also the ``exec-router`` console script).

The arguments are parsed before the simulator's libraries load, so ``--help`` and
``--version`` work without the ``sim`` extra.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .simulator.options import INSTALL_HINT, build_parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from .simulator.cli import run
    except ImportError as exc:
        missing = exc.name or "a dependency"
        hint = INSTALL_HINT.format(extra="sim")
        print(
            f"exec-router: the simulator needs the 'sim' extra ({missing} is missing), {hint}",
            file=sys.stderr,
        )
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
