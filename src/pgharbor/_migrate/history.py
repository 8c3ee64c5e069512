"""The history table and the migration lock, as SQL text; failure messages.

Pure: statements use ``%s`` placeholders (the shell turns them into ``$n``
for asyncpg); nothing here talks to a server.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .._pgparse import Statement
from .._policy.sqlstate import sqlstate_of
from ..errors import MigrationFailed
from .files import Migration, Part

__all__ = ["History", "LockKey", "failure", "quote_ident"]

# Known causes worth a sentence, by SQLSTATE.
_HINTS = {
    "55P04": "a value added with ALTER TYPE ... ADD VALUE cannot be used in the same "
    "transaction: use it in the next migration",
    "25001": "this statement cannot run in a transaction: give it a migration of its own",
}


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class LockKey:
    """The advisory lock every deployer of one history table takes: a bigint
    derived from the table's (configured) name, so two tables in one
    database never block each other."""

    key: int

    @classmethod
    def for_table(cls, schema: str | None, table: str) -> LockKey:
        digest = hashlib.sha256(f"pgharbor-migrate:{schema or ''}.{table}".encode()).digest()
        return cls(int.from_bytes(digest[:8], "big", signed=True))

    @property
    def halves(self) -> tuple[int, int]:
        """(classid, objid) as ``pg_locks`` shows a bigint key (objsubid 1)."""
        return (self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF

    #: ``pg_locks l`` rows of this lock (two parameters: `halves`).
    MATCH = (
        "l.locktype = 'advisory' AND l.objsubid = 1"
        " AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid"
    )
    #: Who holds it: pid, application_name, client address.
    HOLDER = (
        "SELECT a.pid, a.application_name, a.client_addr::text FROM pg_locks l"
        " JOIN pg_stat_activity a ON a.pid = l.pid"
        f" WHERE {MATCH} AND l.granted LIMIT 1"
    )
    #: Whether this session holds it, and this session's server pid.
    HELD_HERE = (
        "SELECT count(*) > 0, pg_backend_pid() FROM pg_locks l"
        f" WHERE {MATCH} AND l.granted AND l.pid = pg_backend_pid()"
    )


class History:
    """The statements on the history table ``table`` (already quoted and,
    once resolved, schema-qualified)."""

    __slots__ = ("table",)

    COLUMNS = (
        "version, name, checksum, success, statements_done, error, applied_at,"
        " applied_by, duration_ms"
    )

    def __init__(self, table: str) -> None:
        self.table = table

    def create(self) -> str:
        return (
            f"CREATE TABLE IF NOT EXISTS {self.table} ("
            " version bigint PRIMARY KEY,"
            " name text NOT NULL,"
            " checksum text NOT NULL,"
            " success boolean NOT NULL,"
            " statements_done integer NOT NULL DEFAULT 0,"
            " error text,"
            " applied_at timestamptz NOT NULL DEFAULT now(),"
            " applied_by text NOT NULL DEFAULT current_user,"
            " duration_ms double precision,"
            " transactional boolean NOT NULL DEFAULT true)"
        )

    def select(self) -> str:
        return f"SELECT {self.COLUMNS} FROM {self.table} ORDER BY version"

    def success_of(self) -> str:
        return f"SELECT success FROM {self.table} WHERE version = %s"

    def newest(self) -> str:
        return f"SELECT max(version) FROM {self.table} WHERE success"

    def insert_applied(self) -> str:
        """Parameters: version, name, checksum, statements, duration_ms."""
        return (
            f"INSERT INTO {self.table} (version, name, checksum, success, statements_done,"
            " duration_ms, transactional) VALUES (%s, %s, %s, true, %s, %s, true)"
        )

    def insert_started(self) -> str:
        """A migration outside a transaction begins: failed until it is done.
        Parameters: version, name, checksum."""
        return (
            f"INSERT INTO {self.table} (version, name, checksum, success, transactional)"
            " VALUES (%s, %s, %s, false, false)"
        )

    def rolling_back(self) -> str:
        return (
            f"UPDATE {self.table} SET success = false, statements_done = 0,"
            " error = 'rolling back' WHERE version = %s"
        )

    def progress(self) -> str:
        """Parameters: statements done, version."""
        return f"UPDATE {self.table} SET statements_done = %s WHERE version = %s"

    def finished(self) -> str:
        """Parameters: duration_ms, version."""
        return (
            f"UPDATE {self.table} SET success = true, error = NULL, duration_ms = %s,"
            " applied_at = now() WHERE version = %s"
        )

    def failed(self) -> str:
        """Parameters: error, statements done, version."""
        return f"UPDATE {self.table} SET error = %s, statements_done = %s WHERE version = %s"

    def delete(self) -> str:
        return f"DELETE FROM {self.table} WHERE version = %s"

    def realign(self) -> str:
        """Parameters: checksum, name, version."""
        return f"UPDATE {self.table} SET checksum = %s, name = %s WHERE version = %s"


def _error_offset(exc: BaseException) -> int | None:
    """The 1-based character position the server's error points at, if any
    (psycopg and psycopg2: ``diag.statement_position``; asyncpg: ``position``)."""
    diag = getattr(exc, "diag", None)
    value = getattr(diag, "statement_position", None) if diag is not None else None
    if value is None:
        value = getattr(exc, "position", None)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _snippet(sql: str, limit: int = 120) -> str:
    one = " ".join(sql.split())
    return one if len(one) <= limit else one[: limit - 3] + "..."


def failure(
    exc: BaseException,
    m: Migration,
    part: Part,
    st: Statement,
    version: int | None,
    done: int | None,
) -> MigrationFailed:
    """The `MigrationFailed` for statement ``st`` of ``m`` failing with ``exc``.

    ``version`` is the version the database is at; ``done`` how many of the
    part's statements were in before it when it runs outside a transaction
    (None inside one). The line is the one the server's error position
    points at, when it gives one, else the statement's first.
    """
    line = st.line
    offset = _error_offset(exc)
    if offset is not None and 0 < offset <= len(st.sql) + 1:
        line += st.sql.count("\n", 0, offset - 1)
    first = str(exc).strip().split("\n", 1)[0] or type(exc).__name__
    code = sqlstate_of(exc)
    message = f"{part.file}:{line}: {first}"
    if code:
        message += f" [{code}]"
    hint = _HINTS.get(code or "")
    if hint:
        message += f" ({hint})"
    message += f"; statement: {_snippet(st.sql)}. "
    if done is not None:
        message += (
            f"It ran outside a transaction, with {done} statement(s) of "
            f"{len(part.statements)} in before it: {m.label} stays marked failed "
            "until repair (a failed CONCURRENTLY build leaves an invalid index)"
        )
    else:
        where = "none applied" if version is None else f"version {version}"
        message += f"Rolled back: the database stays at {where}"
    return MigrationFailed(
        message,
        version=m.version,
        file=part.file,
        line=line,
        statement=st.sql,
        applied_version=version,
        partial=done is not None,
    )
