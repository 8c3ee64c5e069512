"""Connection parameters: parse, validate, add safe defaults, describe and redact.

Every conninfo string pgharbor builds goes through psycopg's ``make_conninfo``
or stays a dict of keyword parameters, so no value can smuggle in a second
``sslmode=`` (libpq keeps the last duplicate).

Passwords are found by parsing, never guessed. In a URL the user information
runs to the **last** ``@`` before the host list, so a password written without
percent-encoding (``postgresql://u:p@ss w0rd@127.0.0.1/db``) means what its
author meant; pgharbor splits it off itself and hands libpq the URL *without*
it, so libpq's parse errors (which quote the text they choke on) cannot show
it. In keyword strings (``password='...'``) values are read with libpq's own
rules. Errors then say which rule was broken and quote none of the secret.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict

from .errors import ConfigError

__all__ = [
    "CONNINFO_ENUMS",
    "SECRET_KEYS",
    "describe",
    "mask_conninfo",
    "parse_conninfo",
    "redact",
    "secrets_in",
    "secrets_of",
    "validate_params",
    "with_defaults",
]

#: libpq parameters whose value is a secret (the last three: libpq >= 18).
SECRET_KEYS = (
    "password",
    "sslpassword",
    "oauth_client_secret",
    "scram_client_key",
    "scram_server_key",
)
_URL_PREFIXES = ("postgresql://", "postgres://")
# Something that looks like a URL with another scheme (or in upper case, which
# libpq does not take for a URL and would quote whole in its error).
_OTHER_SCHEME = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.-]*://")
# user:password@ in a URL inside free text, up to the last '@' before a space;
# and password=... in a keyword string.
_URL_USERINFO = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)\S*@", re.IGNORECASE)
_KW_PASSWORD = re.compile(
    r"((?:password|oauth_client_secret|scram_client_key|scram_server_key)\s*=\s*)"
    r"('(?:[^'\\]|\\.)*'|\S+)",
    re.IGNORECASE,
)
# One host of a URL's host list, with an optional port: a bracketed IPv6
# address or a name (percent-encoded socket directories included).
_HOST_ENTRY = re.compile(r"(?:\[[^\]\s/?@]*\]|[^\s@/?,:\[\]]*)(?::\d*)?")
_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")

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

#: libpq parameters whose value is one of a fixed set (libpq only checks them
#: at connect time; we check them at construction).
CONNINFO_ENUMS: dict[str, tuple[str, ...]] = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "target_session_attrs": (
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    ),
    "channel_binding": ("disable", "prefer", "require"),
    "load_balance_hosts": ("disable", "random"),
    "gssencmode": ("disable", "prefer", "require"),
    "sslnegotiation": ("postgres", "direct"),
    "sslcertmode": ("disable", "allow", "require"),
}
#: libpq parameters that must be whole numbers (libpq: "invalid integer value").
_INTEGERS = (
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
)
_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")


# -- redaction -------------------------------------------------------------------


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove passwords from ``text``: the known ``secrets`` (pass them; see
    `secrets_in`/`secrets_of`), then, as a last line of defence, a URL's
    userinfo password and ``password=`` values."""
    # Longest first, so a secret containing another is replaced whole.
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _URL_USERINFO.sub(r"\1***@", text)
    return _KW_PASSWORD.sub(r"\1***", text)


def secrets_of(params: Mapping[str, Any]) -> list[str]:
    """The secret values in parsed ``params`` (to redact from error text)."""
    return [str(params[k]) for k in SECRET_KEYS if params.get(k)]


def secrets_in(conninfo: str) -> list[str]:
    """Every secret in a conninfo string, as written and as meant (decoded).

    Found the way `parse_conninfo` reads the string, also when it is invalid:
    for a string that cannot be read to its end, everything from where a
    secret starts counts as secret. Longest first.
    """
    if not isinstance(conninfo, str):
        return []
    found: list[str] = []
    if conninfo.lstrip().startswith(_URL_PREFIXES):
        url = _split_url(conninfo.strip())
        found += [url.password_raw, *_query_secrets(url.tail)]
        try:
            found.append(_unquote(url.password_raw, "", ""))
        except ConfigError:
            pass
    else:
        pairs, rest, _ = _keywords(conninfo)
        for key, value, raw in pairs:
            if key in SECRET_KEYS:
                found += [value, raw]
        found.append(rest)
    return sorted({s for s in found if s}, key=lambda s: (-len(s), s))


# Old name, still used by the CLI.
_raw_secrets = secrets_in


def mask_conninfo(conninfo: str) -> str:
    """``conninfo`` with each secret value shown as ``***`` (for reprs and logs).

    URLs keep their user, host list, database and parameters.
    """
    stripped = conninfo.strip()
    if stripped.startswith(_URL_PREFIXES):
        url = _split_url(stripped)
        userinfo = quote(url.user_raw, safe="%") if url.user_raw else ""
        if url.password_raw:
            userinfo += ":***"
        head = f"{url.prefix}{userinfo}@" if url.has_userinfo else url.prefix
        tail, _, query = url.tail.partition("?")
        if query:
            items = (i.partition("=") for i in query.split("&"))
            tail += "?" + "&".join(k + s + ("***" if k in SECRET_KEYS else v) for k, s, v in items)
        return head + tail
    return redact(conninfo, secrets_in(conninfo))


# -- parsing ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Url:
    """A postgres URL cut at the end of its user information."""

    prefix: str
    has_userinfo: bool
    user_raw: str  # as written (percent-encoded or not)
    password_raw: str
    has_password: bool
    tail: str  # host list, then /dbname, then ?parameters


def _valid_tail(tail: str) -> bool:
    """Whether ``tail`` reads as ``hosts[/dbname][?params]``: hosts without
    '@', a database name without '@' (almost never has one), and as a whole
    something libpq parses (no spaces, ``key=value`` parameters it knows)."""
    end = len(tail)
    for stop in ("/", "?"):
        index = tail.find(stop)
        if index != -1:
            end = min(end, index)
    hosts, rest = tail[:end], tail[end:]
    if not all(_HOST_ENTRY.fullmatch(entry) for entry in hosts.split(",")):
        return False
    dbname = rest[1:].split("?", 1)[0] if rest.startswith("/") else ""
    if "@" in dbname:
        return False
    try:
        # For a wrong reading this text may hold a piece of the password:
        # libpq's error, which could quote it, is dropped.
        conninfo_to_dict(_URL_PREFIXES[0] + "@" + tail)
    except (psycopg.ProgrammingError, UnicodeDecodeError):
        return False
    return True


def _split_url(url: str) -> _Url:
    """Find where the user information of ``url`` ends.

    The first reading, left to right, whose rest is a valid host list: no user
    information at all, then each '@' that is the last one before the next
    '/' or '?'. So ``u:p@ss w0rd@h/db`` splits at the second '@' and
    ``u:p/ss@h/db`` (a '/' in the password) at its only one, while an '@' in
    the query (``h/db?application_name=a@b``) never ends a user name. With no
    valid reading, the last '@' of all (hiding the most, for the error).
    """
    prefix = next(p for p in _URL_PREFIXES if url.startswith(p))
    rest = url[len(prefix) :]
    readings: list[int | None] = [None]
    for index, char in enumerate(rest):
        if char == "@":
            after = re.split(r"[/?]", rest[index + 1 :], maxsplit=1)[0]
            if "@" not in after:
                readings.append(index)
    sep = next(
        (r for r in readings if _valid_tail(rest if r is None else rest[r + 1 :])),
        rest.rfind("@") if "@" in rest else None,
    )
    if sep is None:
        return _Url(prefix, False, "", "", False, rest)
    userinfo = rest[:sep]
    user, colon, password = userinfo.partition(":")
    return _Url(prefix, True, user, password, bool(colon), rest[sep + 1 :])


def _unquote(raw: str, field: str, what: str) -> str:
    """Percent-decode ``raw`` as libpq does; errors name ``what``, not the text."""
    if _PERCENT.search(raw):
        raise ConfigError(
            field,
            f"invalid connection string: a '%' in the {what} of the URL does not start a "
            "%XX escape (write a '%' as %25)",
        )
    data = re.sub(rb"%([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), raw.encode())
    if b"\x00" in data:
        raise ConfigError(field, f"invalid connection string: the {what} of the URL holds %00")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise ConfigError(
            field, f"invalid connection string: the {what} of the URL is not UTF-8 once decoded"
        ) from None


def _query_secrets(tail: str) -> list[str]:
    """Secret values in a URL's ``?key=value&...`` part, as written and decoded."""
    query = tail.partition("?")[2]
    found: list[str] = []
    for item in query.split("&"):
        key, _, value = item.partition("=")
        if key in SECRET_KEYS and value:
            found.append(value)
            try:
                found.append(_unquote(value, "", ""))
            except ConfigError:
                pass
    return found


def _keywords(text: str) -> tuple[list[tuple[str, str, str]], str, bool]:
    """Read ``key=value`` pairs with libpq's rules (conninfo_parse).

    Returns the ``(key, value, value as written)`` triples read; the text
    that could still hold a secret when reading stopped early (the rest of a
    secret's unterminated quoted value, or the words after a secret's
    unquoted value that are no ``key=value``: ``password=p@ss w0rd``); and
    whether reading stopped at such words.
    """
    pairs: list[tuple[str, str, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return pairs, "", False
        start = i
        while i < n and text[i] != "=" and not text[i].isspace():
            i += 1
        key = text[start:i]
        while i < n and text[i].isspace():
            i += 1
        if i >= n or text[i] != "=":
            # "missing '='": a word after a secret is probably more of it.
            after_secret = bool(pairs) and pairs[-1][0] in SECRET_KEYS
            return pairs, text[start:] if after_secret else "", after_secret
        i += 1
        while i < n and text[i].isspace():
            i += 1
        begin, value = i, []
        if i < n and text[i] == "'":
            i += 1
            while True:
                if i >= n:
                    return pairs, text[begin:] if key in SECRET_KEYS else "", False
                if text[i] == "\\" and i + 1 < n:
                    value.append(text[i + 1])
                    i += 2
                elif text[i] == "'":
                    i += 1
                    break
                else:
                    value.append(text[i])
                    i += 1
        else:
            while i < n and not text[i].isspace():
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                value.append(text[i])
                i += 1
        pairs.append((key, "".join(value), text[begin:i].strip()))


def parse_conninfo(conninfo: str, field: str = "conninfo") -> dict[str, str]:
    """Parse a URL or keyword DSN into libpq keyword parameters.

    In a URL the user information ends at the last '@' before the host list
    (see `_split_url`); user and password are percent-decoded here and the
    password never reaches libpq's parser.

    Raises:
        ConfigError: the string is malformed or names an unknown parameter;
            the message names the rule and quotes no secret.
    """
    if not isinstance(conninfo, str):
        raise ConfigError(field, f"must be a string, got {type(conninfo).__name__}")
    if "\x00" in conninfo:
        raise ConfigError(field, "must not contain NUL characters")
    stripped = conninfo.strip()
    if stripped.startswith(_URL_PREFIXES):
        return _parse_url(stripped, field)
    if _OTHER_SCHEME.match(conninfo):
        raise ConfigError(
            field, "invalid connection string: a URL starts with postgresql:// or postgres://"
        )
    pairs, _, after_secret = _keywords(conninfo)
    if after_secret:
        # libpq would quote the words after the secret: they are likely part of it.
        key = pairs[-1][0]
        raise ConfigError(
            field,
            f"invalid connection string: a {key} value ends at the first space unless "
            f"quoted: write {key}='...' (\\' for a quote, \\\\ for a backslash)",
        )
    return _libpq_parse(conninfo, field, secrets_in(conninfo))


def _parse_url(url: str, field: str) -> dict[str, str]:
    parts = _split_url(url)
    user = _unquote(parts.user_raw, field, "user name")
    password = _unquote(parts.password_raw, field, "password") if parts.has_password else ""
    # libpq gets the URL without the password, the user re-encoded, and
    # always a userinfo '@': libpq ends the userinfo at the *first* '@' before
    # a '/', which could be one in the parameters (``h?application_name=a@b``).
    head = parts.prefix + quote(user, safe="") + "@"
    in_query = _query_secrets(parts.tail)
    failed = False
    try:
        params = _libpq_parse(head + parts.tail, field, [parts.password_raw, password, *in_query])
    except ConfigError:
        if not in_query:
            raise
        failed = True
    if failed:
        # libpq's text could quote a piece of an unencoded secret in the query
        # (raised here, outside the except block, so it is not __context__).
        raise ConfigError(
            field,
            "invalid connection string: bad URL parameters (percent-encode '&', '=' "
            "and spaces in values, password included)",
        )
    if password and "password" not in params:
        params["password"] = password  # as libpq: a query password= wins
    return params


def _libpq_parse(conninfo: str, field: str, secrets: list[str]) -> dict[str, str]:
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        message = redact(str(exc).strip(), secrets)
    except UnicodeDecodeError:
        message = "a percent-encoded value is not UTF-8"
    else:
        return {k: str(v) for k, v in params.items() if v is not None}
    # Raised outside the ``except`` block: ``from None`` only hides libpq's
    # error from tracebacks, it would still be kept as __context__, and its
    # text can hold the password.
    raise ConfigError(field, f"invalid connection string: {message}")


# -- validation -----------------------------------------------------------------------


@functools.cache
def _libpq_keywords() -> frozenset[str]:
    """The connection parameters the installed libpq knows."""
    return frozenset(o.keyword.decode() for o in pq.Conninfo.get_defaults())


def _ports(port: str) -> list[str]:
    # Port lists are comma-separated, one per host (or a single one for all).
    ports = port.split(",")
    for item in ports:
        item = item.strip()
        if item == "":
            continue  # libpq: an empty entry means the default port
        if not item.isdigit() or not 1 <= int(item) <= 65535:
            raise ConfigError("port", f"must be an integer in 1..65535, got {item!r}")
    return ports


def validate_params(
    params: Any, field: str = "conninfo", extra: Collection[str] = (), driver: str = ""
) -> None:
    """Check libpq keyword parameters now, as libpq would only at connect time.

    Every key must be a parameter the installed libpq knows, or one of
    ``extra`` (arguments of the ``driver``'s own connect, such as psycopg's
    ``row_factory``: any value, passed as it is, not checked here); values
    must be text or numbers; ``sslmode`` and the other enumerations must hold
    one of their values, ports 1..65535 (as many as hosts), ``hostaddr`` IP
    addresses, ``connect_timeout`` and the keepalive settings whole numbers.
    Secret values are never quoted.

    Raises:
        ConfigError: ``field`` when ``params`` is not a mapping; else naming
            the offending keyword and the rule.
    """
    if not isinstance(params, Mapping):
        raise ConfigError(
            field,
            f"must be a mapping of libpq parameter names to values, got {type(params).__name__}",
        )
    known = _libpq_keywords()
    text: dict[str, str] = {}
    for key, value in params.items():
        if not isinstance(key, str):
            raise ConfigError(field, f"parameter names must be strings, got {type(key).__name__}")
        if key in extra:
            continue
        if key not in known:
            close = difflib.get_close_matches(key, sorted({*known, *extra}), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            also = f" nor an argument of the {driver} driver's connect" if extra else ""
            raise ConfigError(key, f"is not a libpq connection parameter{also}{hint}")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(key, f"must be text or a number, got {type(value).__name__}")
        text[key] = str(value)
        if "\x00" in text[key]:
            raise ConfigError(key, "must not contain NUL characters")
    for key, allowed in CONNINFO_ENUMS.items():
        if key in text and text[key] not in allowed:
            raise ConfigError(key, f"must be one of {', '.join(allowed)}; got {text[key]!r}")
    for key in _INTEGERS:
        if key in text and not _INTEGER.match(text[key]):
            raise ConfigError(key, f"must be a whole number, got {text[key]!r}")
    for address in text.get("hostaddr", "").split(","):
        try:
            if address.strip():
                ipaddress.ip_address(address.strip())
        except ValueError:
            raise ConfigError("hostaddr", f"must be IP addresses, got {address!r}") from None
    if "port" in text:
        ports = _ports(text["port"])
        hosts = max(len(text.get("host", "").split(",")), len(text.get("hostaddr", "").split(",")))
        if len(ports) > 1 and len(ports) != hosts:
            raise ConfigError("port", f"could not match {len(ports)} port numbers to {hosts} hosts")


# -- defaults and descriptions ------------------------------------------------------------


def with_defaults(
    params: dict[str, Any],
    *,
    connect_timeout: float,
    application_name: str | None = None,
) -> dict[str, Any]:
    """Copy of ``params`` with pgharbor's defaults where the caller set none."""
    out: dict[str, Any] = dict(TCP_DEFAULTS)
    if application_name:
        out["application_name"] = application_name
    out.update(params)
    if "connect_timeout" not in params:
        # libpq counts whole seconds and treats anything below 2 as 2.
        out["connect_timeout"] = str(max(2, round(connect_timeout)))
    return out


def describe(params: Mapping[str, Any]) -> str:
    """``host:port/dbname as user`` — for messages; never includes a secret."""
    host = params.get("host") or params.get("hostaddr") or "(default host)"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or params.get("user") or "(default db)"
    user = params.get("user")
    text = f"{host}:{port}/{dbname}"
    return f"{text} as {user}" if user else text
