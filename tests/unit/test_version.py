"""ServerVersion parsing and comparison."""

from __future__ import annotations

import pytest

from pgharbor.version import ServerVersion


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
