"""Background work of `AsyncPool`: the maintenance loop, opening, closing and
keeping connections alive. Source of the generated sync module.

Named things, as the style asks (psycopg's ``MaintenanceTask``, HikariCP's
``HouseKeeper``): `maintain` (one loop per pool), `connect_one` (one per
reserved attempt), `close_slots`, `keepalive` and `call_reconnect_failed`.
They run as the pool's tasks (threads, in `Pool`), decide under the pool's
lock through `PoolState` and do their I/O outside it.
"""

from __future__ import annotations

import logging
import weakref
from time import monotonic
from typing import TYPE_CHECKING, Any

from .._acompat import aensure
from .._conninfo import describe, redact, secrets_of
from .._policy.pool import Slot
from .._policy.sqlstate import connect_failure_reason, sqlstate_of
from ..drivers.base import ConnStatus
from ..errors import (
    AuthenticationFailed,
    ConnectionFailed,
    HarborError,
    UnsupportedServerVersion,
)
from ..version import ServerVersion

if TYPE_CHECKING:
    from .pool import AsyncPool

__all__ = [
    "call_reconnect_failed",
    "close_slots",
    "connect_one",
    "is_fatal",
    "keepalive",
    "maintain",
]

logger = logging.getLogger("pgharbor.pool")

_IDLE = ConnStatus.IDLE
_ALERT_PERIOD = 1.0  # seconds between samples of the alert conditions


async def maintain(ref: weakref.ref[AsyncPool]) -> None:
    """The maintenance loop: opens connections (with backoff), retires
    expired and surplus idle ones, keeps idle ones alive, reports leaks.

    It holds the pool weakly while it sleeps, so a pool its owner dropped
    without closing can be collected (and warn, see ``AsyncPool.__del__``).
    """
    while True:
        pool = ref()
        if pool is None or pool._state.closed:
            return
        st = pool._state
        wakeup = pool._wakeup
        wakeup.clear()
        now = monotonic()
        with pool._lock:
            n, retry_at = st.plan_connects(now)
            io, due = st.maintain(now)
        for _ in range(n):
            pool._spawn(connect_one, pool)
        pool._perform(io)
        if pool._breaker_options is not None:
            pool._note_breaker()
        wake_at = min((t for t in (retry_at, due) if t is not None), default=None)
        if pool._alerts is not None:
            # Conditions are sampled here about once a second.
            pool._sample_alerts()
            wake_at = min(wake_at or now + _ALERT_PERIOD, now + _ALERT_PERIOD)
        del pool, st, io
        await wakeup.wait_timeout(None if wake_at is None else wake_at - monotonic())


async def connect_one(pool: AsyncPool) -> None:
    """Open one connection (a reserved attempt) and add it to the pool."""
    secrets = list(pool._secrets)
    conn = None
    started = monotonic()
    try:
        params = await pool._connect_params()
        secrets.extend(secrets_of(params))
        conn = await pool._driver.connect(params, pool.options.connect_timeout)
        check_version(pool, conn)
        if pool._configure is not None:
            await aensure(pool._configure, conn)
            if pool._driver.status(conn) is not _IDLE:
                raise ConnectionFailed("the configure callback left a transaction open")
    except BaseException as exc:
        if conn is not None:
            pool._driver.terminate(conn)
        error = connect_error(pool, exc, secrets)
        with pool._lock:
            io = pool._state.connect_failed(error, monotonic(), is_fatal(error))
        logger.warning("pool %r: connection attempt failed: %s", pool.name, error)
        pool._record("connect", started, str(error))
        if pool._obs is not None:
            pool._obs.connect_failed(error)
        if pool._breaker_options is not None:
            pool._note_breaker()
        pool._progress.set()
        pool._perform(io)
        if not isinstance(exc, Exception):
            raise
        return
    now = monotonic()
    with pool._lock:
        io = pool._state.connected(conn, now, now - started)
    pool._record("connect", started, None)
    if pool._obs is not None:
        pool._obs.connected(conn, now - started)
    if pool._breaker_options is not None:
        pool._note_breaker()
    pool._progress.set()
    pool._perform(io)


async def close_slots(pool: AsyncPool, slots: list[Slot]) -> None:
    # One after the other: each close is bounded and sends one message.
    for slot in slots:
        if pool._obs is not None:
            pool._obs.removed(slot.conn, slot.reason)
        await pool._driver.close(slot.conn, pool.options.check_timeout)


async def keepalive(pool: AsyncPool, slots: list[Slot]) -> None:
    pending = list(slots)
    try:
        while pending:
            slot = pending[0]
            ok = False
            try:
                ok = await pool._ping(slot)
            finally:
                # Even when cancelled (at close): a slot taken out for a
                # ping always comes back, or is closed.
                pending.pop(0)
                with pool._lock:
                    io = pool._state.ping_done(slot, monotonic(), ok)
                if io is not None:
                    pool._perform(io)
    finally:
        for slot in pending:  # not pinged: as good as they were
            with pool._lock:
                io = pool._state.ping_done(slot, monotonic(), True)
            if io is not None:
                pool._perform(io)


async def call_reconnect_failed(pool: AsyncPool) -> None:
    assert pool._reconnect_failed is not None
    try:
        await aensure(pool._reconnect_failed, pool)
    except Exception:
        logger.exception("pool %r: reconnect_failed callback raised", pool.name)


def check_version(pool: AsyncPool, conn: Any) -> None:
    """Refuse servers older than ``minimum_version``; log each new version once."""
    version = ServerVersion.from_num(pool._driver.server_version(conn))
    if version != pool._version:
        pool._version = version
        logger.info("pool %r: connected to PostgreSQL %s", pool.name, version)
    if pool._minimum_version is not None and not version.is_compatible(pool._minimum_version):
        raise UnsupportedServerVersion(
            f"PostgreSQL {version} at {describe(pool._params or {})} is older than "
            f"the minimum supported {pool._minimum_version}"
        )


def connect_error(pool: AsyncPool, exc: BaseException, secrets: list[str]) -> HarborError:
    """A password-free stand-in for a connect failure (it becomes the
    cause of `PoolTimeout`, so it must not carry libpq's raw text)."""
    if isinstance(exc, ConnectionFailed | UnsupportedServerVersion):
        return exc
    where = describe(pool._params or {})
    text = redact(f"{type(exc).__name__}: {exc}".strip(), secrets)
    message = f"connecting to {where} failed: {text}"
    reason = connect_failure_reason(sqlstate_of(exc), str(exc))
    error: ConnectionFailed
    if reason == "auth":
        error = AuthenticationFailed(message)
    else:
        error = ConnectionFailed(message, reason=reason)
    error.__suppress_context__ = True
    return error


def is_fatal(error: BaseException | None) -> bool:
    """Connect failures that retrying cannot fix without a change elsewhere."""
    if isinstance(error, UnsupportedServerVersion):
        return True
    return isinstance(error, ConnectionFailed) and error.reason in (
        "auth",
        "database-missing",
    )
