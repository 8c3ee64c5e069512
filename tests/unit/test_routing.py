"""The pure routing core: roles, bans, lag, split brain, with a fake clock and
a Hypothesis state machine."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from pgharbor._policy.routing import Role, Router
from pgharbor.errors import ConfigError, NoAvailableServer


def router(**options: object) -> Router:
    """Nodes a (primary), b and c (standbys), all probed at t=0."""
    r = Router(["a", "b", "c"], **options)  # type: ignore[arg-type]
    r.observe("a", "primary", None, None, 0.0, timeline=1)
    r.observe("b", "standby", 0.0, 0.0, 0.0)
    r.observe("c", "standby", 0.0, 0.0, 0.0)
    return r


def test_nothing_is_chosen_before_the_first_probe() -> None:
    """Unprobed nodes serve nothing: the listed order is only a hint."""
    r = Router(["a", "b"])
    for route in ("primary", "replica", "any"):
        with pytest.raises(NoAvailableServer, match="not probed yet"):
            r.choose(route, 0.0)


def test_writes_go_to_the_probed_primary_and_reads_round_robin() -> None:
    """Writes to the primary; replica reads alternate over the standbys."""
    r = router()
    assert r.choose("primary", 1.0) == "a"
    assert [r.choose("replica", 1.0) for _ in range(4)] == ["b", "c", "b", "c"]
    assert {r.choose("any", 1.0) for _ in range(6)} == {"a", "b", "c"}
    assert r.read_route() == "primary"


def test_least_busy_prefers_the_idlest_standby() -> None:
    """least_busy picks the standby with fewest statements in flight."""
    r = router(balance="least_busy")
    r.set_in_flight("b", 3)
    r.set_in_flight("c", 1)
    assert {r.choose("replica", 1.0) for _ in range(4)} == {"c"}


def test_failed_probe_takes_the_primary_out_at_once() -> None:
    """No reachable primary: NoAvailableServer naming every node's state."""
    r = router()
    r.probe_failed("a", 1.0)
    with pytest.raises(NoAvailableServer) as info:
        r.choose("primary", 1.0)
    text = str(info.value)
    assert "a: primary, unreachable (1 failed probe(s))" in text
    assert "b: standby lag=0.00s/0B" in text
    # A promoted standby takes over as soon as the probe says so.
    r.observe("b", "primary", None, None, 1.5, timeline=2)
    assert r.choose("primary", 1.5) == "b"
    assert r.choose("replica", 1.5) == "c"


def test_replica_reads_fall_back_to_the_primary_or_raise() -> None:
    """No standby left: the primary serves reads, unless fallback is off."""
    for fallback in (True, False):
        r = router(fallback_to_primary=fallback)
        r.probe_failed("b", 1.0)
        r.probe_failed("c", 1.0)
        if fallback:
            assert r.choose("replica", 1.0) == "a"
        else:
            with pytest.raises(NoAvailableServer, match="fallback_to_primary is off"):
                r.choose("replica", 1.0)
        assert r.choose("any", 1.0) == "a"


def test_lag_bounds_exclude_a_standby_until_it_catches_up() -> None:
    """Seconds and bytes bounds; an unknown lag counts as too much."""
    r = router(max_replica_lag=0.5, max_replica_lag_bytes=1000)
    r.observe("b", "standby", 0.7, 10, 1.0)
    r.observe("c", "standby", 0.1, 5000, 1.0)
    assert r.choose("replica", 1.0) == "a"
    r.observe("b", "standby", 0.0, 0, 2.0)
    assert r.choose("replica", 2.0) == "b"
    r.observe("b", "standby", None, 0, 3.0)
    assert r.choose("replica", 3.0) == "a"


def test_bans_expire_and_need_a_successful_probe() -> None:
    """A banned standby returns after ban_time, at its next successful probe."""
    r = router(ban_time=5.0)
    assert r.note_error("b", "08006", 1.0) is True
    assert [r.choose("replica", 1.0) for _ in range(3)] == ["c", "c", "c"]
    r.observe("b", "standby", 0.0, 0.0, 3.0)  # too early: still banned
    assert r.node("b").banned
    assert r.choose("replica", 6.5) == "c"  # expired, but no probe since
    r.observe("b", "standby", 0.0, 0.0, 6.5)
    assert not r.node("b").banned
    assert {r.choose("replica", 6.5) for _ in range(2)} == {"b", "c"}


def test_all_standbys_banned_are_used_rather_than_nothing() -> None:
    """Bans never become a total outage: with no fallback, banned standbys serve."""
    r = router(fallback_to_primary=False)
    r.note_error("b", "disconnect", 1.0)
    r.note_error("c", "timeout", 1.0)
    assert r.choose("replica", 1.0) in {"b", "c"}
    # With the fallback on, the primary is preferred to banned standbys.
    r.fallback_to_primary = True
    assert r.choose("replica", 1.0) == "a"


def test_read_only_error_on_the_primary_stops_writes_until_reprobed() -> None:
    """25006 on the believed primary: no writes there until a probe says primary."""
    r = router()
    assert r.note_error("a", "25006", 1.0) is True
    with pytest.raises(NoAvailableServer):
        r.choose("primary", 1.0)
    r.observe("a", "primary", None, None, 1.1, timeline=1)
    assert r.choose("primary", 1.1) == "a"
    # On a standby, 25006 is what a write there gets: nothing to learn.
    assert r.note_error("b", "25006", 1.2) is False
    assert r.note_error("a", "23505", 1.2) is False
    assert r.note_error("a", None, 1.2) is False


def test_read_your_writes_window_sends_reads_to_the_primary() -> None:
    """Within read_your_writes seconds of a write, reads go to the primary."""
    r = router(read_your_writes=2.0, reads="replica")
    assert r.choose("replica", 1.0) == "b"
    r.note_write(1.0)
    assert r.choose("replica", 2.9) == "a"
    assert r.choose("any", 2.9) == "a"
    assert r.choose("replica", 3.0) in {"b", "c"}
    assert r.read_route() == "replica"


def test_split_brain_prefers_the_highest_timeline_then_listed_order() -> None:
    """Two primaries: the higher timeline wins, else the first listed; warned."""
    r = router()
    r.observe("c", "primary", None, None, 1.0, timeline=2)
    assert r.split_brain
    assert r.choose("primary", 1.0) == "c"
    assert "split brain: 2 nodes report primary" in r.warnings[0]
    assert "writes go to 'c'" in r.warnings[0]
    r.observe("c", "primary", None, None, 2.0, timeline=1)
    assert r.choose("primary", 2.0) == "a"
    r.observe("a", "primary", None, None, 3.0, timeline=None)
    assert r.choose("primary", 3.0) == "c"  # unknown timeline loses
    r.probe_failed("c", 4.0)
    assert not r.split_brain and r.warnings == []


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"reads": "standby"}, "reads"),
        ({"balance": "random"}, "balance"),
        ({"ban_time": -1}, "ban_time"),
        ({"ban_time": float("inf")}, "ban_time"),
        ({"max_replica_lag": "1"}, "max_replica_lag"),
        ({"read_your_writes": True}, "read_your_writes"),
        ({"fallback_to_primary": 1}, "fallback_to_primary"),
    ],
)
def test_bad_options_fail_fast_naming_the_field(options: dict[str, object], field: str) -> None:
    """Invalid settings raise ConfigError naming the field."""
    with pytest.raises(ConfigError, match=f"^{field}:"):
        Router(["a"], **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("nodes", [[], "ab", ["a", "a"], ["a", ""]])
def test_bad_node_lists_are_refused(nodes: object) -> None:
    """Node names: a non-empty list of unique non-empty strings."""
    with pytest.raises(ConfigError, match=r"^nodes:"):
        Router(nodes)  # type: ignore[arg-type]


def test_unknown_names_and_routes_are_errors() -> None:
    """Unknown node names raise KeyError, unknown routes ValueError."""
    r = router()
    with pytest.raises(KeyError, match="unknown node 'z'"):
        r.observe("z", "primary", None, None, 0.0)
    with pytest.raises(ValueError, match="route must be one of"):
        r.choose("write", 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="role must be one of"):
        r.observe("a", "leader", None, None, 0.0)  # type: ignore[arg-type]


NAMES = ["n0", "n1", "n2"]
BAN = 2.0


class RouterMachine(RuleBasedStateMachine):
    """Random probe results, errors and clock steps; the invariants say where
    statements may go. A shadow model keeps each node's latest probe result."""

    def __init__(self) -> None:
        super().__init__()
        self.router = Router(NAMES, ban_time=BAN, max_replica_lag=1.0)
        self.now = 0.0
        # name -> latest probe: (role, lag) or None when it failed / never ran
        self.latest: dict[str, tuple[Role, float] | None] = dict.fromkeys(NAMES)
        self.read_only_since_probe: set[str] = set()
        # name -> time of the last error or failed probe (the ban start)
        self.last_fault: dict[str, float] = {}

    @rule(
        name=st.sampled_from(NAMES),
        role=st.sampled_from(["primary", "standby"]),
        lag=st.floats(0, 3),
        timeline=st.none() | st.integers(1, 3),
    )
    def observe(self, name: str, role: Role, lag: float, timeline: int | None) -> None:
        self.router.observe(name, role, lag, lag, self.now, timeline)
        self.latest[name] = (role, lag)
        self.read_only_since_probe.discard(name)

    @rule(name=st.sampled_from(NAMES))
    def probe_failed(self, name: str) -> None:
        self.router.probe_failed(name, self.now)
        self.latest[name] = None
        self.last_fault[name] = self.now

    @rule(name=st.sampled_from(NAMES), code=st.sampled_from(["08006", "25006", "40001", None]))
    def note_error(self, name: str, code: str | None) -> None:
        self.router.note_error(name, code, self.now)
        if code == "08006":
            self.last_fault[name] = self.now
        elif code == "25006":
            self.read_only_since_probe.add(name)

    @rule(step=st.floats(0.01, 3.0))
    def tick(self, step: float) -> None:
        self.now += step

    @invariant()
    def writes_only_reach_a_probed_primary(self) -> None:
        healthy_primaries = [
            n
            for n, seen in self.latest.items()
            if seen is not None and seen[0] == "primary" and n not in self.read_only_since_probe
        ]
        try:
            chosen = self.router.choose("primary", self.now)
        except NoAvailableServer:
            assert not healthy_primaries, "raised although a healthy primary exists"
            return
        assert chosen in healthy_primaries

    @invariant()
    def reads_reach_a_fresh_standby_or_the_primary(self) -> None:
        try:
            chosen = self.router.choose("replica", self.now)
        except NoAvailableServer:
            return
        seen = self.latest[chosen]
        assert seen is not None, "a node whose latest probe failed got a read"
        role, lag = seen
        if role == "standby":
            assert lag <= 1.0
        else:
            assert chosen == self.router.choose("primary", self.now)

    @invariant()
    def bans_expire(self) -> None:
        for name in NAMES:
            node = self.router.node(name)
            if node.banned:
                assert node.banned_until is not None
                assert node.banned_until <= self.last_fault[name] + BAN + 1e-9
            elif name in self.last_fault:
                # Unbanned only by a successful probe after the ban ended.
                assert node.probed_at is not None
                assert node.probed_at >= self.last_fault[name] + BAN - 1e-9 or (
                    self.latest[name] is None
                )


TestRouterMachine = RouterMachine.TestCase
TestRouterMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
