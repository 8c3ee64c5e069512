"""The query protocol: what `Database` needs from a driver beyond pooling.

`Database.fetch` & co. call these with a *native* connection lent by the
pool, so the shell never imports a driver. Placeholders are the driver's own
(``%s`` for psycopg and psycopg2, ``$1`` for asyncpg); ``params`` is passed
through as the driver expects (a sequence, or a mapping where supported).

Rows come back as `Row`: a tuple that also answers ``row["column"]``.

Timeouts: every method takes ``timeout`` (seconds or None). When it passes,
the statement is cancelled server-side where the driver allows it and
``TimeoutError`` is raised; the connection must then be reported broken or
left idle-in-error so that the pool's return path cleans or discards it.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, ClassVar, Protocol

__all__ = ["AsyncQueries", "Isolation", "Queries", "Row", "Rows"]


class Isolation(enum.Enum):
    """Transaction isolation levels, as PostgreSQL spells them."""

    READ_COMMITTED = "read committed"
    REPEATABLE_READ = "repeatable read"
    SERIALIZABLE = "serializable"


class Row(tuple[Any, ...]):
    """A result row: a tuple that also accepts column names as keys.

    ``row[0]``, ``row["id"]``, ``row.get("id")``, ``dict(row.items())``.
    The name index is shared by every row of one result.
    """

    __slots__ = ()
    _index: ClassVar[dict[str, int]] = {}

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                key = self._index[key]
            except KeyError:
                raise KeyError(f"no column {key!r} (columns: {', '.join(self._index)})") from None
        return tuple.__getitem__(self, key)

    def get(self, name: str, default: Any = None) -> Any:
        i = self._index.get(name)
        return default if i is None else tuple.__getitem__(self, i)

    def keys(self) -> list[str]:
        return list(self._index)

    def items(self) -> list[tuple[str, Any]]:
        return [(name, tuple.__getitem__(self, i)) for name, i in self._index.items()]

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.items())
        return f"Row({inner})"


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
    ``row_class(["id", "name"])((1, "x"))["name"] == "x"``."""
    index = {name: i for i, name in enumerate(names)}
    return type("Row", (Row,), {"__slots__": (), "_index": index})


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
