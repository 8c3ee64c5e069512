"""Connection parameters: parse, add safe defaults, describe and redact.

Every conninfo string pgharbor builds goes through psycopg's ``make_conninfo``
or stays a dict of keyword parameters, so no value can smuggle in a second
``sslmode=`` (libpq keeps the last duplicate). Errors never carry a password:
libpq's own parse errors echo it for some malformed URLs, so they are redacted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .errors import ConfigError

__all__ = ["describe", "parse_conninfo", "redact", "secrets_of", "with_defaults"]

_SECRET_KEYS = ("password", "sslpassword")
# user:password@ in a URL, and password=... in a keyword string.
_URL_USERINFO = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)
_KW_PASSWORD = re.compile(r"((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)

#: TCP settings applied unless the caller chose their own: detect a dead peer
#: in about a minute instead of the kernel's two hours, and give up on data
#: the network swallows after 30 s instead of ~15 minutes of retransmits.
TCP_DEFAULTS = {
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove passwords from ``text``: known secrets, URL userinfo, ``password=``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _URL_USERINFO.sub(r"\1***@", text)
    return _KW_PASSWORD.sub(r"\1***", text)


def _raw_secrets(conninfo: str) -> list[str]:
    """Best-effort guess of secrets in a string libpq could not parse."""
    found = [m.group(2).strip("'") for m in _KW_PASSWORD.finditer(conninfo)]
    match = re.search(r"postgres(?:ql)?://[^:/@\s]*:([^@\s]*)@", conninfo, re.IGNORECASE)
    if match:
        found.append(match.group(1))
    # Longest first, so a secret containing another is replaced whole.
    return sorted((s for s in found if s), key=len, reverse=True)


def parse_conninfo(conninfo: str, field: str = "conninfo") -> dict[str, str]:
    """Parse a URL or keyword DSN into libpq keyword parameters.

    Raises:
        ConfigError: the string is malformed or names an unknown parameter;
            the message is libpq's, with every password removed.
    """
    if not isinstance(conninfo, str):
        raise ConfigError(field, f"must be a string, got {type(conninfo).__name__}")
    if "\x00" in conninfo:
        raise ConfigError(field, "must not contain NUL characters")
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        message = redact(str(exc), _raw_secrets(conninfo))
    else:
        return {k: str(v) for k, v in params.items() if v is not None}
    # Raised outside the ``except`` block: ``from None`` only hides libpq's
    # error from tracebacks, it would still be kept as __context__, and its
    # text can hold the password.
    raise ConfigError(field, f"invalid connection string: {message}")


def secrets_of(params: dict[str, Any]) -> list[str]:
    """The secret values in ``params`` (to redact from error text)."""
    return [str(params[k]) for k in _SECRET_KEYS if params.get(k)]


def with_defaults(
    params: dict[str, str],
    *,
    connect_timeout: float,
    application_name: str | None = None,
) -> dict[str, str]:
    """Copy of ``params`` with pgharbor's defaults where the caller set none."""
    out = dict(TCP_DEFAULTS)
    if application_name:
        out["application_name"] = application_name
    out.update(params)
    if "connect_timeout" not in params:
        # libpq counts whole seconds and treats anything below 2 as 2.
        out["connect_timeout"] = str(max(2, round(connect_timeout)))
    return out


def describe(params: dict[str, Any]) -> str:
    """``host:port/dbname as user`` — for messages; never includes a secret."""
    host = params.get("host") or params.get("hostaddr") or "(default host)"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or params.get("user") or "(default db)"
    user = params.get("user")
    text = f"{host}:{port}/{dbname}"
    return f"{text} as {user}" if user else text
