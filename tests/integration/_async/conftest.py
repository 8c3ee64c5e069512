"""Fixtures shared by the async integration tests (source of the generated
sync ones)."""

from __future__ import annotations

import pytest

from .helpers import DRIVERS


@pytest.fixture(params=DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    """Each driver of this flavour in turn."""
    return str(request.param)
