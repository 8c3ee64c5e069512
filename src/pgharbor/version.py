"""Server versions: parsed from ``server_version_num``, never from the banner."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["FEATURES", "MINIMUM_SUPPORTED", "ServerVersion"]

#: Oldest PostgreSQL major version pgharbor supports.
MINIMUM_SUPPORTED = 13

#: Server features by the major version that introduced them, for
#: `ServerVersion.has`. Only what pgharbor or its users branch on; names are
#: the setting, view or SQL keyword they are known by.
FEATURES: Mapping[str, int] = MappingProxyType(
    {
        "drop_database_force": 13,  # DROP DATABASE ... WITH (FORCE)
        "idle_session_timeout": 14,  # the setting
        "in_hot_standby": 14,  # reported to clients as a ParameterStatus
        "merge": 15,  # the MERGE statement
        "nulls_not_distinct": 15,  # UNIQUE NULLS NOT DISTINCT
        "security_invoker_views": 15,  # CREATE VIEW ... WITH (security_invoker)
        "pg_stat_io": 16,  # the view
        "reserved_connections": 16,  # the setting, and pg_use_reserved_connections
        "maintain_privilege": 17,  # GRANT MAINTAIN, the pg_maintain role
        "pg_stat_checkpointer": 17,  # the view (split from pg_stat_bgwriter)
        "sslnegotiation": 17,  # direct TLS negotiation (sslnegotiation=direct)
        "transaction_timeout": 17,  # the setting
        "uuidv7": 18,  # the uuidv7() function
    }
)


@dataclass(frozen=True, order=True, slots=True)
class ServerVersion:
    """A PostgreSQL server version, comparable and hashable.

    ``num`` is ``server_version_num`` (150018 for 15.18; 90624 for 9.6.24).
    """

    num: int

    @classmethod
    def from_num(cls, num: int | str) -> ServerVersion:
        """Build from ``server_version_num`` (an int, or its text as reported)."""
        value = int(num)
        if value <= 0:
            raise ValueError(f"invalid server_version_num: {num!r}")
        return cls(value)

    @property
    def major(self) -> int:
        """15 for 15.18; 9 for 9.6 (old scheme: major.minor.patch)."""
        return self.num // 10000

    @property
    def minor(self) -> int:
        """18 for 15.18; 6 for 9.6.24 (the second component before v10)."""
        return self.num % 10000 if self.major >= 10 else (self.num // 100) % 100

    def is_compatible(self, minimum: int = MINIMUM_SUPPORTED) -> bool:
        """Whether this server is at least major version ``minimum``."""
        return self.major >= minimum

    def has(self, feature: str) -> bool:
        """Whether this server has *feature*, a name from `FEATURES`.

        Raises:
            ValueError: An unknown feature name (never a silent False).
        """
        try:
            since = FEATURES[feature]
        except KeyError:
            known = ", ".join(sorted(FEATURES))
            raise ValueError(f"unknown server feature {feature!r} (known: {known})") from None
        return self.major >= since

    def __str__(self) -> str:
        if self.major >= 10:
            return f"{self.major}.{self.minor}"
        return f"{self.major}.{self.minor}.{self.num % 100}"
