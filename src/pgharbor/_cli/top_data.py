"""What ``pgharbor top`` shows, as plain data: one `snapshot` per refresh.

A snapshot asks every node of every database, side by side, for one timed
``SELECT`` (the round trip top reports, and the node's role) and for what
``pg_stat_activity`` says about the clients of its database; it adds each
pool's `stats()` and, for databases with replicas, the topology's view of
roles and lag. Every step is bounded, so a node that is down or hangs becomes
an error row, never a frozen screen. Rendering lives in `top_view`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING, Any

from .._conninfo import _raw_secrets, parse_conninfo, redact, secrets_of
from ..drivers import get_queries
from ..errors import ConfigError

if TYPE_CHECKING:
    from .._sync.database import Database
    from .._sync.pool import Pool

__all__ = [
    "APPLICATION_NAME",
    "CLIENTS_SQL",
    "RoundTrips",
    "Targets",
    "open_targets",
    "percentile",
    "snapshot",
]

#: The application_name of top's own sessions: the Clients table leaves them out.
APPLICATION_NAME = "pgharbor-top"

#: Per application on the node's current database: client backends only
#: (no autovacuum, WAL senders or other background workers), top excluded.
CLIENTS_SQL = f"""\
SELECT coalesce(nullif(application_name, ''), '(none)') AS application,
  count(*) AS connections,
  count(*) FILTER (WHERE state = 'active') AS active,
  count(*) FILTER (WHERE state = 'idle') AS idle,
  count(*) FILTER (WHERE state IN ('idle in transaction', 'idle in transaction (aborted)'))
    AS idle_in_transaction,
  count(*) FILTER (WHERE wait_event_type = 'Lock') AS waiting_lock,
  extract(epoch FROM now() - min(xact_start))::float8 AS oldest_xact
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND datname = current_database()
  AND application_name IS DISTINCT FROM '{APPLICATION_NAME}'
GROUP BY 1
ORDER BY 2 DESC, 1"""

# One round trip that also says what the node is (for databases without a
# topology, whose role nobody else probes).
_PROBE_SQL = "SELECT pg_is_in_recovery()"
# Round-trip samples kept per node (about a minute at the default interval).
_WINDOW = 60


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100, nearest rank) of ``values``; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class RoundTrips:
    """A rolling window of probe round trips (seconds) per node."""

    def __init__(self, size: int = _WINDOW) -> None:
        self.size = size
        self._samples: dict[tuple[str, str], deque[float]] = {}

    def add(self, key: tuple[str, str], seconds: float) -> None:
        """Record one round trip of node ``key`` (database, node)."""
        self._samples.setdefault(key, deque(maxlen=self.size)).append(seconds)

    def percentiles_ms(self, key: tuple[str, str]) -> tuple[float | None, float | None]:
        """p50 and p99 of the window of ``key``, in milliseconds (None: no sample)."""
        values = list(self._samples.get(key, ()))
        p50, p99 = percentile(values, 50), percentile(values, 99)
        return (
            None if p50 is None else p50 * 1000.0,
            None if p99 is None else p99 * 1000.0,
        )


@dataclass
class Targets:
    """The databases top watches, those it could not even build, and every
    secret it knows of (to scrub from error text)."""

    databases: dict[str, Database] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)

    def close(self, timeout: float = 5.0) -> None:
        """Close every database (each within about ``timeout``); never raises."""
        for db in self.databases.values():
            with contextlib.suppress(Exception):
                db.close(timeout)


def _secrets_of_url(url: str) -> list[str]:
    try:
        return secrets_of(parse_conninfo(url))
    except ConfigError:
        return _raw_secrets(url)


def open_targets(
    named: Mapping[str, Any],
    *,
    connect_timeout: float,
    wait_for_roles: bool = False,
) -> Targets:
    """A small `Database` per target (``min_size=1``, ``max_size=2``, named
    `APPLICATION_NAME`), opened in the background.

    ``named`` maps names to URLs / keyword DSNs or to
    `pgharbor.config.DatabaseSettings`. A target that cannot be built (bad
    URL, bad setting) is listed in ``invalid`` with its masked reason. With
    ``wait_for_roles``, databases with replicas wait (up to
    ``connect_timeout``) until each node has been probed once, so a single
    frame already shows roles. Never raises for an unreachable server.
    """
    from .._sync.database import Database
    from ..config import DatabaseSettings

    out = Targets()
    for name, spec in named.items():
        try:
            if isinstance(spec, DatabaseSettings):
                urls = [spec.url, spec.primary, *spec.replicas]
                for url in urls:
                    if url is not None:
                        out.secrets += _secrets_of_url(url.get_secret_value())
                if spec.password is not None:
                    out.secrets.append(spec.password.get_secret_value())
                small = spec.model_copy(
                    update={
                        "min_size": 1,
                        "max_size": 2,
                        "application_name": APPLICATION_NAME,
                        "connect_timeout": connect_timeout,
                    }
                )
                db = Database.from_settings(small, name)
            else:
                out.secrets += _secrets_of_url(str(spec))
                db = Database(
                    spec,
                    name=name,
                    min_size=1,
                    max_size=2,
                    application_name=APPLICATION_NAME,
                    connect_timeout=connect_timeout,
                )
        except (ConfigError, ImportError) as exc:
            out.invalid[name] = redact(str(exc), out.secrets)
            continue
        out.databases[name] = db
    # Longest first, so a secret containing another is replaced whole.
    out.secrets = sorted(set(out.secrets), key=len, reverse=True)
    for db in out.databases.values():
        # A node that is down is shown by the next snapshot, not raised here.
        with contextlib.suppress(Exception):
            db.open(wait=wait_for_roles and not db.topology.single, timeout=connect_timeout)
    return out


@dataclass
class _Sample:
    """What one node answered during one refresh."""

    round_trip: float | None = None
    standby: bool | None = None
    clients: list[Sequence[Any]] = field(default_factory=list)
    error: str | None = None


def _sample(pool: Pool, driver: str, timeout: float) -> _Sample:
    """One timed probe and the clients query on one pooled connection.

    Blocks at most about three times ``timeout`` (acquire, two statements).
    """
    queries = get_queries(driver)
    try:
        with pool.connection(timeout) as conn:
            started = perf_counter()
            standby = queries.fetchval(conn, _PROBE_SQL, None, timeout)
            elapsed = perf_counter() - started
            rows = queries.fetch(conn, CLIENTS_SQL, None, timeout)
    except Exception as exc:
        return _Sample(error=f"{type(exc).__name__}: {exc}")
    return _Sample(round_trip=elapsed, standby=bool(standby), clients=[tuple(r) for r in rows])


def _nodes(name: str, db: Database) -> Iterator[tuple[str, Pool, dict[str, Any] | None]]:
    """(node name, pool, topology info or None) for each node of ``db``."""
    topology = db.topology
    if topology.single:
        yield "-", db.pool, None
        return
    # nodes() and pools() both follow the order the nodes were listed in.
    for info, pool in zip(topology.nodes(), topology.pools(), strict=True):
        yield str(info["name"]), pool, info


def _role(info: dict[str, Any] | None, sample: _Sample) -> str:
    if info is not None:
        role = str(info.get("role") or "unknown")
        return "replica" if role == "standby" else role
    if sample.standby is None:
        return "unknown"
    return "replica" if sample.standby else "primary"


def snapshot(
    databases: Mapping[str, Database],
    round_trips: RoundTrips,
    *,
    timeout: float,
    interval: float,
    executor: ThreadPoolExecutor,
    invalid: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
) -> dict[str, Any]:
    """Ask every node of ``databases`` (side by side, on ``executor``) and
    return one frame's worth of data.

    Keys: ``time`` (epoch seconds), ``interval``, ``pools`` (a dict per node),
    ``clients`` (a dict per application per node), ``errors`` (masked
    messages) and ``reachable`` (nodes that answered). Blocks at most about
    three times ``timeout``; never raises for a server that is down.
    """
    hidden = list(secrets)
    jobs: list[tuple[str, str, Pool, dict[str, Any] | None, Future[_Sample]]] = []
    for name, db in databases.items():
        for node, pool, info in _nodes(name, db):
            future = executor.submit(_sample, pool, db.driver, timeout)
            jobs.append((name, node, pool, info, future))
    # Each sample bounds itself; this is a belt for the braces.
    wait([job[4] for job in jobs], timeout=3 * timeout + 1.0)

    pools: list[dict[str, Any]] = []
    clients: list[dict[str, Any]] = []
    errors: list[str] = []
    for name, reason in (invalid or {}).items():
        pools.append(_pool_row(name, "-", "(invalid)", "unknown", None, {}, (None, None)))
        pools[-1]["error"] = reason
        errors.append(f"{name}: {reason}")
    for name, node, pool, info, future in jobs:
        if future.done():
            sample = future.result()
        else:
            sample = _Sample(error=f"no answer within {3 * timeout:.1f} s")
        key = (name, node)
        if sample.round_trip is not None:
            round_trips.add(key, sample.round_trip)
        row = _pool_row(
            name,
            node,
            pool.target,
            _role(info, sample),
            info,
            pool.stats(),
            round_trips.percentiles_ms(key),
        )
        if sample.error is not None:
            message = " ".join(redact(sample.error, hidden).split())
            row["error"] = message
            label = name if node == "-" else f"{name}/{node}"
            errors.append(f"{label} ({pool.target}): {message}")
        pools.append(row)
        for r in sample.clients:
            clients.append(
                {
                    "database": name,
                    "node": node,
                    "application": str(r[0]),
                    "connections": int(r[1]),
                    "active": int(r[2]),
                    "idle": int(r[3]),
                    "idle_in_transaction": int(r[4]),
                    "waiting_lock": int(r[5]),
                    "oldest_xact": None if r[6] is None else float(r[6]),
                }
            )
    return {
        "time": time.time(),
        "interval": interval,
        "pools": pools,
        "clients": clients,
        "errors": errors,
        "reachable": sum(1 for p in pools if p["error"] is None),
    }


def _pool_row(
    name: str,
    node: str,
    target: str,
    role: str,
    info: dict[str, Any] | None,
    stats: Mapping[str, Any],
    round_trip: tuple[float | None, float | None],
) -> dict[str, Any]:
    """One row of the Nodes table, as data."""
    breaker = stats.get("breaker_open")
    return {
        "database": name,
        "node": node,
        "target": target,
        "role": role,
        "lag_seconds": info.get("lag_seconds") if info else None,
        "lag_bytes": info.get("lag_bytes") if info else None,
        "breaker": None if breaker is None else ("open" if breaker else "closed"),
        "size": stats.get("size"),
        "max_size": stats.get("max_size"),
        "in_use": stats.get("in_use"),
        "idle": stats.get("idle"),
        "waiting": stats.get("waiting"),
        "wait_p50_ms": stats.get("wait_p50_ms"),
        "wait_p99_ms": stats.get("wait_p99_ms"),
        "errors": (
            int(stats.get("connections_failed", 0)) + int(stats.get("timeouts", 0))
            if stats
            else None
        ),
        "rtt_p50_ms": round_trip[0],
        "rtt_p99_ms": round_trip[1],
        "error": None,
    }
