"""``python -m exec_router simulate`` (also the ``exec-router`` console script)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from .simulator.cli import main as cli_main
    except ImportError as exc:
        missing = exc.name or "a dependency"
        print(
            f"exec-router: the simulator needs the 'sim' extra ({missing} is missing): "
            "pip install 'exec-router[sim]'",
            file=sys.stderr,
        )
        return 2
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
