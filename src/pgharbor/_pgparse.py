"""SQL read by PostgreSQL's own parser (pglast): statements with their lines,
what cannot run in a transaction, and checks on a query to paginate.

Pure functions, no I/O. pglast is the ``sql`` extra; it is imported on first
use, so ``import pgharbor`` never needs it. Positions from pglast are
character offsets into the text (not bytes), 0-based; lines here are 1-based.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

__all__ = [
    "Statement",
    "check_pageable",
    "comment_lines",
    "line_of",
    "outside_transaction",
    "parse_error_line",
    "pglast",
    "split_statements",
]


def pglast() -> Any:
    """The pglast module, or an ImportError that says what to install."""
    try:
        import pglast as module
    except ImportError as exc:  # pragma: no cover - the dev install has it
        raise ImportError(
            "reading SQL needs PostgreSQL's parser (pglast): pip install 'pgharbor[sql]'"
        ) from exc
    return module


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of a SQL text.

    Attributes:
        sql: its text, without the ending semicolon.
        line: the line it starts on (1-based, in the whole file).
        kind: the parser's name for it (``"IndexStmt"``, ``"CreateStmt"``...).
        outside_transaction: why it cannot run inside a transaction block
            (``"CREATE INDEX CONCURRENTLY"``), or None if it can.
        refused: why it may not appear in a migration at all (``BEGIN``,
            ``COPY ... FROM STDIN``), or None.
    """

    sql: str
    line: int
    kind: str
    outside_transaction: str | None = None
    refused: str | None = None


def line_of(text: str, offset: int) -> int:
    """The 1-based line of character ``offset`` in ``text``."""
    return text.count("\n", 0, max(0, offset)) + 1


def _skip_blank_and_comments(text: str, start: int, end: int) -> int:
    """The offset of the first character at or after ``start`` that is neither
    blank nor inside a comment (so a statement's line is its first word's).

    Only used on the slice the parser says a statement occupies, where any
    leading text can only be blanks and comments.
    """
    i = start
    while i < end:
        if text[i].isspace():
            i += 1
        elif text.startswith("--", i):
            nl = text.find("\n", i, end)
            i = end if nl < 0 else nl + 1
        elif text.startswith("/*", i):
            depth, i = 1, i + 2  # PostgreSQL's block comments nest
            while i < end and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        else:
            break
    return i


def parse_error_line(exc: BaseException, text: str) -> int | None:
    """The 1-based line a pglast ``ParseError`` points at, if it says."""
    location = getattr(exc, "location", None)
    if location is None and len(getattr(exc, "args", ())) > 1:
        location = exc.args[1]
    return line_of(text, location) if isinstance(location, int) else None


def split_statements(text: str) -> list[Statement]:
    """Split ``text`` into statements with the parser (dollar quotes, nested
    comments, ``E''`` strings and semicolons inside them are all right).

    Raises:
        pglast.parser.ParseError: the text is not valid SQL for the parser
            (see `parse_error_line` for where).
    """
    raw = pglast().parse_sql(text)
    statements = []
    for item in raw:
        start = item.stmt_location or 0
        end = len(text) if not item.stmt_len else start + item.stmt_len
        first = _skip_blank_and_comments(text, start, end)
        sql = text[first:end].strip().rstrip(";").rstrip()
        node = item.stmt
        statements.append(
            Statement(
                sql=sql,
                line=line_of(text, first),
                kind=type(node).__name__,
                outside_transaction=outside_transaction(node),
                refused=_refused(node),
            )
        )
    return statements


def _option(options: Any, name: str) -> Any:
    """The DefElem named ``name`` in a parser option list, or None."""
    for opt in options or ():
        if getattr(opt, "defname", None) == name:
            return opt
    return None


def _false(defelem: Any) -> bool:
    arg = getattr(defelem, "arg", None)
    value = getattr(arg, "sval", None) or getattr(arg, "boolval", None)
    return str(value).lower() in ("false", "off", "0", "no")


def outside_transaction(node: Any) -> str | None:
    """Why the statement ``node`` cannot run inside a transaction block, or None.

    The list follows PostgreSQL's ``PreventInTransactionBlock`` callers:
    ``CREATE/DROP INDEX CONCURRENTLY``, ``REINDEX ... CONCURRENTLY`` and
    ``REINDEX DATABASE/SYSTEM``, ``VACUUM``, ``CLUSTER`` without a table,
    ``CREATE/DROP/ALTER DATABASE ... SET TABLESPACE``, ``CREATE/DROP
    TABLESPACE``, ``ALTER SYSTEM``, ``DETACH PARTITION ... CONCURRENTLY``,
    ``CREATE SUBSCRIPTION`` that creates a slot, ``DROP SUBSCRIPTION``,
    ``ALTER SUBSCRIPTION ... REFRESH``, ``DISCARD ALL``. ``ALTER TYPE ... ADD
    VALUE`` runs in a transaction since PostgreSQL 12 (pgharbor needs 13), but
    the new value cannot be used before the transaction commits.
    """
    kind = type(node).__name__
    if kind == "IndexStmt" and node.concurrent:
        return "CREATE INDEX CONCURRENTLY"
    if kind == "DropStmt" and node.concurrent:
        return "DROP INDEX CONCURRENTLY"
    if kind == "ReindexStmt":
        if _option(node.params, "concurrently") is not None:
            return "REINDEX CONCURRENTLY"
        name = getattr(node.kind, "name", "")
        if name.endswith(("_DATABASE", "_SYSTEM")):
            return "REINDEX " + name.rsplit("_", 1)[1]
    if kind == "VacuumStmt" and node.is_vacuumcmd:
        return "VACUUM"
    if kind == "ClusterStmt" and node.relation is None:
        return "CLUSTER without a table"
    if kind == "CreatedbStmt":
        return "CREATE DATABASE"
    if kind == "DropdbStmt":
        return "DROP DATABASE"
    if kind == "AlterDatabaseStmt" and _option(node.options, "tablespace") is not None:
        return "ALTER DATABASE ... SET TABLESPACE"
    if kind == "CreateTableSpaceStmt":
        return "CREATE TABLESPACE"
    if kind == "DropTableSpaceStmt":
        return "DROP TABLESPACE"
    if kind == "AlterSystemStmt":
        return "ALTER SYSTEM"
    if kind == "CreateSubscriptionStmt":
        slot = _option(node.options, "create_slot")
        if slot is None or not _false(slot):
            return "CREATE SUBSCRIPTION (creating a replication slot)"
    if kind == "DropSubscriptionStmt":
        return "DROP SUBSCRIPTION"
    if kind == "AlterSubscriptionStmt" and "REFRESH" in getattr(node.kind, "name", ""):
        return "ALTER SUBSCRIPTION ... REFRESH PUBLICATION"
    if kind == "DiscardStmt" and getattr(node.target, "name", "") == "DISCARD_ALL":
        return "DISCARD ALL"
    if kind == "AlterTableStmt":
        for cmd in node.cmds or ():
            partition: Any = getattr(cmd, "def_", None)
            if type(partition).__name__ == "PartitionCmd" and partition.concurrent:
                return "DETACH PARTITION ... CONCURRENTLY"
    return None


_TRANSACTION_CONTROL = frozenset(
    {
        "TRANS_STMT_BEGIN",
        "TRANS_STMT_START",
        "TRANS_STMT_COMMIT",
        "TRANS_STMT_ROLLBACK",
        "TRANS_STMT_PREPARE",
        "TRANS_STMT_COMMIT_PREPARED",
        "TRANS_STMT_ROLLBACK_PREPARED",
    }
)


def _refused(node: Any) -> str | None:
    """Why a statement may not appear in a migration file at all, or None."""
    kind = type(node).__name__
    if kind == "TransactionStmt" and getattr(node.kind, "name", "") in _TRANSACTION_CONTROL:
        return (
            "transaction control (BEGIN, COMMIT, ROLLBACK...) is pgharbor's job: each "
            "migration runs in its own transaction, or with 'transaction:false' without one"
        )
    if kind == "CopyStmt" and node.filename is None and not node.is_program:
        return "COPY from or to the client (STDIN/STDOUT) has no data source in a migration"
    return None


# psycopg's placeholders: %s, %b, %t, %(name)s... and %% for a literal %.
_PLACEHOLDER = re.compile(r"%(?:\((?P<name>[^)]*)\))?(?P<format>.)", re.DOTALL)


def comment_lines(text: str) -> list[tuple[int, str]]:
    """Every ``--`` comment of ``text`` that stands alone on its line, as
    (1-based line, comment text), found by the parser's scanner (so a
    ``--`` inside a string or a function body is not one)."""
    found = []
    for token in pglast().parser.scan(text):
        if token.name != "SQL_COMMENT":
            continue
        line_start = text.rfind("\n", 0, token.start) + 1
        if text[line_start : token.start].strip():
            continue  # follows code on its line
        found.append((line_of(text, token.start), text[token.start : token.end + 1]))
    return found


def _parseable(query: str, params_style: str) -> str:
    """``query`` with the driver's placeholders turned into ``$n``, which the
    parser understands (psycopg's ``%s``/``%(name)s`` are not SQL)."""
    if params_style != "format":
        return query
    counter = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal counter
        if match.group("format") == "%" and match.group("name") is None:
            return "%"
        counter += 1
        return f"${counter}"

    return _PLACEHOLDER.sub(replace, query)


def check_pageable(query: str, params_style: str) -> None:
    """Refuse a query that keyset pagination cannot wrap: not one SELECT
    (or VALUES, or set operation), or one with its own ORDER BY, LIMIT,
    OFFSET or FETCH — pages are ordered and cut by the key.

    ``params_style`` is ``"format"`` for psycopg/psycopg2 (``%s``) or
    ``"dollar"`` for asyncpg (``$1``).

    Raises:
        ConfigError: on ``query``, saying what is wrong.
    """
    module = pglast()
    try:
        raw = module.parse_sql(_parseable(query, params_style))
    except module.parser.ParseError as exc:
        raise ConfigError("query", f"is not valid SQL for PostgreSQL's parser: {exc}") from None
    if len(raw) != 1:
        raise ConfigError("query", f"must be one statement, got {len(raw)}")
    node = raw[0].stmt
    if type(node).__name__ != "SelectStmt":
        raise ConfigError("query", "must be a SELECT (or VALUES) to paginate")
    if node.sortClause:
        raise ConfigError("query", "must not have its own ORDER BY: pages are ordered by the key")
    if node.limitCount is not None or node.limitOffset is not None:
        raise ConfigError(
            "query", "must not have LIMIT, OFFSET or FETCH: pages are cut by page_size"
        )
    if node.intoClause is not None:
        raise ConfigError("query", "must not be SELECT INTO")
