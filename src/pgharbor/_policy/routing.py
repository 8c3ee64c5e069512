"""The topology's brain: node roles, health, bans and routing, with no I/O and no clock.

`Router` keeps what the role probe last saw of each node (primary or standby,
replication lag, timeline) plus what callers reported (errors, writes), and
answers one question per statement: *which node should serve this route now?*
It never sleeps and never reads the clock: callers pass ``now`` (monotonic
seconds). The shells (`pgharbor._async.topology`, generated `_sync`) run the
probe and hand its results in.

Routing rules, in the order `Router.choose` applies them:

``"primary"`` (writes, transactions)
    Only a node whose *latest* probe succeeded and said primary. Never a
    standby, never a node not yet probed, never one whose probe just failed.
    No such node: `NoAvailableServer` at once.
``"replica"`` (reads that may be stale)
    Within ``read_your_writes`` seconds of `note_write`, the primary. Else the
    *eligible* standbys (probed healthy, within the lag bounds, not banned),
    round-robin or least-busy; none: the primary if ``fallback_to_primary``;
    else the standbys that are healthy and within lag but banned (a ban never
    takes every standby out for ever, pgcat's rule); else `NoAvailableServer`.
``"any"``
    The eligible standbys *and* the primary, balanced together.

Bans: a failed probe, a connection-class error or a timeout reported by a
caller bans a node from replica reads for ``ban_time`` seconds. The ban is
lifted by the first successful probe *after* it expires, so a flapping node
needs to stay up to come back. Bans never apply to the primary: a primary that
answers its probe is the only place writes can go.

Split brain (two reachable nodes both say primary): the one on the highest
timeline wins, since it was promoted last; on equal or unknown timelines, the
one listed first. The router keeps serving writes by that rule, sets
`Router.split_brain` and lists the claimants in `Router.warnings` for the
shell to log loudly. Preventing split brain needs fencing outside the client
(Patroni and friends); a client can only be deterministic about it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final, Literal, get_args

from ..errors import ConfigError, NoAvailableServer
from .sqlstate import is_disconnect, is_read_only
from .validate import seconds

__all__ = [
    "BALANCES",
    "OPTIONS",
    "ROLES",
    "ROUTES",
    "Balance",
    "NodeState",
    "Role",
    "Route",
    "Router",
]

Role = Literal["primary", "standby", "unknown"]
Route = Literal["primary", "replica", "any"]
Balance = Literal["round_robin", "least_busy"]
#: The keyword options of `Router` (what a topology and a database pass on).
#: The role probe's defaults (seconds): how often it asks each node, and how
#: long it waits for an answer.
PROBE_INTERVAL: Final = 1.0
PROBE_TIMEOUT: Final = 2.0

OPTIONS: tuple[str, ...] = (
    "reads",
    "max_replica_lag",
    "max_replica_lag_bytes",
    "fallback_to_primary",
    "ban_time",
    "read_your_writes",
    "balance",
)
ROLES: Final = get_args(Role)
ROUTES: Final = get_args(Route)
BALANCES: Final = get_args(Balance)

#: Error kinds a caller may report instead of a SQLSTATE (errors without one).
_LOST_KINDS: Final = frozenset({"disconnect", "timeout"})


class NodeState:
    """What the router knows about one node. Read it; `Router` writes it."""

    __slots__ = (
        "banned_until",
        "failures",
        "healthy",
        "in_flight",
        "index",
        "lag_bytes",
        "lag_seconds",
        "name",
        "probed_at",
        "role",
        "timeline",
    )

    def __init__(self, name: str, index: int) -> None:
        self.name = name
        #: position in the configured list (the split-brain tie-break)
        self.index = index
        self.role: Role = "unknown"
        #: the latest probe answered (False until the first one does)
        self.healthy = False
        #: when the latest probe (successful or not) finished, or None
        self.probed_at: float | None = None
        self.lag_seconds: float | None = None
        self.lag_bytes: float | None = None
        #: the primary's WAL timeline, when probed as primary
        self.timeline: int | None = None
        #: consecutive failed probes
        self.failures = 0
        #: out of replica rotation until then, and until a probe succeeds after
        self.banned_until: float | None = None
        #: statements running on it (least-busy balancing), as the shell reports
        self.in_flight = 0

    @property
    def banned(self) -> bool:
        """Whether the node is out of replica rotation (see `Router`)."""
        return self.banned_until is not None

    def describe(self, now: float) -> str:
        """A short, secret-free summary for error messages and logs."""
        if self.probed_at is None:
            text = "not probed yet"
        elif not self.healthy:
            text = f"{self.role}, unreachable ({self.failures} failed probe(s))"
        else:
            text = self.role
            if self.role == "standby":
                text += f" lag={_fmt(self.lag_seconds)}s/{_fmt(self.lag_bytes, 0)}B"
        if self.banned_until is not None:
            left = self.banned_until - now
            text += f", banned {left:.1f}s more" if left > 0 else ", ban expired (awaiting probe)"
        return f"{self.name}: {text}"

    def __repr__(self) -> str:
        return f"<NodeState {self.describe(self.probed_at or 0.0)}>"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "?" if value is None else f"{value:.{digits}f}"


class Router:
    """Roles, health and routing decisions for a set of named nodes.

    Args:
        nodes: Node names, in configured order (the first is the primary hint
            and wins split-brain ties).
        reads: The route of reads that name none (`read_route`): "primary"
            (default), "replica" or "any".
        max_replica_lag: Seconds of replay lag beyond which a standby serves
            no reads; None: no bound.
        max_replica_lag_bytes: The same bound in bytes of WAL received but
            not replayed; None: no bound.
        fallback_to_primary: Serve replica reads from the primary when no
            standby qualifies (default True); False: raise instead.
        ban_time: Seconds a failing node stays out of replica rotation.
        read_your_writes: Seconds after `note_write` during which reads go to
            the primary; None: off.
        balance: "round_robin" (default) or "least_busy" (fewest in flight).

    Raises:
        ConfigError: an invalid setting, naming it.
    """

    def __init__(
        self,
        nodes: Sequence[str],
        *,
        reads: Route = "primary",
        max_replica_lag: float | None = None,
        max_replica_lag_bytes: float | None = None,
        fallback_to_primary: bool = True,
        ban_time: float = 5.0,
        read_your_writes: float | None = None,
        balance: Balance = "round_robin",
    ) -> None:
        if isinstance(nodes, str) or not isinstance(nodes, Sequence) or not nodes:
            raise ConfigError("nodes", "must be a non-empty list of names")
        for name in nodes:
            if not isinstance(name, str) or not name:
                raise ConfigError("nodes", "every name must be a non-empty string", name)
        if len(set(nodes)) != len(nodes):
            raise ConfigError("nodes", "names must be unique")
        if reads not in ROUTES:
            raise ConfigError("reads", f"must be one of {', '.join(map(repr, ROUTES))}", reads)
        if balance not in BALANCES:
            raise ConfigError(
                "balance", f"must be one of {', '.join(map(repr, BALANCES))}", balance
            )
        _check_seconds("max_replica_lag", max_replica_lag, optional=True)
        _check_seconds("max_replica_lag_bytes", max_replica_lag_bytes, optional=True)
        _check_seconds("ban_time", ban_time)
        _check_seconds("read_your_writes", read_your_writes, optional=True)
        if not isinstance(fallback_to_primary, bool):
            raise ConfigError("fallback_to_primary", "must be a bool", fallback_to_primary)
        self.reads: Route = reads
        self.max_replica_lag = max_replica_lag
        self.max_replica_lag_bytes = max_replica_lag_bytes
        self.fallback_to_primary = fallback_to_primary
        self.ban_time = float(ban_time)
        self.read_your_writes = read_your_writes
        self.balance: Balance = balance
        self._nodes = {name: NodeState(name, i) for i, name in enumerate(nodes)}
        self._last_write: float | None = None
        self._turn = 0  # round-robin position, shared by every route
        #: Current anomalies (split brain), one sentence each; empty when fine.
        self.warnings: list[str] = []

    # -- what the probe and the callers report ------------------------------------

    def observe(
        self,
        name: str,
        role: Role,
        lag_seconds: float | None,
        lag_bytes: float | None,
        now: float,
        timeline: int | None = None,
    ) -> None:
        """A successful probe: ``name`` is ``role`` (lags only mean something
        for a standby). Lifts an expired ban."""
        node = self._node(name)
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        node.role = role
        node.healthy = role != "unknown"
        node.probed_at = now
        node.failures = 0
        standby = role == "standby"
        node.lag_seconds = _clean_lag(lag_seconds) if standby else None
        node.lag_bytes = _clean_lag(lag_bytes) if standby else None
        node.timeline = timeline if role == "primary" else None
        if node.banned_until is not None and now >= node.banned_until:
            node.banned_until = None
        self._refresh_warnings()

    def probe_failed(self, name: str, now: float) -> None:
        """The probe could not reach ``name`` (or it did not answer in time)."""
        node = self._node(name)
        node.healthy = False
        node.probed_at = now
        node.failures += 1
        self._ban(node, now)
        self._refresh_warnings()

    def note_error(self, name: str, sqlstate_or_kind: str | None, now: float) -> bool:
        """A caller's statement on ``name`` failed with this SQLSTATE (or kind:
        ``"disconnect"``, ``"timeout"`` for errors without one).

        Connection-class errors and timeouts ban the node from replica reads.
        A read-only error (25006) on a node believed primary means it was
        demoted: it serves no more writes until a probe says primary again.

        Returns:
            True if the node should be probed again now.
        """
        node = self._node(name)
        code = sqlstate_or_kind
        if code in _LOST_KINDS or is_disconnect(code):
            self._ban(node, now)
            return True
        if is_read_only(code) and node.role == "primary":
            node.role = "unknown"
            node.healthy = False
            self._refresh_warnings()
            return True
        return False

    def note_write(self, now: float) -> None:
        """A write committed: starts the read-your-writes window."""
        self._last_write = now

    def set_in_flight(self, name: str, count: int) -> None:
        """How many statements run on ``name`` now (for least-busy balancing)."""
        self._node(name).in_flight = max(0, int(count))

    # -- decisions -----------------------------------------------------------------

    def choose(self, route: Route, now: float) -> str:
        """The node that should serve ``route`` now (see the module rules).

        Raises:
            NoAvailableServer: no node can serve it; the message lists every
                node's state.
            ValueError: ``route`` is not "primary", "replica" or "any".
        """
        if route not in ROUTES:
            raise ValueError(f"route must be one of {', '.join(map(repr, ROUTES))}, not {route!r}")
        primary = self.primary()
        if route == "primary":
            if primary is None:
                raise self._unavailable(route, now, "no reachable node reports primary")
            return primary.name
        if primary is not None and self._in_write_window(now):
            return primary.name
        standbys = [n for n in self._nodes.values() if self._serves_reads(n)]
        eligible = [n for n in standbys if n.banned_until is None]
        if route == "any" and primary is not None:
            eligible.append(primary)
        if eligible:
            return self._pick(eligible).name
        if primary is not None and self.fallback_to_primary:
            return primary.name
        if standbys:
            # Every qualifying standby is banned: a ban must never become a
            # total outage (pgcat), so serve from them anyway.
            return self._pick(standbys).name
        why = "no healthy standby within the lag bound" + (
            "" if self.fallback_to_primary else " (fallback_to_primary is off)"
        )
        raise self._unavailable(route, now, why)

    def read_route(self) -> Route:
        """The route for reads that did not name one (the ``reads`` setting)."""
        return self.reads

    def primary(self) -> NodeState | None:
        """The node writes go to, or None (split-brain rule in the module doc)."""
        best: NodeState | None = None
        for node in self._nodes.values():
            if node.role != "primary" or not node.healthy:
                continue
            if best is None or _timeline(node) > _timeline(best):
                best = node  # ties keep the earlier-listed node
        return best

    @property
    def split_brain(self) -> bool:
        """Whether two or more reachable nodes claim to be primary."""
        return len(self._claimants()) > 1

    def node(self, name: str) -> NodeState:
        """The state of one node.

        Raises:
            KeyError: unknown name.
        """
        return self._node(name)

    @property
    def nodes(self) -> list[NodeState]:
        """Every node's state, in configured order."""
        return list(self._nodes.values())

    def describe(self, now: float) -> str:
        """One line per node: role, health, lag, ban (no secrets)."""
        return "; ".join(n.describe(now) for n in self._nodes.values())

    # -- internals -----------------------------------------------------------------

    def _node(self, name: str) -> NodeState:
        try:
            return self._nodes[name]
        except KeyError:
            raise KeyError(f"unknown node {name!r} (nodes: {', '.join(self._nodes)})") from None

    def _ban(self, node: NodeState, now: float) -> None:
        node.banned_until = max(node.banned_until or now, now + self.ban_time)

    def _serves_reads(self, node: NodeState) -> bool:
        """A healthy standby within the lag bounds (bans are the caller's call)."""
        if node.role != "standby" or not node.healthy:
            return False
        if self.max_replica_lag is not None and (
            node.lag_seconds is None or node.lag_seconds > self.max_replica_lag
        ):
            return False
        return self.max_replica_lag_bytes is None or (
            node.lag_bytes is not None and node.lag_bytes <= self.max_replica_lag_bytes
        )

    def _in_write_window(self, now: float) -> bool:
        return (
            self.read_your_writes is not None
            and self._last_write is not None
            and now - self._last_write < self.read_your_writes
        )

    def _pick(self, candidates: list[NodeState]) -> NodeState:
        turn = self._turn
        self._turn = turn + 1
        if self.balance == "least_busy":
            # The least loaded; among equals, take turns.
            low = min(n.in_flight for n in candidates)
            candidates = [n for n in candidates if n.in_flight == low]
        return candidates[turn % len(candidates)]

    def _claimants(self) -> list[NodeState]:
        return [n for n in self._nodes.values() if n.role == "primary" and n.healthy]

    def _refresh_warnings(self) -> None:
        claimants = self._claimants()
        if len(claimants) < 2:
            self.warnings = []
            return
        chosen = self.primary()
        assert chosen is not None
        names = ", ".join(
            f"{n.name} (timeline {n.timeline if n.timeline is not None else '?'})"
            for n in claimants
        )
        self.warnings = [
            f"split brain: {len(claimants)} nodes report primary: {names}; writes go to "
            f"{chosen.name!r} (highest timeline, then listed order). Fence the others."
        ]

    def _unavailable(self, route: Route, now: float, why: str) -> NoAvailableServer:
        return NoAvailableServer(f"no node can serve route {route!r}: {why} [{self.describe(now)}]")


def _timeline(node: NodeState) -> int:
    return -1 if node.timeline is None else node.timeline


def _clean_lag(value: float | None) -> float | None:
    """Lag as a non-negative finite number (clock skew can make it negative)."""
    if value is None or not math.isfinite(value):
        return None
    return max(0.0, float(value))


def _check_seconds(field: str, value: float | None, optional: bool = False) -> None:
    seconds(field, value, optional=optional)
