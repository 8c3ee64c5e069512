"""Chunked ``executemany`` / ``copy_records`` and keyset pagination over an
`AsyncDatabase`. Source of the generated sync module.

`AsyncDatabase.executemany`, ``copy_records`` (when given ``chunk_size`` or
``progress``) and ``paginate`` delegate here; everything goes through the
database's public methods, so retries, routing and the query log apply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from time import monotonic
from typing import TYPE_CHECKING, Any

from .._acompat import aensure
from .._batch import BatchProgress, KeysetQuery, check_chunk_size, chunks, size_of
from .._policy.routing import Route
from ..drivers.query import Row
from ..errors import BatchError

if TYPE_CHECKING:
    from .database import AsyncDatabase

__all__ = ["copy_in_chunks", "executemany_in_chunks", "keyset_pages"]

#: Called with a `BatchProgress` after each chunk (may be a coroutine function).
ProgressCallback = Callable[[BatchProgress], Any]


class _Counter:
    """Counts the items of an iterator as the driver consumes them."""

    __slots__ = ("_it", "n")

    def __init__(self, items: Iterable[Any]) -> None:
        self._it = iter(items)
        self.n = 0

    def __iter__(self) -> _Counter:
        return self

    def __next__(self) -> Any:
        item = next(self._it)
        self.n += 1
        return item


async def executemany_in_chunks(
    db: AsyncDatabase,
    query: str,
    params_seq: Iterable[Any],
    *,
    timeout: float | None,
    chunk_size: int | None,
    atomic: bool,
    progress: ProgressCallback | None,
) -> int:
    """See `AsyncDatabase.executemany`; the number of parameter sets run."""
    size = check_chunk_size(chunk_size)
    if size is None and progress is None:
        # One statement batch in one transaction: what executemany always did.
        total = size_of(params_seq)
        counter = None if total is not None else _Counter(params_seq)
        async with db.transaction() as tx:
            await tx.executemany(query, params_seq if counter is None else counter, timeout=timeout)
        return counter.n if counter is not None else total or 0

    async def run(tx: Any, chunk: list[Any]) -> None:
        await tx.executemany(query, chunk, timeout=timeout)

    return await _in_chunks(db, params_seq, size, atomic, progress, run, "executemany")


async def copy_in_chunks(
    db: AsyncDatabase,
    table: str,
    records: Iterable[Sequence[Any]],
    *,
    columns: Sequence[str] | None,
    schema: str | None,
    timeout: float | None,
    chunk_size: int | None,
    atomic: bool,
    progress: ProgressCallback | None,
) -> int:
    """See `AsyncDatabase.copy_records`; rows copied."""
    size = check_chunk_size(chunk_size)

    async def run(tx: Any, chunk: list[Any]) -> None:
        await tx.copy_records(table, chunk, columns=columns, schema=schema, timeout=timeout)

    return await _in_chunks(db, records, size, atomic, progress, run, "copy_records")


async def _in_chunks(
    db: AsyncDatabase,
    items: Iterable[Any],
    size: int | None,
    atomic: bool,
    progress: ProgressCallback | None,
    run: Callable[[Any, list[Any]], Any],
    what: str,
) -> int:
    """Send ``items`` a chunk at a time with ``run(tx, chunk)``: all in one
    transaction (``atomic``), or each chunk in its own; report after each."""
    total = size_of(items)
    started = monotonic()
    done = committed = n = 0
    reporting = False  # the exception came from the callback, not the server

    async def report() -> None:
        nonlocal reporting
        if progress is not None:
            reporting = True
            await aensure(progress, BatchProgress(done, total, committed, n, monotonic() - started))
            reporting = False

    try:
        if atomic:
            async with db.transaction() as tx:
                for chunk in chunks(items, size):
                    await run(tx, chunk)
                    done, n = done + len(chunk), n + 1
                    await report()
            committed = done
        else:
            for chunk in chunks(items, size):
                async with db.transaction() as tx:
                    await run(tx, chunk)
                done, n = done + len(chunk), n + 1
                committed = done
                await report()
    except Exception as exc:
        kept = "all rolled back" if atomic else f"{committed} item(s) committed"
        cause = str(exc).strip().split("\n", 1)[0] or type(exc).__name__
        where = (
            f"the progress callback failed after chunk {n}"
            if reporting
            else (f"{what} failed in chunk {n + 1}")
        )
        raise BatchError(
            f"database {db.name!r}: {where}: {cause}; {kept}",
            committed=committed if not atomic else 0,
            done=done,
        ) from exc
    if atomic and n and progress is not None:
        await report()  # the commit happened: everything is committed now
    return done


async def keyset_pages(
    db: AsyncDatabase,
    keyset: KeysetQuery,
    *,
    route: Route | None,
    timeout: float | None,
) -> AsyncIterator[list[Row]]:
    """Pages of ``keyset`` from ``db`` (see `AsyncDatabase.paginate`)."""
    sql, params = keyset.first()
    while True:
        page = await db.fetch(sql, params, timeout=timeout, idempotent=True, route=route)
        if not page:
            return
        keyset.check(page)
        yield page
        if len(page) < keyset.page_size:
            return
        sql, params = keyset.after(page[-1])
