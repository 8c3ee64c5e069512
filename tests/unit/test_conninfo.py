"""Connection parameter helpers: defaults, redaction, descriptions."""

from __future__ import annotations

import pytest

from pgharbor._conninfo import describe, parse_conninfo, redact, with_defaults
from pgharbor.errors import ConfigError


def test_tcp_keepalives_and_user_timeout_are_on_by_default() -> None:
    """Unless set, connections get TCP keepalives, tcp_user_timeout and a connect timeout."""
    params = with_defaults({"host": "h"}, connect_timeout=10)
    assert params["keepalives"] == "1" and params["keepalives_idle"] == "30"
    assert params["tcp_user_timeout"] == "30000" and params["connect_timeout"] == "10"


def test_explicit_values_win_over_defaults() -> None:
    """The caller's own values are kept."""
    params = with_defaults(
        {"host": "h", "keepalives_idle": "5", "connect_timeout": "3"}, connect_timeout=10
    )
    assert params["keepalives_idle"] == "5" and params["connect_timeout"] == "3"
    assert with_defaults({}, connect_timeout=0.5)["connect_timeout"] == "2"  # libpq's floor


def test_redact_and_describe_never_show_secrets() -> None:
    """Passwords are removed from URLs, keyword strings and known values."""
    assert "pw" not in redact("postgresql://u:pw@h/db failed")
    assert "s3" not in redact("host=h password='s3 x' dbname=d")
    assert redact("error near hunter2", ["hunter2"]) == "error near ***"
    assert describe({"host": "h", "port": "6", "dbname": "d", "user": "u", "password": "x"}) == (
        "h:6/d as u"
    )


def test_parse_errors_carry_no_context() -> None:
    """A malformed string raises ConfigError with no chained libpq text."""
    with pytest.raises(ConfigError) as info:
        parse_conninfo("postgresql://u:SECRET@[::1/db")
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert "SECRET" not in str(info.value)
