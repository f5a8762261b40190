"""Type stub of the native core (`rust/`). Kept honest by mypy.stubtest."""

import mmap
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import Field
from typing import Any, ClassVar, Final, TypeVar, final, overload

from .config import ExecConfig
from .constants import Action, OrderSide, PositionSide

_T = TypeVar("_T")

__all__ = [
    "COUNTER_KEYS",
    "HOOK_STAGES",
    "MAX_DEPTH",
    "PLAN_FIELDS",
    "Counters",
    "ExecutionPlan",
    "ExecutionRouter",
    "HookHandle",
    "WorkingOrder",
    "_RestoreTimes",
    "__version__",
    "_crc32c",
    "_journal_faults",
    "_journal_read",
    "csv_columns",
    "parse_capture",
]

__version__: str
MAX_DEPTH: Final[int]
COUNTER_KEYS: Final[tuple[str, ...]]
HOOK_STAGES: Final[tuple[str, ...]]
#: ``((name, default), ...)``; ``dict`` stands for the ``metadata`` default factory.
PLAN_FIELDS: Final[tuple[tuple[str, Any], ...]]

@final
class ExecutionPlan:
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]
    __dataclass_params__: ClassVar[Any]
    __match_args__: ClassVar[tuple[str, ...]]
    def __new__(
        cls,
        order_type: str = "MARKET",
        limit_price: float = 0.0,
        post_only: bool = False,
        ttl_s: float = 0.0,
        is_maker: bool = False,
        action: Action = "ENTER",
        reason: str = "taker_default",
        suppress: bool = False,
        metadata: dict[str, Any] = ...,
    ) -> ExecutionPlan: ...
    @property
    def order_type(self) -> str: ...
    @property
    def limit_price(self) -> float: ...
    @property
    def post_only(self) -> bool: ...
    @property
    def ttl_s(self) -> float: ...
    @property
    def is_maker(self) -> bool: ...
    @property
    def action(self) -> Action: ...
    @property
    def reason(self) -> str: ...
    @property
    def suppress(self) -> bool: ...
    @property
    def metadata(self) -> dict[str, Any]: ...
    def sane(self) -> bool: ...
    def __replace__(self, **changes: Any) -> ExecutionPlan: ...
    def __reduce__(self) -> tuple[type[ExecutionPlan], tuple[Any, ...]]: ...
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class WorkingOrder:
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]
    __dataclass_params__: ClassVar[Any]
    __match_args__: ClassVar[tuple[str, ...]]
    trade_id: Any
    asset: Any
    side: PositionSide
    action: Action
    plan: ExecutionPlan
    submitted_at: float
    deadline: float
    retries_left: int
    base_trade_id: Any
    retry_n: int
    def __new__(
        cls,
        trade_id: Any,
        asset: Any,
        side: PositionSide,
        action: Action,
        plan: ExecutionPlan,
        submitted_at: float,
        deadline: float,
        retries_left: int,
        base_trade_id: Any,
        retry_n: int = 0,
    ) -> WorkingOrder: ...
    def __replace__(self, **changes: Any) -> WorkingOrder: ...
    def __reduce__(self) -> tuple[type[WorkingOrder], tuple[Any, ...]]: ...
    def __eq__(self, other: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

@final
class Counters(MutableMapping[str, int]):
    """The router's counters: a live mapping with a fixed set of int values.

    A ``collections.abc.MutableMapping`` (registered): the keys are fixed, so deleting
    (``del``, ``pop``, ``popitem``, ``clear``) raises ``TypeError``.
    """

    def __getitem__(self, key: str, /) -> int: ...
    def __setitem__(self, key: str, value: int, /) -> None: ...
    def __delitem__(self, key: str, /) -> None: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: object, /) -> bool: ...
    def __iter__(self) -> Iterator[str]: ...
    @overload
    def get(self, key: str, default: None = None) -> int | None: ...
    @overload
    def get(self, key: str, default: int | _T) -> int | _T: ...
    def update(  # type: ignore[override]
        self,
        other: Mapping[str, int] | Iterable[tuple[str, int]] | None = None,
        /,
        **kwargs: int,
    ) -> None: ...
    def setdefault(self, key: str, default: int | None = None) -> int: ...
    def pop(self, key: str, default: Any = None) -> int: ...
    def popitem(self) -> tuple[str, int]: ...
    def clear(self) -> None: ...
    def copy(self) -> dict[str, int]: ...
    def __eq__(self, other: object, /) -> bool: ...
    __hash__: ClassVar[None]  # type: ignore[assignment]

@final
class HookHandle:
    """Returned by ``register_hook``; calling it unregisters the hook."""

    @property
    def stage(self) -> str: ...
    def __call__(self) -> None: ...

@final
class ExecutionRouter:
    def __new__(
        cls,
        config: ExecConfig | None = None,
        *,
        logger: Any = None,
        clock: Callable[[], float] | None = None,
    ) -> ExecutionRouter: ...
    config: ExecConfig
    logger: Any
    clock: Callable[[], float]
    @property
    def counters(self) -> Counters: ...
    @counters.setter
    def counters(self, values: Any) -> None: ...
    def register_hook(self, stage: str, fn: Callable[[Any, dict[str, Any]], Any]) -> HookHandle: ...
    def tick_size(self, asset: Any) -> float: ...
    def maker_price(self, *, asset: Any, order_side: OrderSide, reference_price: Any) -> float: ...
    @staticmethod
    def order_side(action: Action, position_side: PositionSide) -> OrderSide: ...
    def plan_entry(
        self,
        *,
        trade_id: Any,
        asset: Any,
        position_side: PositionSide,
        reference_price: Any,
        spread_bps: Any = None,
    ) -> ExecutionPlan: ...
    def plan_exit(
        self,
        *,
        trade_id: Any,
        asset: Any,
        position_side: PositionSide,
        reference_price: Any,
        reason: Any,
        spread_bps: Any = None,
    ) -> ExecutionPlan: ...
    def register_working(
        self,
        *,
        trade_id: Any,
        asset: Any,
        position_side: PositionSide,
        plan: ExecutionPlan,
        base_trade_id: Any = None,
        retry_n: int | None = None,
    ) -> WorkingOrder: ...
    def working(self, trade_id: Any) -> WorkingOrder | None: ...
    def working_orders(self) -> list[WorkingOrder]: ...
    def has_working_entry(self) -> bool: ...
    def expired(self, now: float | None = None) -> list[WorkingOrder]: ...
    def note_fill(self, trade_id: Any) -> None: ...
    def note_cancel(self, trade_id: Any) -> None: ...
    def clear_working(self, trade_id: Any) -> None: ...
    def entry_miss_action(self, wo: WorkingOrder) -> str: ...
    def retry_plan(
        self, wo: WorkingOrder, *, reference_price: Any
    ) -> tuple[Any, ExecutionPlan]: ...
    def market_fallback_plan(self, wo: WorkingOrder) -> tuple[Any, ExecutionPlan]: ...
    def snapshot(self) -> dict[str, Any]: ...
    def export_state(self) -> dict[str, Any]: ...
    @classmethod
    def from_state(
        cls,
        state: Mapping[str, Any],
        config: ExecConfig | None = None,
        *,
        logger: Any = None,
        clock: Callable[[], float] | None = None,
    ) -> ExecutionRouter: ...
    def _observe_registry(
        self, fn: Callable[[str, Any, WorkingOrder], object] | None
    ) -> Callable[[str, Any, WorkingOrder], object] | None: ...
    def _journal_attach(
        self,
        fd: int,
        path: str,
        sync: str,
        group_ms: float | None,
        file_id: bytes,
        times: Callable[[], tuple[float, float]] | None = None,
        compact_bytes: int | None = None,
    ) -> None: ...
    def _journal_restore(
        self,
        orders: dict[Any, WorkingOrder],
        times: _RestoreTimes,
        now: float,
        wall_now: float,
        boot_now: float,
        same_boot: bool,
    ) -> int: ...
    def _journal_detach(self) -> bool: ...
    def _journal_bytes(self) -> bytes | None: ...
    def _journal_settle(self, wait: bool = True) -> bool: ...
    def _journal_hold(self, hold: bool) -> bool: ...
    def _journal_sync(self) -> None: ...
    def _journal_stats(self) -> dict[str, Any] | None: ...

def _crc32c(data: bytes) -> int: ...

@final
class _RestoreTimes:
    """When each order of a journal read back was written (for ``_journal_restore``)."""

def _journal_read(data: bytes | mmap.mmap, name: str, working: bool = False) -> tuple[Any, ...]: ...
def _journal_faults(points: int, errno: int) -> None: ...
def parse_capture(
    path: str,
    *,
    local_time: bool = False,
    allow_gaps: bool = False,
    threads: int = 0,
    block: int = 0,
) -> dict[str, Any]: ...
def csv_columns(
    path: str,
    data: bytes | None,
    width: int,
    header: bool,
    columns: list[tuple[int, str]],
    report: Callable[[int], object] | None = None,
) -> list[bytes] | None: ...
