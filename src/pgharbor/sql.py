"""Compose SQL without injection, for every driver: `SQL`, `Identifier`, `Literal`, `Placeholder`.

psycopg has ``psycopg.sql``; asyncpg and psycopg2 users have nothing
comparable. This module is pure (no connection needed) and renders with
PostgreSQL's own quoting rules, so the same composed statement works on
every driver::

    from pgharbor import sql

    query = sql.SQL("SELECT {cols} FROM {table} WHERE {key} = {value} ORDER BY {order}").format(
        cols=sql.SQL(", ").join([sql.Identifier("id"), sql.Identifier("Name")]),
        table=sql.Identifier("public", "user"),     # "public"."user": reserved word
        key=sql.Identifier("id"),
        value=sql.Placeholder(),                  # %s, or $1 on asyncpg
        order=sql.Identifier(user_supplied_column),
    )
    rows = db.fetch(query.render(db.driver), (42,))

* `Identifier` quotes a name unless it is a plain lower-case word that is no
  reserved keyword (PostgreSQL's ``quote_ident`` rule, keyword lists from the
  parser itself), so mixed-case and reserved names come out right.
* `Literal` renders ``None``, bools, numbers, text, bytes, dates, times and
  UUIDs as SQL constants that mean the same under either setting of
  ``standard_conforming_strings``; negative numbers are parenthesised
  (``x - (-1)``, never ``x --1``, which starts a comment).
* Plain ``str`` is never accepted as a part of `SQL.format` (``TypeError``):
  text becomes SQL only through `SQL` (trusted, written by you) or is quoted.
* `Placeholder` renders as the driver's own: ``%s`` / ``%(name)s`` for
  psycopg and psycopg2, ``$1``... for asyncpg. When a composed statement holds
  placeholders, ``%`` inside identifiers and literals is rendered as ``%%``
  for psycopg and psycopg2 (which read ``%`` as the start of a placeholder).

Values should still travel as parameters where they can: `Literal` is for the
places parameters cannot go (DDL, ``SET``, identifiers never take them).
"""

from __future__ import annotations

import datetime
import decimal
import functools
import math
import string
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = [
    "SQL",
    "Composable",
    "Composed",
    "Identifier",
    "Literal",
    "Placeholder",
    "quote_ident",
    "quote_literal",
]

_DRIVERS = ("psycopg", "psycopg2", "asyncpg")


@functools.cache
def _keywords() -> frozenset[str]:
    """Words that must be quoted to be used as names: every keyword but the
    unreserved ones, from the parser's own lists (pglast, the ``sql`` extra)."""
    try:
        from pglast import keywords as kw
    except ImportError as exc:
        raise ImportError(
            "quoting names needs PostgreSQL's keyword lists (pglast): pip install 'pgharbor[sql]'",
            name="pglast",
        ) from exc
    return frozenset(kw.RESERVED_KEYWORDS | kw.COL_NAME_KEYWORDS | kw.TYPE_FUNC_NAME_KEYWORDS)


_SAFE_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz_")
_SAFE_REST = _SAFE_FIRST | frozenset("0123456789")


def quote_ident(name: str) -> str:
    """``name`` as an SQL identifier: bare if PostgreSQL would read it back
    unchanged (lower case, digits, ``_``, not starting with a digit, no
    keyword that needs quoting), else in double quotes with ``"`` doubled.

    Raises:
        TypeError: ``name`` is not a str.
        ValueError: ``name`` is empty or holds a NUL character.
    """
    if not isinstance(name, str):
        raise TypeError(f"an identifier must be a str, got {type(name).__name__}")
    if not name:
        raise ValueError("an identifier cannot be empty")
    if "\x00" in name:
        raise ValueError("an identifier cannot contain NUL characters")
    if name[0] in _SAFE_FIRST and all(ch in _SAFE_REST for ch in name) and name not in _keywords():
        return name
    return '"' + name.replace('"', '""') + '"'


def _quote_text(text: str) -> str:
    if "\x00" in text:
        raise ValueError("PostgreSQL text cannot contain NUL characters")
    quoted = "'" + text.replace("'", "''") + "'"
    if "\\" in text:
        # E'' reads the same whatever standard_conforming_strings says.
        return "E" + quoted.replace("\\", "\\\\")
    return quoted


def quote_literal(value: Any) -> str:
    """``value`` as an SQL constant (see `Literal` for the types).

    Raises:
        TypeError: a type without an SQL rendering here (lists, dicts...).
        ValueError: text with a NUL character (PostgreSQL text cannot hold one).
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value >= 0 else f"({value})"
    if isinstance(value, float):
        if math.isnan(value):
            return "'NaN'::float8"
        if math.isinf(value):
            return "'Infinity'::float8" if value > 0 else "'-Infinity'::float8"
        text = repr(value)
        return text if value >= 0 else f"({text})"
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return f"'{'NaN' if value.is_nan() else str(value)}'::numeric"
        text = str(value)
        return text if value >= 0 else f"({text})"
    if isinstance(value, str):
        return _quote_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        # E'\\x..': bytea hex input, read the same whatever the string settings.
        return "E'\\\\x" + bytes(value).hex() + "'::bytea"
    if isinstance(value, datetime.datetime):
        kind = "timestamp" if value.tzinfo is None else "timestamptz"
        return f"'{value.isoformat()}'::{kind}"
    if isinstance(value, datetime.date):
        return f"'{value.isoformat()}'::date"
    if isinstance(value, datetime.time):
        kind = "time" if value.tzinfo is None else "timetz"
        return f"'{value.isoformat()}'::{kind}"
    if isinstance(value, datetime.timedelta):
        return (
            f"'{value.days} days {value.seconds} seconds "
            f"{value.microseconds} microseconds'::interval"
        )
    if isinstance(value, uuid.UUID):
        return f"'{value}'::uuid"
    raise TypeError(f"no SQL literal for a {type(value).__name__}: pass it as a parameter")


class _Renderer:
    """State of one rendering: the driver and the next ``$n`` number."""

    __slots__ = ("driver", "escape", "numbered")

    def __init__(self, driver: str, escape: bool) -> None:
        self.driver = driver
        self.escape = escape
        self.numbered = 0

    def quoted(self, text: str) -> str:
        return text.replace("%", "%%") if self.escape else text


class Composable:
    """Something that renders as SQL text: `SQL`, `Identifier`, `Literal`,
    `Placeholder`, or a `Composed` sequence of them. ``a + b`` composes."""

    __slots__ = ()

    def _render(self, r: _Renderer) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _parts(self) -> Iterator[Composable]:
        yield self

    def render(self, driver: str = "psycopg", *, escape_percent: bool | None = None) -> str:
        """The SQL text for ``driver`` ("psycopg", "psycopg2" or "asyncpg").

        ``escape_percent`` (default: when the statement holds a `Placeholder`
        and the driver is psycopg or psycopg2) doubles ``%`` inside
        identifiers and literals, as those drivers need when parameters are
        passed.

        Raises:
            ValueError: unknown driver, or a named placeholder for asyncpg.
        """
        if driver not in _DRIVERS:
            raise ValueError(f"driver must be one of {', '.join(_DRIVERS)}, got {driver!r}")
        if escape_percent is None:
            escape_percent = driver != "asyncpg" and any(
                isinstance(p, Placeholder) for p in self._parts()
            )
        return self._render(_Renderer(driver, escape_percent))

    def as_string(self, driver: str = "psycopg") -> str:
        """Same as `render` (the name psycopg.sql uses)."""
        return self.render(driver)

    def __add__(self, other: Composable) -> Composed:
        if not isinstance(other, Composable):
            return NotImplemented
        return Composed([self, other])

    def __str__(self) -> str:
        return self.render("psycopg", escape_percent=False)


class Composed(Composable):
    """A sequence of `Composable` parts rendered one after the other."""

    __slots__ = ("parts",)

    def __init__(self, parts: Iterable[Composable]) -> None:
        self.parts: tuple[Composable, ...] = tuple(parts)
        for part in self.parts:
            if not isinstance(part, Composable):
                raise TypeError(f"Composed takes Composable parts, got {type(part).__name__}")

    def _parts(self) -> Iterator[Composable]:
        for part in self.parts:
            yield from part._parts()

    def _render(self, r: _Renderer) -> str:
        return "".join(part._render(r) for part in self.parts)

    def join(self, separator: SQL | str) -> Composed:
        """The parts joined with ``separator`` between them."""
        sep = separator if isinstance(separator, SQL) else SQL(separator)
        return sep.join(self.parts)

    def __repr__(self) -> str:
        return f"Composed({list(self.parts)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Composed) and self.parts == other.parts

    def __hash__(self) -> int:
        return hash(self.parts)


class SQL(Composable):
    """Trusted SQL text, written by the programmer, rendered as it is.

    Never build an `SQL` from input: `format` its ``{}`` fields with
    `Identifier`, `Literal` and `Placeholder` instead.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise TypeError(f"SQL takes a str, got {type(text).__name__}")
        self.text = text

    def _render(self, r: _Renderer) -> str:
        return self.text

    def format(self, *args: Composable, **kwargs: Composable) -> Composed:
        """Fill ``{}``, ``{0}`` and ``{name}`` fields with `Composable` values
        (``{{`` and ``}}`` are literal braces).

        Raises:
            TypeError: a value is not a `Composable` (a plain str, say).
            ValueError: a format spec or conversion (``{!r}``, ``{:>3}``), or
                mixing automatic and numbered fields.
            IndexError, KeyError: a field without a value.
        """
        parts: list[Composable] = []
        auto = 0
        numbering: str | None = None
        for literal, field, spec, conversion in string.Formatter().parse(self.text):
            if literal:
                parts.append(SQL(literal))
            if field is None:
                continue
            if spec or conversion:
                raise ValueError("format specs and conversions are not supported")
            value: Any
            if field == "":
                if numbering == "manual":
                    raise ValueError("cannot mix automatic and numbered fields")
                numbering = "auto"
                value = args[auto]
                auto += 1
            elif field.isdigit():
                if numbering == "auto":
                    raise ValueError("cannot mix automatic and numbered fields")
                numbering = "manual"
                value = args[int(field)]
            else:
                value = kwargs[field]
            if not isinstance(value, Composable):
                raise TypeError(
                    f"SQL.format takes Identifier, Literal, Placeholder or SQL values, got "
                    f"{type(value).__name__} for field {{{field}}}: wrap it in Literal (a "
                    "value) or Identifier (a name)"
                )
            parts.append(value)
        return Composed(parts)

    def join(self, seq: Iterable[Composable]) -> Composed:
        """The items of ``seq`` with this text between them."""
        parts: list[Composable] = []
        for i, item in enumerate(seq):
            if i:
                parts.append(self)
            parts.append(item)
        return Composed(parts)

    def __repr__(self) -> str:
        return f"SQL({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SQL) and self.text == other.text

    def __hash__(self) -> int:
        return hash(("SQL", self.text))


class Identifier(Composable):
    """A name (table, column, schema...), quoted as PostgreSQL needs:
    ``Identifier("public", "User")`` renders ``public."User"``.

    Raises:
        ValueError: no part, an empty part, or a NUL character.
        TypeError: a part is not a str.
    """

    __slots__ = ("names",)

    def __init__(self, *names: str) -> None:
        if not names:
            raise ValueError("Identifier needs at least one name")
        for name in names:
            quote_ident(name)  # validates now, not at render time
        self.names: tuple[str, ...] = names

    def _render(self, r: _Renderer) -> str:
        return ".".join(r.quoted(quote_ident(name)) for name in self.names)

    def __repr__(self) -> str:
        return f"Identifier({', '.join(map(repr, self.names))})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Identifier) and self.names == other.names

    def __hash__(self) -> int:
        return hash(("Identifier", self.names))


class Literal(Composable):
    """A value as an SQL constant: None, bool, int, float, Decimal, str,
    bytes, date, datetime, time, timedelta, UUID (checked at construction).

    Raises:
        TypeError: another type (pass it as a parameter instead).
        ValueError: text with a NUL character.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        quote_literal(value)  # validates now
        self.value = value

    def _render(self, r: _Renderer) -> str:
        return r.quoted(quote_literal(self.value))

    def __repr__(self) -> str:
        return f"Literal({self.value!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Literal)
            and type(self.value) is type(other.value)
            and (self.value == other.value)
        )

    def __hash__(self) -> int:
        return hash(("Literal", type(self.value), str(self.value)))


class Placeholder(Composable):
    """A parameter marker in the driver's style: ``%s`` (``%(name)s`` when
    named) for psycopg and psycopg2, ``$1``, ``$2``... in order for asyncpg.

    Raises:
        ValueError: a name with characters other than letters, digits and ``_``.
    """

    __slots__ = ("name",)

    def __init__(self, name: str | None = None) -> None:
        if name is not None and not (name and name.replace("_", "a").isalnum()):
            raise ValueError(f"invalid placeholder name {name!r}")
        self.name = name

    def _render(self, r: _Renderer) -> str:
        if r.driver == "asyncpg":
            if self.name is not None:
                raise ValueError("asyncpg has no named parameters: use Placeholder()")
            r.numbered += 1
            return f"${r.numbered}"
        return "%s" if self.name is None else f"%({self.name})s"

    def __repr__(self) -> str:
        return "Placeholder()" if self.name is None else f"Placeholder({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Placeholder) and self.name == other.name

    def __hash__(self) -> int:
        return hash(("Placeholder", self.name))
