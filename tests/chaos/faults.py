"""The soak's fault loop: one fault after another, each followed by a calm.

Faults on the server (`PostgresServer`) reach every client; faults on the
link (`ChaosProxy`) only the clients that connect through the proxy. Each
fault's `Occurrence` records when it began and when the server (or the link)
served again: ``accepting`` is the moment the blocking control returned —
`restart` returns once the server accepts connections, `resume` and
`heal` once they have taken effect. A client's *recovery* is the time from
``accepting`` to its first successful operation.

With ``fsync=on`` a ``restart -m immediate`` takes about 3 s here (crash
recovery first fsyncs the whole data directory), a ``-m fast`` one about
0.3 s: the cycle has a short outage and a longer one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import monotonic

from pgharbor.testing.proxy import ChaosProxy
from pgharbor.testing.server import PostgresServer

from .soak import ClientSpec, Recorder

#: The cycle, in order.
FAULTS = (
    "restart-fast",
    "restart-immediate",
    "blackhole",
    "reset",
    "latency",
    "terminate",
    "sigstop",
)
PROXY_FAULTS = frozenset({"blackhole", "reset", "latency"})
BLACKHOLE = 2.0  # seconds the link is silent
LATENCY = (0.2, 2.0)  # 200 ms each way, for 2 s
SIGSTOP = 3.0  # seconds the server is stopped
#: After a fault: at least CALM_MIN s, until every client it reached has
#: succeeded again, at most CALM_MAX s (a recovery beyond it is censored).
CALM_MIN = 2.0
CALM_MAX = 8.0


@dataclass
class Occurrence:
    """One fault as it happened."""

    fault: str
    number: int
    started: float
    accepting: float = 0.0
    ended: float = 0.0
    affected: list[str] = field(default_factory=list)
    #: client -> seconds from ``accepting`` to its first success (None: none by ``ended``)
    recovery: dict[str, float | None] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.fault}#{self.number}"

    @property
    def outage(self) -> float:
        """Seconds from the fault to the server (or link) serving again."""
        return self.accepting - self.started


def inject(fault: str, pg: PostgresServer, proxy: ChaosProxy) -> None:
    """Apply ``fault``; return once the server (or the link) serves again."""
    if fault == "restart-fast":
        pg.restart("fast")
    elif fault == "restart-immediate":
        pg.restart("immediate")
    elif fault == "blackhole":
        proxy.blackhole()
        time.sleep(BLACKHOLE)
        proxy.heal()
    elif fault == "reset":
        proxy.reset_all()
    elif fault == "latency":
        proxy.latency(LATENCY[0])
        time.sleep(LATENCY[1])
        proxy.heal()
    elif fault == "terminate":
        pg.terminate_backends()  # every client backend, ours or not
    elif fault == "sigstop":
        pg.pause()
        try:
            time.sleep(SIGSTOP)
        finally:
            pg.resume()
    else:  # pragma: no cover - a typo in FAULTS
        raise ValueError(fault)


def run_faults(
    pg: PostgresServer,
    proxy: ChaosProxy,
    rec: Recorder,
    specs: Sequence[ClientSpec],
    until: float,
    log: Callable[[str], None] = print,
) -> list[Occurrence]:
    """Cycle through `FAULTS` until ``until`` (monotonic); what happened."""
    done: list[Occurrence] = []
    counts: dict[str, int] = {}
    n = 0
    while monotonic() < until:
        fault = FAULTS[n % len(FAULTS)]
        n += 1
        counts[fault] = counts.get(fault, 0) + 1
        occ = Occurrence(fault, counts[fault], monotonic())
        occ.affected = [s.name for s in specs if s.via_proxy or fault not in PROXY_FAULTS]
        rec.phase = occ.label
        inject(fault, pg, proxy)
        occ.accepting = monotonic()
        reached = [s for s in specs if s.name in occ.affected]
        while True:
            calm = monotonic() - occ.accepting
            if calm >= CALM_MAX:
                break
            if calm >= CALM_MIN and all(
                rec.first_success(s, occ.accepting) is not None for s in reached
            ):
                break
            time.sleep(0.02)
        occ.ended = monotonic()
        for s in reached:
            first = rec.first_success(s, occ.accepting)
            occ.recovery[s.name] = None if first is None else first - occ.accepting
        done.append(occ)
        log(
            f"soak: {occ.label}: outage {occ.outage:.2f} s, recovery "
            + ", ".join(f"{k} {_ms(v)}" for k, v in occ.recovery.items())
        )
    return done


def _ms(seconds: float | None) -> str:
    return "none" if seconds is None else f"{seconds * 1e3:.0f} ms"
