"""Batches and keyset pagination, the pure part: chunks, progress, and the
SQL of a page.

Keyset pagination wraps the caller's query and cuts it by its key::

    SELECT * FROM (
    <query>
    ) AS _pgharbor_page WHERE ("created_at", "id") > ($1, $2)
    ORDER BY "created_at", "id" LIMIT 1000

so every page costs the same however deep it is (an index on the key serves
the ``WHERE`` and the ``ORDER BY``), unlike ``OFFSET``, which reads and
throws away every row before the page. The query is checked by PostgreSQL's
parser first (`pgharbor._pgparse.check_pageable`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import Any, TypeVar

from ._pgparse import check_pageable
from .drivers.query import Row
from .errors import ConfigError

__all__ = ["BatchProgress", "KeysetQuery", "check_chunk_size", "chunks", "size_of"]

T = TypeVar("T")

_PARAM = "_pgharbor_k"


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """Where a chunked batch stands, passed to its ``progress`` callback
    after each chunk.

    Attributes:
        done: items sent so far.
        total: items in all, when the input has a length; else None.
        committed: items committed so far (with ``atomic=True``, 0 until the
            single transaction commits at the end).
        chunks: chunks sent so far.
        elapsed: seconds since the batch started.
    """

    done: int
    total: int | None
    committed: int
    chunks: int
    elapsed: float

    @property
    def fraction(self) -> float | None:
        """``done / total``, or None without a total."""
        if self.total is None:
            return None
        return 1.0 if self.total == 0 else self.done / self.total


def check_chunk_size(value: Any) -> int | None:
    """``chunk_size`` validated: None, or an int >= 1.

    Raises:
        ConfigError: anything else.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError("chunk_size", "must be an integer >= 1, or None", value)
    return value


def size_of(items: Iterable[Any]) -> int | None:
    """How many items, if the input knows (a list does, a generator does not)."""
    return len(items) if isinstance(items, Sized) else None


def chunks(items: Iterable[T], size: int | None) -> Iterator[list[T]]:
    """Lists of ``size`` items (the last may be shorter), read lazily; with
    ``size`` None, one list of everything. Nothing for an empty input."""
    it = iter(items)
    while True:
        chunk = list(it) if size is None else list(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk
        if size is None:
            return


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class KeysetQuery:
    """The statements of keyset pagination over ``query``.

    Args:
        query: one SELECT without ORDER BY, LIMIT or OFFSET, in the driver's
            placeholder style.
        params: its parameters (a sequence; a mapping for psycopg's
            ``%(name)s``), or None.
        key: the output column(s) that order the pages: together unique and
            never NULL (e.g. ``("created_at", "id")``).
        page_size: rows per page.
        descending: newest first (every key column descending).
        dollar: the driver numbers its placeholders (asyncpg's ``$1``).

    Raises:
        ConfigError: a bad argument or a query pages cannot be cut from.
    """

    __slots__ = ("_base", "_cmp", "_order", "key", "page_size", "params", "style")

    def __init__(
        self,
        query: str,
        params: Any,
        *,
        key: str | Sequence[str],
        page_size: int,
        descending: bool = False,
        dollar: bool = False,
    ) -> None:
        keys = (key,) if isinstance(key, str) else tuple(key)
        if not keys or not all(isinstance(k, str) and k for k in keys):
            raise ConfigError("key", "must be a column name or a non-empty list of them", key)
        if len(set(keys)) != len(keys):
            raise ConfigError("key", "names a column twice", key)
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise ConfigError("page_size", "must be an integer >= 1", page_size)
        if not isinstance(query, str) or not query.strip():
            raise ConfigError("query", "must be a non-empty string")
        if dollar:
            style = "dollar"
            if isinstance(params, Mapping):
                raise ConfigError("params", "must be a sequence with $1-style placeholders")
        else:
            style = "format" if params is not None else "none"
        check_pageable(query, style)
        if isinstance(params, str | bytes) or (
            params is not None and not isinstance(params, Sequence | Mapping)
        ):
            raise ConfigError("params", "must be a sequence or a mapping, or None")
        text = query.strip().rstrip(";")
        if style == "none":
            text = text.replace("%", "%%")  # parameters will be sent: % becomes special
            style = "format"
        self.key = keys
        self.page_size = page_size
        self.params = params
        self.style = style
        # A newline after the query: a trailing -- comment must not swallow the rest.
        self._base = f"SELECT * FROM (\n{text}\n) AS _pgharbor_page"
        columns = ", ".join(_quote(k) for k in keys)
        direction = " DESC" if descending else ""
        self._order = (
            f" ORDER BY {', '.join(_quote(k) + direction for k in keys)} LIMIT {page_size}"
        )
        self._cmp = f" WHERE ({columns}) {'<' if descending else '>'} "

    def first(self) -> tuple[str, Any]:
        """The first page's statement and parameters."""
        return self._base + self._order, self.params

    def after(self, row: Row) -> tuple[str, Any]:
        """The statement and parameters of the page after ``row`` (the last
        row of the previous page)."""
        values = [row[k] for k in self.key]
        if isinstance(self.params, Mapping):
            names = [f"{_PARAM}{i}" for i in range(len(values))]
            marks = ", ".join(f"%({n})s" for n in names)
            params: Any = {**self.params, **dict(zip(names, values, strict=True))}
        else:
            given = list(self.params or ())
            if self.style == "dollar":
                marks = ", ".join(f"${len(given) + i + 1}" for i in range(len(values)))
            else:
                marks = ", ".join(["%s"] * len(values))
            params = (*given, *values)
        return f"{self._base}{self._cmp}({marks}){self._order}", params

    def check(self, page: list[Row]) -> None:
        """Refuse what makes pages skip rows, when a page shows it: a NULL in
        a key column (comparisons with NULL are never true) and two rows with
        the same key (the second would be lost at a page boundary). Rows
        hidden beyond a page boundary are never fetched, so a wrong key is
        caught only when a page holds the evidence.

        Raises:
            ConfigError: on ``key``, naming the column and the value.
        """
        previous: tuple[Any, ...] | None = None
        for row in page:
            values = tuple(row[k] for k in self.key)
            if None in values:
                column = self.key[values.index(None)]
                raise ConfigError(
                    "key",
                    f"column {column!r} is NULL in a row: keyset pagination needs key "
                    "columns that are never NULL (filter or COALESCE them in the query)",
                )
            if values == previous:
                raise ConfigError(
                    "key",
                    f"two rows share the key {values!r}: pages would skip rows; add a "
                    "unique column (the primary key) as the last key column",
                )
            previous = values
