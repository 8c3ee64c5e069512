"""Server versions: parsed from ``server_version_num``, never from the banner."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MINIMUM_SUPPORTED", "ServerVersion"]

#: Oldest PostgreSQL major version pgharbor supports.
MINIMUM_SUPPORTED = 13


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

    def __str__(self) -> str:
        if self.major >= 10:
            return f"{self.major}.{self.minor}"
        return f"{self.major}.{self.minor}.{self.num % 100}"
