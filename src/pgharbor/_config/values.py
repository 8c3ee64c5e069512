"""Value rules shared by the settings models: text, numbers, durations, GUCs.

Python values are checked strictly (``"5"`` is not a number, ``True`` is not
a count); values read from TOML, ``.env`` or the environment arrive as text
and are parsed the way pydantic's lax mode parses them. The loaders mark such
text by wrapping it in `TextValue`, so each value carries its own origin.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, SecretStr

__all__ = [
    "GUC_NAME",
    "Count",
    "Duration",
    "Flag",
    "OptionalCount",
    "OptionalSeconds",
    "Seconds",
    "Secret",
    "Text",
    "TextValue",
    "check_text",
    "is_text",
    "normalize_encoding",
    "render_options",
    "schema_list",
]

#: Longest text accepted in any setting, in UTF-8 bytes (PostgreSQL's own cap
#: on an authentication token; nothing legitimate in a DSN comes close).
MAX_TEXT_BYTES = 65_535

#: PostgreSQL's NAMEDATALEN - 1: longer names are silently truncated by the server.
MAX_NAME_BYTES = 63

#: Largest value of a millisecond GUC (int32).
MAX_MS = 2**31 - 1

GUC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")

# PostgreSQL compares encoding names ignoring case and non-alphanumerics
# (clean_encoding_name); these are the client encodings it knows, plus aliases.
_ENCODING_NAMES = """
    big5 euccn eucjp eucjis2004 euckr euctw gb18030 gbk iso88595 iso88596 iso88597
    iso88598 johab koi8r koi8u latin1 latin2 latin3 latin4 latin5 latin6 latin7 latin8
    latin9 latin10 muleinternal sjis shiftjis2004 sqlascii uhc utf8 win866 win874
    win1250 win1251 win1252 win1253 win1254 win1255 win1256 win1257 win1258
    unicode alt koi8 win mskanji shiftjis windows932 windows936 windows949 windows950
    tcvn tcvn5712 vscii abc iso88591 iso88592 iso88593 iso88594 iso88599 iso885910
    iso885913 iso885914 iso885915 iso885916 cp866 cp874 cp1250 cp1251 cp1252 cp1253
    cp1254 cp1255 cp1256 cp1257 cp1258 cp936 cp949 cp950 cp932
"""
_ENCODINGS = frozenset(_ENCODING_NAMES.split())

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|ms|s|min|h|d)?\s*$")
_UNIT_MS = {
    "us": 0.001,
    "ms": 1.0,
    "s": 1000.0,
    "min": 60_000.0,
    "h": 3_600_000.0,
    "d": 86_400_000.0,
}
_NONE_WORDS = ("", "none", "null", "off")
_SIMPLE_IDENT = re.compile(r"^[a-z_][a-z0-9_$]*$")


class TextValue(str):
    """A string read from configuration text (TOML, ``.env``, environment).

    Numbers and flags written as text are parsed only when they carry this
    mark; the same string passed from Python is a type error.
    """

    __slots__ = ()


def is_text(value: Any) -> bool:
    """Whether ``value`` was read from configuration text."""
    return isinstance(value, TextValue)


def check_text(value: str) -> str:
    """Reject what libpq cannot carry: NUL, lone surrogates, megabytes."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    if size > MAX_TEXT_BYTES:
        raise ValueError(f"must be at most {MAX_TEXT_BYTES} bytes, got {size}")
    return value


def _text(value: Any) -> Any:
    # pydantic would turn bytes into str; an encoding guess is not ours to make.
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {type(value).__name__}")
    return check_text(value)


def _secret(value: Any) -> Any:
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not isinstance(raw, str):
        # The type name only: the value is a secret, even when it is wrong.
        raise ValueError(f"must be a string, got {type(raw).__name__}")
    check_text(raw)
    return value


def _number(value: Any, *, integer: bool) -> Any:
    kind = "an integer" if integer else "a number"
    if value is None:
        return None  # the field's type decides whether None is allowed
    if isinstance(value, bool):
        # bool is an int subclass: ``max_size=True`` is a bug, not 1.
        raise ValueError(f"must be {kind}, got bool")
    if isinstance(value, str):
        if not is_text(value):
            raise ValueError(f"must be {kind}, got str (only TOML/.env/environment text is parsed)")
        if value.strip().lower() in _NONE_WORDS:
            return None  # the field's type decides whether None is allowed
        return value.strip()
    if integer and not isinstance(value, int):
        raise ValueError(f"must be {kind}, got {type(value).__name__}")
    if not integer:
        if not isinstance(value, int | float):
            raise ValueError(f"must be {kind}, got {type(value).__name__}")
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"must be finite, got {value} (use None for no limit)")
    return value


def _count(value: Any) -> Any:
    return _number(value, integer=True)


def _seconds(value: Any) -> Any:
    value = _number(value, integer=False)
    if isinstance(value, str):
        # Lax text: pydantic parses "nan" and "inf" as floats; we do not.
        try:
            parsed = float(value)
        except ValueError:
            raise ValueError("must be a number of seconds") from None
        if not math.isfinite(parsed):
            raise ValueError("must be finite (use none for no limit)")
    return value


def _flag(value: Any) -> Any:
    if isinstance(value, bool) or is_text(value):
        return value  # pydantic parses "true", "off", "1"... from text
    raise ValueError(f"must be true or false, got {type(value).__name__}")


def duration_ms(value: Any) -> str:
    """Normalise seconds (a number) or a PostgreSQL duration to ``"<n>ms"``.

    A bare number is seconds, as everywhere in pgharbor; a unit (``us``,
    ``ms``, ``s``, ``min``, ``h``, ``d``) means that unit. 0 means off.
    """
    if isinstance(value, bool):
        raise ValueError("must be seconds or a duration like '5s', got bool")
    if isinstance(value, int | float):
        amount, unit = float(value), "s"
        if math.isnan(amount) or math.isinf(amount):
            raise ValueError(f"must be finite, got {value} (0 turns it off)")
        if amount < 0:
            raise ValueError(f"must be >= 0, got {value} (0 turns it off)")
    elif isinstance(value, str):
        match = _DURATION.match(check_text(value))
        if not match:
            raise ValueError(
                "must be seconds or a duration like '5s', '250ms', '2min' (units: us ms s min h d)"
            )
        amount, unit = float(match.group(1)), match.group(2) or "s"
    else:
        raise ValueError(f"must be seconds or a duration string, got {type(value).__name__}")
    exact = amount * _UNIT_MS[unit]
    ms = round(exact)
    if exact > 0 and ms == 0:
        raise ValueError("must be 0 (off) or at least 1ms")
    if ms > MAX_MS:
        raise ValueError(f"must be at most {MAX_MS}ms (about 24 days)")
    return f"{ms}ms"


Text = Annotated[str, BeforeValidator(_text)]
Secret = Annotated[SecretStr, BeforeValidator(_secret)]
Count = Annotated[int, BeforeValidator(_count)]
Seconds = Annotated[float, BeforeValidator(_seconds)]
# The validator sits outside the Optional, so text "none" can become None.
OptionalCount = Annotated[int | None, BeforeValidator(_count)]
OptionalSeconds = Annotated[float | None, BeforeValidator(_seconds)]
Duration = Annotated[str, BeforeValidator(duration_ms)]
Flag = Annotated[bool, BeforeValidator(_flag)]


def name_bytes(value: str, what: str = "") -> str:
    """Reject names the server would silently truncate."""
    if len(value.encode("utf-8")) > MAX_NAME_BYTES:
        prefix = f"{what} " if what else ""
        raise ValueError(f"{prefix}must be at most {MAX_NAME_BYTES} bytes (the server truncates)")
    return value


def schema_list(value: Any) -> list[str]:
    """``search_path`` as a list of schema names (a comma string is split)."""
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
        # A quoted name is taken literally ("My Schema"), with "" for a quote.
        value = [
            s[1:-1].replace('""', '"') if len(s) >= 2 and s[0] == s[-1] == '"' else s for s in items
        ]
    if not isinstance(value, list | tuple):
        raise ValueError("must be a list of schema names or a comma-separated string")
    names: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"schema names must be strings, got {type(item).__name__}")
        if not item:
            raise ValueError("schema names must not be empty")
        names.append(name_bytes(check_text(item), "schema names"))
    return names


def quote_schema(name: str) -> str:
    """A schema name as it must appear in a ``search_path`` value."""
    if name == "$user" or _SIMPLE_IDENT.match(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def escape_option(value: str) -> str:
    """Escape a value for libpq's ``options``: the server splits the string at
    whitespace unless escaped with a backslash, and ``\\\\`` is a backslash."""
    return "".join("\\" + ch if ch == "\\" or ch.isspace() else ch for ch in value)


def render_options(settings: list[tuple[str, str]]) -> str:
    """``-c name=value`` pairs for the ``options`` startup parameter."""
    for name, _ in settings:
        if not GUC_NAME.match(name):
            raise ValueError(f"invalid setting name {name!r}")
    return " ".join(f"-c {name}={escape_option(value)}" for name, value in settings)


def normalize_encoding(value: str) -> str:
    """A client encoding PostgreSQL knows, as given; else ValueError."""
    key = re.sub(r"[^a-z0-9]", "", value.lower())
    if key not in _ENCODINGS:
        raise ValueError("must be an encoding PostgreSQL supports, such as UTF8 or LATIN1")
    return value
