"""SQLSTATE classification: which errors kill a connection, which are worth a retry.

Pure functions over SQLSTATE strings (and, for connect failures, the message
text): no driver import, no I/O. Drivers expose the code differently (psycopg
and asyncpg as ``.sqlstate``, psycopg2 as ``.pgcode``); :func:`sqlstate_of`
reads either, walking the exception chain like HikariCP's ``checkException``.

Tables (``08xxx`` means the whole class):

=====================  =========================================================
classifier             SQLSTATEs
=====================  =========================================================
``is_disconnect``      ``08xxx`` connection exception; ``57P01`` admin_shutdown;
                       ``57P02`` crash_shutdown; ``57P03`` cannot_connect_now;
                       ``57P04`` database_dropped; ``57P05`` idle_session_timeout;
                       ``25P03`` idle_in_transaction_session_timeout (FATAL: the
                       server closes the session).
``is_transient``       ``08xxx``; ``57P01``, ``57P02``, ``57P03``; ``53000``
                       insufficient_resources; ``53200`` out_of_memory;
                       ``53300`` too_many_connections. Worth a retry after a
                       backoff on a *new* connection.
``is_retryable_transaction````40001`` serialization_failure; ``40P01``
                       deadlock_detected: retry the *whole transaction*.
``is_fatal_config``    ``28xxx`` invalid authorization (wrong password, unknown
                       role, no pg_hba entry); ``3D000`` unknown database;
                       ``42501`` insufficient_privilege (no CONNECT); ``42704``
                       unknown setting in ``options``; ``22023`` bad setting
                       value in ``options``. Meaningful for *connect* failures:
                       retrying cannot help until someone changes the config.
``is_read_only``       ``25006`` read_only_sql_transaction (a standby, or
                       ``default_transaction_read_only``).
=====================  =========================================================

HikariCP also evicts on ``0A000`` and ``01002``: both are JDBC-driver artefacts
and are left out. ``57014`` (query_canceled) is *not* a disconnect: the
connection is healthy after a rollback (reliability study, S13).

:func:`connect_failure_reason` maps a failed connect to one of the reasons of
:class:`pgharbor.errors.ConnectionFailed`: from the SQLSTATE when the server sent
one, else from libpq's message (network errors carry no SQLSTATE). Quoted parts
of the message (host names, database names) are ignored, as SQLAlchemy does, so a
host called ``ssl.example.com`` is not a TLS problem.
"""

from __future__ import annotations

import re

__all__ = [
    "connect_failure_reason",
    "is_disconnect",
    "is_disconnect_message",
    "is_fatal_config",
    "is_read_only",
    "is_refusal",
    "is_retryable_transaction",
    "is_transient",
    "sqlstate_of",
    "statement_did_not_run",
]

_MAX_CHAIN = 10  # HikariCP walks at most 10 chained exceptions

_DISCONNECT = frozenset({"57P01", "57P02", "57P03", "57P04", "57P05", "25P03"})
_TRANSIENT = frozenset({"57P01", "57P02", "57P03", "53000", "53200", "53300"})
_RETRYABLE_TX = frozenset({"40001", "40P01"})
_FATAL_CONFIG = frozenset({"3D000", "42501", "42704", "22023"})

# SQLSTATE -> reason, checked before the message patterns.
_REASON_BY_CODE = {
    "3D000": "database-missing",
    "42501": "auth",
    "57P03": "server-starting",
    "53300": "too-many-connections",
    "08P01": "protocol",
    "57P01": "network",
    "57P02": "network",
}

# Message patterns in priority order: the first match wins. Auth comes before
# TLS because "no pg_hba.conf entry ... SSL off" is an auth problem.
_REASON_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (reason, re.compile(pattern, re.IGNORECASE))
    for reason, pattern in (
        (
            "auth",
            r"authentication failed|no pg_hba\.conf entry|role\s.*does not exist"
            r"|no password supplied|password is required|permission denied for database",
        ),
        ("database-missing", r"database\s.*does not exist"),
        (
            "server-starting",
            r"database system is (?:starting up|in recovery mode|shutting down"
            r"|not yet accepting connections|not accepting connections)",
        ),
        (
            "too-many-connections",
            r"too many (?:clients|connections)|connection slots are reserved",
        ),
        (
            "dns",
            r"could not translate host name|name or service not known"
            r"|temporary failure in name resolution|nodename nor servname"
            r"|no address associated with hostname|getaddrinfo",
        ),
        ("timeout", r"timeout expired|timed out|\btimeout\b"),
        ("tls", r"\bssl\b|\btls\b|certificate"),
        (
            "protocol",
            r"protocol|invalid message|unexpected message|lost synchronization",
        ),
        (
            "network",
            r"connection refused|connect call failed|no route to host|network is unreachable"
            r"|connection reset|server closed the connection|could not connect"
            r"|broken pipe|could not send data|could not receive data"
            r"|no such file or directory|connection is closed|connection was closed",
        ),
    )
)

_QUOTED = re.compile(r'"[^"]*"')

# A connection attempt that got no TCP (or Unix socket) session at all: the
# port is closed, the host unreachable, the socket file missing.
_REFUSAL = re.compile(
    r"connection refused|connect call failed|no route to host|network is unreachable"
    r"|no such file or directory",
    re.IGNORECASE,
)


def is_refusal(message: str) -> bool:
    """Whether a failed attempt's ``message`` says nothing accepted the
    connection (so a server that starts accepting again is news)."""
    return bool(_REFUSAL.search(_QUOTED.sub("", message)))


# libpq / psycopg / psycopg2 / SSL texts of a lost connection (after SQLAlchemy's
# psycopg2 dialect). A match after a double quote may be quoted user data.
_DISCONNECT_MESSAGE = re.compile(
    r"(?:terminating connection|server closed the connection|closed the connection"
    r"|connection not open|connection is closed|connection already closed"
    r"|connection was closed|connection is lost|connection has been closed"
    r"|could not receive data from server|could not send data to server"
    r"|SSL SYSCALL error|SSL connection has been closed unexpectedly"
    r"|consuming input failed|sending query failed|lost synchronization with server"
    r"|connection reset by peer|broken pipe|no connection to the server"
    # asyncpg, when the server's FATAL arrived between two operations of a
    # connection (its protocol then refuses the next one before sending it)
    r"|cannot switch to state \d+; another operation \(\d+\) is in progress)",
    re.IGNORECASE,
)


def sqlstate_of(exc: BaseException | None) -> str | None:
    """The SQLSTATE carried by ``exc`` or the exceptions it was raised from.

    Reads ``.sqlstate`` (psycopg, asyncpg) or ``.pgcode`` (psycopg2), duck-typed,
    and walks ``__cause__`` (else ``__context__``) up to 10 levels.

    Returns:
        The five-character code, or None if no exception in the chain has one.
    """
    seen = 0
    while exc is not None and seen < _MAX_CHAIN:
        code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        if isinstance(code, str) and len(code) == 5:
            return code
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def is_disconnect(sqlstate: str | None) -> bool:
    """Whether the server closed (or is closing) the session: discard it."""
    if not sqlstate:
        return False
    return sqlstate.startswith("08") or sqlstate in _DISCONNECT


def is_transient(sqlstate: str | None) -> bool:
    """Whether connecting (or running on a new connection) may work after a backoff."""
    if not sqlstate:
        return False
    return sqlstate.startswith("08") or sqlstate in _TRANSIENT


def is_retryable_transaction(sqlstate: str | None) -> bool:
    """Whether re-running the whole transaction may succeed (40001, 40P01)."""
    return sqlstate in _RETRYABLE_TX


def is_fatal_config(sqlstate: str | None) -> bool:
    """Whether a connect failure needs a configuration change, not a retry."""
    if not sqlstate:
        return False
    return sqlstate.startswith("28") or sqlstate in _FATAL_CONFIG


def is_read_only(sqlstate: str | None) -> bool:
    """Whether the statement was refused because the session is read-only."""
    return sqlstate == "25006"


def is_disconnect_message(message: str | None) -> bool:
    """Whether an error text without SQLSTATE says the connection is lost.

    Only the first line is read (later lines can echo the query), and a match
    with a double quote anywhere before it is ignored, so quoted user data
    cannot fake it (SQLAlchemy's rule).
    """
    if not message:
        return False
    line = message.partition("\n")[0]
    match = _DISCONNECT_MESSAGE.search(line)
    return match is not None and '"' not in line[: match.start()]


# The driver refused to send: the connection was already closed (psycopg,
# psycopg2, asyncpg), or asyncpg's protocol was still busy with what the
# server sent before closing (an error read while idle) and refused to start.
_REFUSED_BEFORE_SEND = re.compile(
    r"^(the )?connection (is|already) closed"
    r"|^cannot switch to state \d+; another operation \(\d+\) is in progress",
    re.IGNORECASE,
)


def statement_did_not_run(exc: BaseException) -> bool:
    """Whether a statement that raised ``exc`` provably never reached the
    server, so sending it again (on another connection) cannot run it twice.

    True only when the *driver* refused to send it: the connection was
    already closed, or busy. A session the server ended (57P01 from a
    restart or ``pg_terminate_backend``, 57P02, 57P05) is not proof: that is
    also what a statement that was running gets when a DBA kills it, and
    running it again would undo the kill and repeat its side effects. A
    connection that the server ended while it sat idle is caught before
    anything is sent (the pool's checkout check), so such statements never
    reach this question.
    """
    return bool(_REFUSED_BEFORE_SEND.match(str(exc)))


def connect_failure_reason(sqlstate: str | None, message: str | None) -> str:
    """Classify a failed connection attempt.

    Args:
        sqlstate: The code the server sent, or None (network errors have none).
        message: The error text; quoted names in it are ignored.

    Returns:
        One of ``network``, ``dns``, ``tls``, ``auth``, ``database-missing``,
        ``server-starting``, ``too-many-connections``, ``timeout``, ``protocol``,
        ``unknown``.
    """
    if sqlstate:
        if sqlstate.startswith("28"):
            return "auth"
        if reason := _REASON_BY_CODE.get(sqlstate):
            return reason
    if message:
        text = _QUOTED.sub('""', message)
        for reason, pattern in _REASON_PATTERNS:
            if pattern.search(text):
                return reason
    return "unknown"
