"""What the history says and what to run: status, drift, and plans up or down.

Pure: the shell reads the history table into `Applied` rows and the files
into `Migration` objects; everything here is decided from those two lists.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Literal

from ..errors import MigrationDrift, MigrationError
from .files import Migration, Part

__all__ = [
    "Applied",
    "MigrationPlan",
    "MigrationStatus",
    "MigrationStep",
    "current_version",
    "plan_down",
    "plan_up",
    "status",
]

State = Literal["applied", "pending", "failed", "changed", "missing", "out-of-order"]


@dataclass(frozen=True, slots=True)
class Applied:
    """One row of the history table."""

    version: int
    name: str
    checksum: str
    success: bool
    statements_done: int = 0
    error: str | None = None
    applied_at: datetime.datetime | None = None
    applied_by: str | None = None
    duration_ms: float | None = None


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """Where one migration stands.

    ``state`` is one of:

    - ``applied``: in the history, its file unchanged;
    - ``pending``: not applied, newer than every applied one;
    - ``out-of-order``: not applied but older than the newest applied one
      (a branch merged late); ``up`` refuses it unless ``out_of_order``;
    - ``changed``: applied, but its file's checksum differs (an edit);
    - ``missing``: applied, but no file has its version any more;
    - ``failed``: a migration that ran outside a transaction stopped halfway
      (or its process was killed): part of it is in; ``repair`` after fixing.
    """

    version: int
    name: str
    state: State
    applied_at: datetime.datetime | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, object]:
        """Plain values, for JSON."""
        return {
            "version": self.version,
            "name": self.name,
            "state": self.state,
            "applied_at": self.applied_at.isoformat() if self.applied_at else None,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class MigrationStep:
    """One migration to apply (``up``) or roll back (``down``)."""

    version: int
    name: str
    direction: Literal["up", "down"]
    file: str
    statements: int
    transactional: bool
    notes: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """``0003_add_index``: version and name."""
        return f"{self.version:04d}_{self.name}"

    def to_dict(self) -> dict[str, object]:
        """Plain values, for JSON."""
        return {
            "version": self.version,
            "name": self.name,
            "direction": self.direction,
            "file": self.file,
            "statements": self.statements,
            "transactional": self.transactional,
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    """Steps in the order they run, from version ``current`` to ``target``
    (None: no migration applied). After `up`/`down`, the steps this process
    ran (another deployer may have run the rest)."""

    direction: Literal["up", "down"]
    current: int | None
    target: int | None
    steps: tuple[MigrationStep, ...] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        return bool(self.steps)

    def to_dict(self) -> dict[str, object]:
        """Plain values, for JSON."""
        return {
            "direction": self.direction,
            "current": self.current,
            "target": self.target,
            "steps": [s.to_dict() for s in self.steps],
        }


def _step(m: Migration, part: Part, direction: Literal["up", "down"]) -> MigrationStep:
    notes = []
    if not part.transactional:
        notes.append(
            f"runs outside a transaction ({part.why_not}): each statement commits on "
            "its own; a failure halfway leaves it marked failed until repaired"
        )
    if not part.statements:
        notes.append("no statements")
    return MigrationStep(
        m.version,
        m.name,
        direction,
        part.file,
        len(part.statements),
        part.transactional,
        tuple(notes),
    )


def status(migrations: list[Migration], history: list[Applied]) -> list[MigrationStatus]:
    """Every version the files or the history know, in version order."""
    files = {m.version: m for m in migrations}
    rows = {a.version: a for a in history}
    newest = max((a.version for a in history if a.success), default=None)
    result = []
    for version in sorted(files.keys() | rows.keys()):
        m, a = files.get(version), rows.get(version)
        if a is None:
            assert m is not None
            late = newest is not None and version < newest
            result.append(MigrationStatus(version, m.name, "out-of-order" if late else "pending"))
        elif not a.success:
            detail = f"stopped after {a.statements_done} statement(s)"
            if a.error:
                detail += f": {a.error}"
            result.append(MigrationStatus(version, a.name, "failed", a.applied_at, detail))
        elif m is None:
            result.append(MigrationStatus(version, a.name, "missing", a.applied_at, "no file"))
        elif m.checksum != a.checksum:
            result.append(
                MigrationStatus(
                    version,
                    m.name,
                    "changed",
                    a.applied_at,
                    "the file changed since it was applied",
                )
            )
        else:
            result.append(MigrationStatus(version, m.name, "applied", a.applied_at))
    return result


def current_version(history: list[Applied]) -> int | None:
    """The newest successfully applied version, or None."""
    return max((a.version for a in history if a.success), default=None)


def _refuse_failed(states: list[MigrationStatus]) -> None:
    failed = [s for s in states if s.state == "failed"]
    if failed:
        lines = [f"{s.version:04d}_{s.name}: {s.detail}" for s in failed]
        raise MigrationError(
            "an earlier run stopped halfway through a migration that runs outside a "
            "transaction, so part of it is applied: "
            + "; ".join(lines)
            + ". Check the database, finish or undo it by hand, then run repair"
        )


def plan_up(
    migrations: list[Migration],
    history: list[Applied],
    to: int | None = None,
    *,
    allow_drift: bool = False,
    out_of_order: bool = False,
) -> MigrationPlan:
    """The migrations ``up`` applies, oldest first, up to version ``to``.

    Raises:
        MigrationError: a failed migration waits for ``repair``.
        MigrationDrift: an applied file changed or disappeared (unless
            ``allow_drift``), or a pending one is older than the newest
            applied (unless ``out_of_order``).
    """
    states = status(migrations, history)
    _refuse_failed(states)
    drift = [s for s in states if s.state in ("changed", "missing")]
    if drift and not allow_drift:
        problems = [f"{s.version:04d}_{s.name}: {s.state} ({s.detail})" for s in drift]
        raise MigrationDrift(
            "applied migrations differ from the files: "
            + "; ".join(problems)
            + ". Restore the files, or accept them as they are with repair "
            "(or allow_drift / --allow-drift for this run)",
            problems,
        )
    late = [s for s in states if s.state == "out-of-order"]
    if late and not out_of_order:
        problems = [f"{s.version:04d}_{s.name}" for s in late]
        raise MigrationDrift(
            "pending migrations are older than the newest applied one: "
            + ", ".join(problems)
            + ". Renumber them, or apply them anyway with out_of_order / --out-of-order",
            problems,
        )
    files = {m.version: m for m in migrations}
    pending = [
        files[s.version]
        for s in states
        if s.state in ("pending", "out-of-order") and (to is None or s.version <= to)
    ]
    current = current_version(history)
    steps = tuple(_step(m, m.up, "up") for m in pending)
    target = max([current or 0, *(s.version for s in steps)]) if steps else current
    return MigrationPlan("up", current, target, steps)


def plan_down(
    migrations: list[Migration],
    history: list[Applied],
    to: int | None = None,
    *,
    steps: int | None = None,
    allow_drift: bool = False,
) -> MigrationPlan:
    """The migrations ``down`` rolls back, newest first: every applied one
    above version ``to``, or the newest ``steps`` (default 1).

    Raises:
        MigrationError: a failed migration waits for ``repair``; one to roll
            back has no down part or no file.
        MigrationDrift: one to roll back changed since it was applied
            (unless ``allow_drift``).
    """
    if to is not None and steps is not None:
        raise MigrationError("give either a version to roll back to, or a number of steps")
    if steps is not None and steps < 1:
        raise MigrationError("steps must be at least 1")
    states = status(migrations, history)
    _refuse_failed(states)
    applied = sorted((a for a in history if a.success), key=lambda a: a.version, reverse=True)
    if to is not None:
        chosen = [a for a in applied if a.version > to]
    else:
        chosen = applied[: steps or 1]
    files = {m.version: m for m in migrations}
    by_version = {s.version: s for s in states}
    result = []
    for a in chosen:
        m = files.get(a.version)
        if m is None:
            raise MigrationError(f"{a.version:04d}_{a.name}: applied, but no file to roll it back")
        if m.down is None:
            raise MigrationError(
                f"{m.file}: has no down part, so version {m.version} cannot be rolled back "
                "(add a .down.sql file or a '-- migrate:down' section)"
            )
        if by_version[a.version].state == "changed" and not allow_drift:
            raise MigrationDrift(
                f"{m.file}: changed since it was applied; its down part may not undo what "
                "ran. Restore it, or allow_drift / --allow-drift",
                [f"{m.version:04d}_{m.name}: changed"],
            )
        result.append(_step(m, m.down, "down"))
    current = current_version(history)
    remaining = [a.version for a in applied if a not in chosen]
    return MigrationPlan("down", current, max(remaining, default=None), tuple(result))
