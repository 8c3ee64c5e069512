"""The query protocol: what `Database` needs from a driver beyond pooling.

`Database.fetch` & co. call these with a *native* connection lent by the
pool, so the shell never imports a driver. Placeholders are the driver's own
(``%s`` for psycopg and psycopg2, ``$1`` for asyncpg); ``params`` is passed
through as the driver expects (a sequence, or a mapping where supported).

Rows come back as `Row`: a tuple that also answers ``row["column"]`` and
``row.column``, and is an object in JSON.

Timeouts: every method takes ``timeout`` (seconds or None). When it passes,
the statement is cancelled server-side where the driver allows it and
``TimeoutError`` is raised; the connection must then be reported broken or
left idle-in-error so that the pool's return path cleans or discards it.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

try:  # namedtuple's field accessor: a tuple item without a Python call
    from _collections import _tuplegetter  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - other interpreters
    from operator import itemgetter

    def _tuplegetter(index: int, doc: str) -> Any:
        return property(itemgetter(index), doc=doc)


__all__ = ["AsyncQueries", "Isolation", "Queries", "Row", "Rows"]


class Isolation(enum.Enum):
    """Transaction isolation levels, as PostgreSQL spells them."""

    READ_COMMITTED = "read committed"
    REPEATABLE_READ = "repeatable read"
    SERIALIZABLE = "serializable"


class Row(tuple[Any, ...]):
    """A result row: a tuple that also answers to its column names.

    ``row[0]``, ``row["id"]``, ``row.id``, ``row.get("id")``, ``dict(row)``,
    ``row.keys()``, ``row.items()``; it compares, unpacks and hashes as the
    tuple of its values. Each result has its own subclass (made once per
    column list, see `row_class`): a row is built by the tuple's own
    constructor, and the names are shared by every row of the result.

    Attributes: a column is an attribute unless its name is one of Row's own
    (``get``, ``keys``, ``items``, or starts and ends with ``__``); as in a
    namedtuple, a column called ``count`` or ``index`` hides the tuple
    method of that name. ``row["name"]`` always works.

    JSON: a row is an object, ``{"id": 1, "name": "x"}``, for pydantic (a
    field or response model typed `Row`, with ``TypeAdapter``) and for
    FastAPI, whatever the endpoint's annotation: each row class presents
    itself as a dataclass whose fields are its columns, which FastAPI's
    ``jsonable_encoder`` and pydantic's ``to_jsonable_python`` turn into
    objects. The exception: a row with a column named like one of Row's
    own attributes, which ``jsonable_encoder`` encodes as a list of its
    values (pydantic still gives an object). The standard library's
    ``json.dumps`` encodes every tuple as a list: give it ``dict(row)``.
    """

    __slots__ = ()
    _index: ClassVar[dict[str, int]] = {}
    # Whether the row class may present itself as a dataclass (see row_class).
    _as_dataclass: ClassVar[bool] = False

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                key = self._index[key]
            except KeyError:
                raise KeyError(f"no column {key!r} (columns: {', '.join(self._index)})") from None
        return tuple.__getitem__(self, key)

    if TYPE_CHECKING:
        # For type checkers, any other attribute is a column of unknown type.
        # Not defined at run time: a class with __getattr__ slows down every
        # attribute lookup on its instances, methods and columns included.
        def __getattr__(self, name: str) -> Any: ...

    def get(self, name: str, default: Any = None) -> Any:
        """The value of column ``name``, or ``default``."""
        i = self._index.get(name)
        return default if i is None else tuple.__getitem__(self, i)

    def keys(self) -> list[str]:
        """The column names, in order (what makes ``dict(row)`` work)."""
        return list(self._index)

    def items(self) -> list[tuple[str, Any]]:
        """``(name, value)`` pairs, in column order."""
        return [(name, tuple.__getitem__(self, i)) for name, i in self._index.items()]

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.items())
        return f"Row({inner})"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        """pydantic: a `Row` (or a mapping, made a row) in, an object out."""
        from pydantic_core import core_schema

        as_object = core_schema.dict_schema(core_schema.str_schema(), core_schema.any_schema())
        return core_schema.no_info_plain_validator_function(
            _to_row,
            json_schema_input_schema=as_object,
            serialization=core_schema.plain_serializer_function_ser_schema(
                _to_dict, return_schema=as_object
            ),
        )


class _DataclassFields:
    """``__dataclass_fields__`` of a row class, made the first time anyone asks
    (``dataclasses.is_dataclass`` does): the class is then marked as a
    dataclass whose fields are its columns. Done lazily because dataclass()
    costs five times what making the row class does, and most row classes
    are never turned into JSON."""

    _lock = threading.Lock()

    def __get__(self, row: Any, cls: type[Row]) -> Any:
        if not cls._as_dataclass:
            raise AttributeError("__dataclass_fields__")  # not a dataclass
        with self._lock:
            if "__dataclass_fields__" not in cls.__dict__:
                cls.__annotations__ = dict.fromkeys(cls._index, Any)
                dataclasses.dataclass(init=False, repr=False, eq=False, match_args=False)(cls)
        return cls.__dict__["__dataclass_fields__"]


Row.__dataclass_fields__ = _DataclassFields()  # type: ignore[attr-defined]


def _own(name: str) -> bool:
    """Whether a column name is one of Row's own attributes (or a dunder)."""
    return name in _OWN or (name.startswith("__") and name.endswith("__"))


def _to_row(value: Any) -> Row:
    """pydantic's validator: rows pass, mappings become rows."""
    if isinstance(value, Row):
        return value
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return row_class(list(value))(value.values())
    raise ValueError("must be a Row or a mapping of column names to values")


def _to_dict(row: Row) -> dict[str, Any]:
    return dict(row.items())


# Row's own attributes: never shadowed by a column. (count and index are the
# tuple's, and columns may hide them, as in a namedtuple.)
_OWN = frozenset(name for name in dir(Row) if name not in ("count", "index"))


_ROW_DOC = "A row of one result (see `pgharbor.Row`)."


class Rows(list[Row]):
    """The rows of a bounded fetch: a list of `Row` that also says whether
    there were more (``truncated``), the result's ``columns`` (known even
    without rows) and ``rowcount`` (rows affected by a write, else -1)."""

    __slots__ = ("columns", "rowcount", "truncated")

    def __init__(
        self,
        rows: Iterable[Row] = (),
        *,
        columns: Sequence[str] = (),
        truncated: bool = False,
        rowcount: int = -1,
    ) -> None:
        super().__init__(rows)
        self.columns: tuple[str, ...] = tuple(columns)
        self.truncated = truncated
        self.rowcount = rowcount

    def __repr__(self) -> str:
        more = ", truncated" if self.truncated else ""
        return f"<Rows {len(self)} row(s) columns={list(self.columns)!r}{more}>"


def row_class(names: Sequence[str]) -> type[Row]:
    """A `Row` subclass for one result's columns (one per result, not per row):
    ``row_class(["id", "name"])((1, "x"))["name"] == "x"``.

    Each column is an attribute of the class (a C-level accessor, as in a
    namedtuple, so ``row.id`` costs less than ``row[0]``). When none is
    named after one of Row's own attributes, the class presents itself as a
    dataclass whose fields are the columns (made when first asked for), so
    that encoders which turn dataclasses into objects (FastAPI's, pydantic's)
    do so with rows.
    """
    index = {name: i for i, name in enumerate(names)}
    # With a docstring of its own: dataclass() would otherwise compute one
    # from the class's signature, twenty times the cost of the class.
    namespace: dict[str, Any] = {"__slots__": (), "_index": index, "__doc__": _ROW_DOC}
    hidden = False
    for name, i in index.items():
        if _own(name):
            hidden = True
        else:
            namespace[name] = _tuplegetter(i, f"column {i}: {name}")
    namespace["_as_dataclass"] = not hidden
    return type("Row", (Row,), namespace)


class AsyncQueries(Protocol):
    """Query operations on a native async connection."""

    async def fetch(self, conn: Any, sql: str, params: Any, timeout: float | None) -> list[Row]:
        """All rows of the result."""
        ...

    async def fetchrow(self, conn: Any, sql: str, params: Any, timeout: float | None) -> Row | None:
        """The first row, or None."""
        ...

    async def fetchval(self, conn: Any, sql: str, params: Any, timeout: float | None) -> Any:
        """The first column of the first row, or None."""
        ...

    async def execute(self, conn: Any, sql: str, params: Any, timeout: float | None) -> int:
        """Run a statement; rows affected (-1 when the driver cannot tell)."""
        ...

    async def executemany(
        self, conn: Any, sql: str, seq: Iterable[Any], timeout: float | None
    ) -> None:
        """Run a statement once per parameter set (pipelined where possible)."""
        ...

    async def copy_records(
        self,
        conn: Any,
        table: str,
        records: Iterable[Sequence[Any]],
        columns: Sequence[str] | None,
        schema: str | None,
        timeout: float | None,
    ) -> int:
        """Bulk-load with COPY FROM STDIN; identifiers quoted; rows copied."""
        ...

    async def begin(
        self, conn: Any, isolation: Isolation | None, read_only: bool, deferrable: bool
    ) -> None:
        """Start a transaction (the connection is in autocommit mode)."""
        ...

    async def commit(self, conn: Any) -> None:
        """Commit. A lost connection raises the driver's error; the caller
        decides whether the outcome is unknown."""
        ...

    async def rollback(self, conn: Any) -> None:
        """Roll back the open transaction."""
        ...

    # -- bounded results (the guard, fetch(max_rows=), stream) -----------------

    async def fetch_limited(
        self,
        conn: Any,
        sql: str,
        params: Any,
        max_rows: int | None,
        timeout: float | None,
        cursor: bool,
    ) -> Rows:
        """One statement, sent with the extended protocol where the driver
        can (the server then refuses a second statement), at most ``max_rows``
        rows kept (None: all). With ``cursor`` (a transaction must be open;
        only SELECT/VALUES/TABLE/WITH...SELECT), the rows come through a
        server-side cursor or portal and the server stops producing after
        ``max_rows + 1``; without, every row is read and the rest dropped."""
        ...

    def stream(
        self, conn: Any, sql: str, params: Any, batch_size: int, timeout: float | None
    ) -> AsyncIterator[list[Row]]:
        """The rows of a query in lists of at most ``batch_size``, through a
        server-side cursor (a transaction must be open): memory stays bounded.
        ``timeout`` bounds each batch."""
        ...

    def render(self, conn: Any, sql: str, params: Any) -> tuple[str, str, Any]:
        """``(text, sql, params)``: the statement as the server will read it
        (what a guard must parse: parameters inlined where the driver inlines
        them), and what to send in its place."""
        ...

    async def close(self, conn: Any) -> None:
        """Close the connection now (the pool then discards it); never raises."""
        ...


class Queries(Protocol):
    """Query operations on a native blocking connection (as `AsyncQueries`)."""

    def fetch(self, conn: Any, sql: str, params: Any, timeout: float | None) -> list[Row]: ...

    def fetchrow(self, conn: Any, sql: str, params: Any, timeout: float | None) -> Row | None: ...

    def fetchval(self, conn: Any, sql: str, params: Any, timeout: float | None) -> Any: ...

    def execute(self, conn: Any, sql: str, params: Any, timeout: float | None) -> int: ...

    def executemany(
        self, conn: Any, sql: str, seq: Iterable[Any], timeout: float | None
    ) -> None: ...

    def copy_records(
        self,
        conn: Any,
        table: str,
        records: Iterable[Sequence[Any]],
        columns: Sequence[str] | None,
        schema: str | None,
        timeout: float | None,
    ) -> int: ...

    def begin(
        self, conn: Any, isolation: Isolation | None, read_only: bool, deferrable: bool
    ) -> None: ...

    def commit(self, conn: Any) -> None: ...

    def rollback(self, conn: Any) -> None: ...

    def fetch_limited(
        self,
        conn: Any,
        sql: str,
        params: Any,
        max_rows: int | None,
        timeout: float | None,
        cursor: bool,
    ) -> Rows: ...

    def stream(
        self, conn: Any, sql: str, params: Any, batch_size: int, timeout: float | None
    ) -> Iterator[list[Row]]: ...

    def render(self, conn: Any, sql: str, params: Any) -> tuple[str, str, Any]: ...

    def close(self, conn: Any) -> None: ...
