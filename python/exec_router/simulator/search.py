"""Vectorised first-match searches over a window of tape rows."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

Mask = NDArray[np.bool_]

#: The first chunk scanned; each further chunk is four times larger. Most quotes fill or
#: trigger early, so this keeps a long window (a max-hold of hours) cheap.
FIRST_CHUNK = 512


def first_true(mask_of: Callable[[int, int], Mask], lo: int, hi: int) -> int:
    """Smallest ``i`` in ``[lo, hi)`` with ``mask_of(a, b)[i - a]`` true, else -1.

    ``mask_of(a, b)`` evaluates the condition on rows ``a:b`` with numpy.
    """
    chunk = FIRST_CHUNK
    while lo < hi:
        end = min(hi, lo + chunk)
        mask = mask_of(lo, end)
        k = int(mask.argmax())
        if mask[k]:
            return lo + k
        lo = end
        chunk *= 4
    return -1
