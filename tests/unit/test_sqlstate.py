"""Every row of the SQLSTATE tables in pgharbor._policy.sqlstate (no server)."""

from __future__ import annotations

import pytest

from pgharbor._policy.sqlstate import (
    connect_failure_reason,
    is_disconnect,
    is_disconnect_message,
    is_fatal_config,
    is_read_only,
    is_retryable_transaction,
    is_transient,
    sqlstate_of,
    statement_did_not_run,
)

DISCONNECT = ["08000", "08003", "08006", "08001", "08004", "08P01", "57P01", "57P02"]
DISCONNECT += ["57P03", "57P04", "57P05", "25P03"]
NOT_DISCONNECT = ["57014", "40001", "40P01", "23505", "42601", "0A000", "53300", None]


class _Err(Exception):
    def __init__(self, sqlstate: str | None = None, pgcode: str | None = None):
        super().__init__("boom")
        self.sqlstate = sqlstate
        self.pgcode = pgcode


@pytest.mark.parametrize("code", DISCONNECT)
def test_disconnect_codes(code: str) -> None:
    """Connection-class and server-going-away codes are disconnects."""
    assert is_disconnect(code)


@pytest.mark.parametrize("code", NOT_DISCONNECT)
def test_not_disconnect_codes(code: str | None) -> None:
    """Statement errors (incl. query_canceled) never discard the connection."""
    assert not is_disconnect(code)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("08006", True), ("08001", True), ("57P01", True), ("57P02", True),
        ("57P03", True), ("53000", True), ("53200", True), ("53300", True),
        ("53100", False), ("40001", False), ("40P01", False), ("28P01", False),
        ("3D000", False), ("57014", False), (None, False),
    ],
)  # fmt: skip
def test_transient(code: str | None, expected: bool) -> None:
    """Transient codes are worth a retry on a new connection after a backoff."""
    assert is_transient(code) is expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [("40001", True), ("40P01", True), ("08006", False), ("23505", False), (None, False)],
)
def test_retryable_transaction(code: str | None, expected: bool) -> None:
    """Serialization failures and deadlocks retry the whole transaction."""
    assert is_retryable_transaction(code) is expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("28000", True), ("28P01", True), ("3D000", True), ("42501", True),
        ("42704", True), ("22023", True), ("08006", False), ("53300", False),
        ("57P03", False), (None, False),
    ],
)  # fmt: skip
def test_fatal_config(code: str | None, expected: bool) -> None:
    """Auth, unknown database and bad startup settings need a config change."""
    assert is_fatal_config(code) is expected


@pytest.mark.parametrize(("code", "expected"), [("25006", True), ("25001", False)])
def test_read_only(code: str, expected: bool) -> None:
    """25006 means the session is read-only (a standby)."""
    assert is_read_only(code) is expected


def test_sqlstate_of_attributes_and_chain() -> None:
    """sqlstate_of reads .sqlstate or .pgcode and walks the cause chain."""
    assert sqlstate_of(_Err(sqlstate="57P01")) == "57P01"
    assert sqlstate_of(_Err(pgcode="40001")) == "40001"
    assert sqlstate_of(ValueError("no code")) is None
    assert sqlstate_of(None) is None
    try:
        try:
            raise _Err(sqlstate="08006")
        except _Err as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert sqlstate_of(outer) == "08006"
    try:
        try:
            raise _Err(pgcode="28P01")
        except _Err:
            raise KeyError("during handling") from None
    except KeyError as outer:
        outer.__suppress_context__ = False
        assert sqlstate_of(outer) == "28P01"  # __context__ is read too


def _chain(wrappers: int) -> BaseException:
    """``wrappers`` RuntimeErrors, each raised from the next, above a 08006."""
    node: BaseException = _Err(sqlstate="08006")
    for _ in range(wrappers):
        outer = RuntimeError("wrapper")
        outer.__cause__ = node
        node = outer
    return node


def test_sqlstate_of_stops_after_ten_levels() -> None:
    """The chain walk reads at most 10 exceptions (HikariCP's bound)."""
    assert sqlstate_of(_chain(9)) == "08006"  # the code is the 10th exception
    assert sqlstate_of(_chain(10)) is None


@pytest.mark.parametrize(
    ("code", "message", "reason"),
    [
        ("28P01", None, "auth"),
        ("28000", None, "auth"),
        ("42501", None, "auth"),
        ("3D000", None, "database-missing"),
        ("57P03", None, "server-starting"),
        ("53300", None, "too-many-connections"),
        ("08P01", None, "protocol"),
        ("57P01", None, "network"),
        ("57P02", None, "network"),
        (None, 'password authentication failed for user "bob"', "auth"),
        (None, 'no pg_hba.conf entry for host "1.2.3.4", user "x", SSL off', "auth"),
        (None, 'role "x" does not exist', "auth"),
        (None, "fe_sendauth: no password supplied", "auth"),
        (None, 'database "nope" does not exist', "database-missing"),
        (None, "FATAL:  the database system is starting up", "server-starting"),
        (None, "the database system is in recovery mode", "server-starting"),
        (None, "the database system is shutting down", "server-starting"),
        (None, "sorry, too many clients already", "too-many-connections"),
        (None, "remaining connection slots are reserved for ...", "too-many-connections"),
        (None, 'could not translate host name "x.invalid" to address', "dns"),
        (None, "Name or service not known", "dns"),
        (None, "timeout expired", "timeout"),
        (None, "SSL error: certificate verify failed", "tls"),
        (None, "server does not support SSL, but SSL was required", "tls"),
        (None, "unsupported frontend protocol 3.9", "protocol"),
        (None, "lost synchronization with server", "protocol"),
        (None, 'connection to server at "h" failed: Connection refused', "network"),
        (None, "server closed the connection unexpectedly", "network"),
        (None, "No route to host", "network"),
        (None, 'connection to server at "ssl.example.com" failed: Connection refused',
         "network"),
        (None, "something odd", "unknown"),
        (None, None, "unknown"),
        ("XX000", None, "unknown"),
    ],
)  # fmt: skip
def test_connect_failure_reason(code: str | None, message: str | None, reason: str) -> None:
    """Connect failures map to a reason from the code, else from the message."""
    assert connect_failure_reason(code, message) == reason


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("server closed the connection unexpectedly\n\tThis probably...", True),
        ("consuming input failed: terminating connection due to admin", True),
        ("SSL SYSCALL error: EOF detected", True),
        ("could not receive data from server: Connection reset by peer", True),
        ("connection already closed", True),
        ('duplicate key value "server closed the connection"', False),
        ("syntax error\nserver closed the connection", False),
        ("division by zero", False),
        ("", False),
        (None, False),
    ],
)
def test_disconnect_message(message: str | None, expected: bool) -> None:
    """Disconnect texts match on the first line, never inside quoted data."""
    assert is_disconnect_message(message) is expected


class _Said(Exception):
    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        # A session the server ended is what a running statement gets from
        # pg_terminate_backend too: not proof that it did not run.
        (_Said("terminating connection due to administrator command", "57P01"), False),
        (_Said("terminating connection due to idle-session timeout", "57P05"), False),
        (_Said("the connection is closed"), True),
        (_Said("connection is closed"), True),
        (_Said("cannot switch to state 12; another operation (2) is in progress"), True),
        (
            _Said(
                "connection was closed in the middle of operation: terminating "
                "connection due to administrator command"
            ),
            False,
        ),
        (_Said("connection was closed in the middle of operation"), False),
        (_Said("server closed the connection unexpectedly"), False),
        (_Said("duplicate key", "23505"), False),
        (_Said("canceling statement due to statement timeout", "57014"), False),
    ],
)
def test_statement_did_not_run(exc: Exception, expected: bool) -> None:
    """Only a statement the driver refused to send is safe to resend."""
    assert statement_did_not_run(exc) is expected
