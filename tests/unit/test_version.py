"""ServerVersion parsing and comparison."""

from __future__ import annotations

import pytest

from pgharbor.version import FEATURES, ServerVersion


@pytest.mark.parametrize(
    ("num", "major", "minor", "text"),
    [
        (150018, 15, 18, "15.18"),
        (180006, 18, 6, "18.6"),
        (90624, 9, 6, "9.6.24"),
        (130000, 13, 0, "13.0"),
    ],
)
def test_parts(num: int, major: int, minor: int, text: str) -> None:
    """major, minor and str come from server_version_num."""
    v = ServerVersion.from_num(num)
    assert (v.major, v.minor, str(v)) == (major, minor, text)


def test_compare_and_compatibility() -> None:
    """Versions order numerically; 13 is the default minimum."""
    assert ServerVersion(150018) > ServerVersion(130020)
    assert ServerVersion(130000).is_compatible()
    assert not ServerVersion(120022).is_compatible()
    assert ServerVersion(150018).is_compatible(16) is False
    with pytest.raises(ValueError):
        ServerVersion.from_num("0")


@pytest.mark.parametrize(
    ("feature", "since"),
    [
        ("drop_database_force", 13),
        ("idle_session_timeout", 14),
        ("in_hot_standby", 14),
        ("merge", 15),
        ("nulls_not_distinct", 15),
        ("reserved_connections", 16),
        ("pg_stat_checkpointer", 17),
        ("sslnegotiation", 17),
        ("uuidv7", 18),
    ],
)
def test_feature_flags(feature: str, since: int) -> None:
    """A feature is present from its major version on, absent before."""
    assert FEATURES[feature] == since
    assert ServerVersion(since * 10000).has(feature)
    assert ServerVersion(since * 10000 + 99).has(feature)
    assert not ServerVersion((since - 1) * 10000 + 99).has(feature)


def test_unknown_feature_is_an_error() -> None:
    """A misspelt feature raises ValueError naming the known ones."""
    with pytest.raises(ValueError, match=r"unknown server feature 'merj'.*merge"):
        ServerVersion(170000).has("merj")
