"""What `DatabaseManager.check` reports (shared by the sync and async managers)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CheckReport", "DatabaseCheck"]


@dataclass
class DatabaseCheck:
    """What `AsyncDatabaseManager.check` found about one database."""

    name: str
    target: str
    ok: bool = False
    reachable: bool = False
    latency_ms: float | None = None
    version: str | None = None
    compatible: bool | None = None
    tls: bool | None = None
    user: str | None = None
    database: str | None = None
    privileges_sufficient: bool | None = None
    privileges_missing: list[str] = field(default_factory=list)
    #: Whether the role can change anything (None: not checked); ``write_access`` says what.
    can_write: bool | None = None
    write_access: list[str] = field(default_factory=list)
    max_connections: int | None = None
    pool_max_size: int | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    """`AsyncDatabaseManager.check`'s answer: ``ok`` when every database is."""

    databases: list[DatabaseCheck]

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.databases)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "databases": [asdict(d) for d in self.databases]}
