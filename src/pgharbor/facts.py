"""Server facts in one round trip: version, identity, limits, timeouts, TLS, load.

`ROOM_QUERY` reads, also in one round trip, how many connections the server
has left for a role and database (autoscaled pools read it on each new
connection).

Pure code, like `pgharbor.privileges`: it builds SQL and parses rows, and the
caller runs the query with whatever driver it holds. The convention shared by
both modules:

- SQL is written with psycopg-style ``%s`` placeholders (and ``%%`` for a
  literal ``%``); `to_dollar` turns it into asyncpg's ``$1 .. $n``.
- A check is a `Query` (SQL plus a parameter tuple) and a parse function.
- The caller supplies ``fetch(sql, params) -> rows`` (or an awaitable
  ``afetch``); the ``*_sync`` / ``*_async`` runners are one-liners over it::

      facts = read_facts_sync(lambda q, p: conn.execute(q, p).fetchall())
      facts = await read_facts_async(lambda q, p: aconn.fetch(to_dollar(q), *p))

Times here follow the server, so they carry their unit (``*_ms``); ``None``
means "no limit" (the setting is 0, or the server predates it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pgharbor.errors import UnsupportedServerVersion
from pgharbor.version import MINIMUM_SUPPORTED, ServerVersion

__all__ = [
    "FACTS_QUERY",
    "ROOM_QUERY",
    "AsyncFetch",
    "Fetch",
    "Query",
    "ServerFacts",
    "ServerRoom",
    "check_version",
    "parse_duration_ms",
    "parse_facts",
    "parse_room",
    "read_facts_async",
    "read_facts_sync",
    "sizing_warnings",
    "to_dollar",
]

#: ``fetch(sql, params) -> rows``: runs one statement with ``%s`` placeholders.
#: A row is anything indexable and sized (a tuple, psycopg's rows, asyncpg's
#: ``Record``), hence the loose type.
Fetch = Callable[[str, tuple[Any, ...]], Sequence[Any]]
#: The awaitable flavour of `Fetch`.
AsyncFetch = Callable[[str, tuple[Any, ...]], Awaitable[Sequence[Any]]]


@dataclass(frozen=True, slots=True)
class Query:
    """One statement: SQL with ``%s`` placeholders and its parameters."""

    sql: str
    params: tuple[Any, ...] = ()

    def dollar(self) -> Query:
        """The same query with ``$1 .. $n`` placeholders (for asyncpg)."""
        return Query(to_dollar(self.sql), self.params)


_PLACEHOLDER = re.compile(r"%(.?)", re.DOTALL)


def to_dollar(sql: str) -> str:
    """Turn ``%s`` placeholders into ``$1 .. $n`` and ``%%`` into ``%``.

    Raises:
        ValueError: Any other ``%`` (``%(name)s``, ``%d``, a lone ``%``): the
            two conventions would disagree about it, so it is refused.
    """
    counter = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal counter
        kind = match.group(1)
        if kind == "s":
            counter += 1
            return f"${counter}"
        if kind == "%":
            return "%"
        raise ValueError(
            f"unsupported placeholder {match.group(0)!r} at offset {match.start()}: "
            "use %s for parameters and %% for a literal %"
        )

    return _PLACEHOLDER.sub(replace, sql)


# -- the facts query ------------------------------------------------------------

# One row; every setting is read with missing_ok so an older server answers
# NULL rather than failing (idle_session_timeout is 14+, reserved_connections
# 16+). pg_stat_activity rows are visible to every role; only their details
# are hidden from others.
_FACTS_SQL = """\
SELECT
  current_setting('server_version_num')::int,
  current_database(),
  current_user,
  current_setting('is_superuser') = 'on',
  current_setting('max_connections')::int,
  current_setting('superuser_reserved_connections')::int,
  coalesce(current_setting('reserved_connections', true), '0')::int,
  (SELECT nullif(rolconnlimit, -1) FROM pg_roles WHERE rolname = current_user),
  (SELECT nullif(datconnlimit, -1) FROM pg_database WHERE datname = current_database()),
  current_setting('idle_session_timeout', true),
  current_setting('statement_timeout'),
  current_setting('idle_in_transaction_session_timeout'),
  pg_is_in_recovery(),
  coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false),
  (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend'),
  (SELECT count(*)::int FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND datname = current_database()),
  current_setting('server_encoding'),
  current_setting('TimeZone')"""

#: Everything `ServerFacts` holds, in one statement without parameters.
FACTS_QUERY = Query(_FACTS_SQL)

# current_setting() shows a time in the largest unit that divides it evenly.
_UNITS_MS = {"us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"\s*(-?\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*")


def parse_duration_ms(text: str | None, default_unit: str = "ms") -> int | None:
    """A time setting as ``current_setting()`` shows it, in milliseconds.

    ``"0"`` (off), a negative value and ``None`` (unknown setting) all give
    ``None``: "no limit". A bare number is in *default_unit* (``ms`` for
    every timeout setting).

    Raises:
        ValueError: The text is not a PostgreSQL time value.
    """
    if text is None:
        return None
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"not a PostgreSQL time value: {text!r}")
    ms = float(match.group(1)) * _UNITS_MS[match.group(2) or default_unit]
    return math.ceil(ms) if ms > 0 else None


@dataclass(frozen=True, slots=True)
class ServerFacts:
    """What one session learned about its server, from `FACTS_QUERY`.

    Attributes:
        version: From ``server_version_num``.
        database: ``current_database()``.
        user: ``current_user``.
        superuser: Whether ``user`` is a superuser.
        max_connections: The server-wide connection limit.
        superuser_reserved_connections: Slots only superusers may use.
        reserved_connections: Slots for ``pg_use_reserved_connections``
            (16+; 0 before).
        role_connection_limit: ``CONNECTION LIMIT`` of the role (None: none).
        database_connection_limit: ``CONNECTION LIMIT`` of the database (None: none).
        idle_session_timeout_ms: Idle sessions are closed after this; None
            when off (0) or unsupported (before 14).
        statement_timeout_ms: None when off.
        idle_in_transaction_session_timeout_ms: None when off.
        in_recovery: A standby (or a server in crash recovery).
        tls: This session is encrypted (``pg_stat_ssl``).
        backends: Client sessions on the whole server (what counts against
            ``max_connections``), the asking one included.
        database_backends: Client sessions on ``database``.
        server_encoding: ``UTF8``, ...
        timezone: The session's ``TimeZone``.
    """

    version: ServerVersion
    database: str
    user: str
    superuser: bool
    max_connections: int
    superuser_reserved_connections: int
    reserved_connections: int
    role_connection_limit: int | None
    database_connection_limit: int | None
    idle_session_timeout_ms: int | None
    statement_timeout_ms: int | None
    idle_in_transaction_session_timeout_ms: int | None
    in_recovery: bool
    tls: bool
    backends: int
    database_backends: int
    server_encoding: str
    timezone: str

    @property
    def available_connections(self) -> int:
        """Slots an ordinary role may use: ``max_connections`` minus both reserves."""
        return (
            self.max_connections - self.superuser_reserved_connections - self.reserved_connections
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain values for logs and JSON; ``version`` as text (``"16.4"``)."""
        data = asdict(self)
        data["version"] = str(self.version)
        data["version_num"] = self.version.num
        return data


def parse_facts(row: Sequence[Any]) -> ServerFacts:
    """Build `ServerFacts` from the single row `FACTS_QUERY` returns.

    Raises:
        ValueError: The row does not have the query's shape.
    """
    if len(row) != 18:
        raise ValueError(f"expected the 18 columns of FACTS_QUERY, got {len(row)}")
    return ServerFacts(
        version=ServerVersion.from_num(row[0]),
        database=str(row[1]),
        user=str(row[2]),
        superuser=bool(row[3]),
        max_connections=int(row[4]),
        superuser_reserved_connections=int(row[5]),
        reserved_connections=int(row[6]),
        role_connection_limit=None if row[7] is None else int(row[7]),
        database_connection_limit=None if row[8] is None else int(row[8]),
        idle_session_timeout_ms=parse_duration_ms(row[9]),
        statement_timeout_ms=parse_duration_ms(row[10]),
        idle_in_transaction_session_timeout_ms=parse_duration_ms(row[11]),
        in_recovery=bool(row[12]),
        tls=bool(row[13]),
        backends=int(row[14]),
        database_backends=int(row[15]),
        server_encoding=str(row[16]),
        timezone=str(row[17]),
    )


def read_facts_sync(fetch: Fetch) -> ServerFacts:
    """Run `FACTS_QUERY` through *fetch* (one round trip) and parse it.

    Raises:
        Whatever *fetch* raises; ValueError if it returns no row.
    """
    return parse_facts(_one_row(fetch(FACTS_QUERY.sql, FACTS_QUERY.params)))


async def read_facts_async(afetch: AsyncFetch) -> ServerFacts:
    """`read_facts_sync` for an awaitable *afetch*."""
    return parse_facts(_one_row(await afetch(FACTS_QUERY.sql, FACTS_QUERY.params)))


def _one_row(rows: Sequence[Any]) -> Any:
    if len(rows) != 1:
        raise ValueError(f"expected one row from FACTS_QUERY, got {len(rows)}")
    return rows[0]


# -- the room left ----------------------------------------------------------------

# One row, one pass over pg_stat_activity: the limits that apply to this
# session's role and database, and the client sessions counted against each.
_ROOM_SQL = """\
SELECT
  current_setting('max_connections')::int,
  current_setting('superuser_reserved_connections')::int,
  coalesce(current_setting('reserved_connections', true), '0')::int,
  current_setting('is_superuser') = 'on',
  (SELECT nullif(rolconnlimit, -1) FROM pg_roles WHERE rolname = current_user),
  (SELECT nullif(datconnlimit, -1) FROM pg_database WHERE datname = current_database()),
  count(*)::int,
  (count(*) FILTER (WHERE usename = current_user))::int,
  (count(*) FILTER (WHERE datname = current_database()))::int
FROM pg_stat_activity
WHERE backend_type = 'client backend'"""

#: How many more sessions the server would accept from this role and
#: database now (see `ServerRoom`), in one statement without parameters.
ROOM_QUERY = Query(_ROOM_SQL)


@dataclass(frozen=True, slots=True)
class ServerRoom:
    """The connection limits that apply to a session, and what is left of them.

    Attributes:
        max_connections: The server-wide limit.
        superuser_reserved_connections: Slots only superusers may use.
        reserved_connections: Slots for ``pg_use_reserved_connections`` (16+).
        superuser: Whether the session's role is a superuser.
        role_connection_limit: The role's ``CONNECTION LIMIT`` (None: none).
        database_connection_limit: The database's (None: none).
        backends: Client sessions on the server, the asking one included.
        role_backends: Those of the session's role.
        database_backends: Those on the session's database.
    """

    max_connections: int
    superuser_reserved_connections: int
    reserved_connections: int
    superuser: bool
    role_connection_limit: int | None
    database_connection_limit: int | None
    backends: int
    role_backends: int
    database_backends: int

    @property
    def free(self) -> int:
        """Sessions the tightest limit still allows (may be negative when a
        superuser's sessions sit in the reserved slots). The server's limit
        is counted as `sizing_warnings` counts it; ``CONNECTION LIMIT`` does
        not bind superusers."""
        limit = self.max_connections - self.reserved_connections
        if not self.superuser:
            limit -= self.superuser_reserved_connections
        free = limit - self.backends
        if not self.superuser:
            if self.role_connection_limit is not None:
                free = min(free, self.role_connection_limit - self.role_backends)
            if self.database_connection_limit is not None:
                free = min(free, self.database_connection_limit - self.database_backends)
        return free


def parse_room(row: Sequence[Any]) -> ServerRoom:
    """Build `ServerRoom` from the single row `ROOM_QUERY` returns.

    Raises:
        ValueError: The row does not have the query's shape.
    """
    if len(row) != 9:
        raise ValueError(f"expected the 9 columns of ROOM_QUERY, got {len(row)}")
    return ServerRoom(
        max_connections=int(row[0]),
        superuser_reserved_connections=int(row[1]),
        reserved_connections=int(row[2]),
        superuser=bool(row[3]),
        role_connection_limit=None if row[4] is None else int(row[4]),
        database_connection_limit=None if row[5] is None else int(row[5]),
        backends=int(row[6]),
        role_backends=int(row[7]),
        database_backends=int(row[8]),
    )


# -- judgements -------------------------------------------------------------------


def check_version(version: ServerVersion, minimum: int = MINIMUM_SUPPORTED) -> ServerVersion:
    """Return *version* if it is at least major *minimum*.

    Raises:
        UnsupportedServerVersion: "PostgreSQL 12.22 is older than the minimum
            supported 13".
    """
    if not version.is_compatible(minimum):
        raise UnsupportedServerVersion(
            f"PostgreSQL {version} is older than the minimum supported {minimum}"
        )
    return version


def sizing_warnings(
    facts: ServerFacts,
    max_size: int,
    max_idle: float | None,
    pools: int = 1,
    *,
    min_size: int = 0,
    keepalive: float | None = None,
) -> list[str]:
    """Ways a pool configuration collides with the server's limits.

    Pure: reads nothing but its arguments. Pass the pool's options (seconds,
    ``None`` = off, as in `PoolOptions`) and how many processes or pools of
    that size share the server.

    Checks:
        - ``max_size * pools`` against the slots the role can get: the
          server's (``max_connections`` minus the reserves; superusers may
          use ``superuser_reserved_connections`` too), the role's and the
          database's ``CONNECTION LIMIT``;
        - the longest a pooled connection can stay quiet against
          ``idle_session_timeout``: beyond it the server closes the session
          and the pool meets a dead connection. A connection is quiet until
          ``keepalive`` pings it or ``max_idle`` retires it (the latter only
          above ``min_size``).

    Returns:
        Human-readable warnings; empty when nothing collides.
    """
    warnings: list[str] = []
    wanted = max_size * pools
    who = f"max_size={max_size} x {pools} pool(s) = {wanted} connections"

    server_limit = facts.max_connections - facts.reserved_connections
    if not facts.superuser:
        server_limit -= facts.superuser_reserved_connections
    if wanted > server_limit:
        warnings.append(
            f"{who} exceed the {server_limit} the server allows "
            f"{'a superuser' if facts.superuser else 'an ordinary role'} "
            f"(max_connections={facts.max_connections}, "
            f"superuser_reserved_connections={facts.superuser_reserved_connections}, "
            f"reserved_connections={facts.reserved_connections})"
        )
    # CONNECTION LIMIT is not enforced on superusers.
    if not facts.superuser:
        for what, limit in (
            (f"role {facts.user!r}", facts.role_connection_limit),
            (f"database {facts.database!r}", facts.database_connection_limit),
        ):
            if limit is not None and wanted > limit:
                warnings.append(f"{who} exceed the CONNECTION LIMIT {limit} of {what}")

    timeout_ms = facts.idle_session_timeout_ms
    if timeout_ms is not None:
        quiet = _longest_quiet(max_idle, keepalive, min_size)
        if quiet * 1000 >= timeout_ms:
            shown = "forever" if math.isinf(quiet) else f"{quiet:g}s"
            warnings.append(
                f"idle_session_timeout is {timeout_ms / 1000:g}s on the server, but pooled "
                f"connections may stay idle {shown} (max_idle={max_idle}, "
                f"keepalive={keepalive}, min_size={min_size}): the server will close "
                "them; set keepalive (or max_idle) below the timeout"
            )
    return warnings


def _longest_quiet(max_idle: float | None, keepalive: float | None, min_size: int) -> float:
    """The longest a pooled connection goes without a query, in seconds."""
    ping = math.inf if keepalive is None else keepalive
    # Connections above min_size end at max_idle, if a ping does not come first.
    extra = min(ping, math.inf if max_idle is None else max_idle)
    # The min_size ones are never retired for idleness: only pings touch them.
    return max(extra, ping) if min_size > 0 else extra
