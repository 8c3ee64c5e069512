"""Turn a pydantic `ValidationError` into one `ConfigError`, without secrets.

pydantic's own text echoes every input value; we build the message from the
error locations and rules only, add a "did you mean" for unknown keys, and
remove anything that looks like a password as a last line of defence.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterator
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError

from .._conninfo import redact, secrets_in
from ..errors import ConfigError

__all__ = ["collect_secrets", "to_config_error"]

_SECRET_KEYS = frozenset({"password", "sslpassword"})


def _walk(data: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(data, BaseModel):
        data = dict(data)
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _walk(v, str(k).lower())
    elif isinstance(data, list | tuple):
        for item in data:
            yield from _walk(item, key)
    else:
        yield key, data


def collect_secrets(data: Any) -> list[str]:
    """Every secret in raw settings data: password fields, URL userinfo, DSN
    ``password=`` values; longest first, so a secret containing another is
    replaced whole."""
    found: set[str] = set()
    for key, value in _walk(data):
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not isinstance(value, str) or not value:
            continue
        if key in _SECRET_KEYS or key.endswith("password"):
            found.add(value)
        else:
            found.update(secrets_in(value))
    return sorted(found, key=len, reverse=True)


def _unwrap(tp: Any) -> Any:
    """The model or dict type inside ``X | None`` and friends."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in get_args(tp):
            inner = _unwrap(arg)
            if inner is not None:
                return inner
        return None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    if origin is dict:
        return tp
    return None


def _known_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model that holds the key at ``loc``."""
    current: Any = root
    for part in loc[:-1]:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return []
            current = _unwrap(field.annotation)
        elif get_origin(current) is dict:
            current = _unwrap(get_args(current)[1])
        else:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _rule(error: Any, root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], str]:
    kind = error["type"]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, ConfigError):
        parts = tuple(cause.field.split("."))
        if loc[-len(parts) :] != parts:
            loc = loc + parts
        return loc, cause.rule.strip()
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _known_keys(root, loc), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return loc, f"unknown setting{hint}"
    if kind == "missing":
        return loc, "is required"
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    return loc, (message[:1].lower() + message[1:]).strip()


def to_config_error(
    exc: ValidationError,
    root: type[BaseModel],
    data: Any,
    prefix: tuple[str, ...] = (),
) -> ConfigError:
    """One `ConfigError` listing every problem of ``exc``, one per line.

    ``field`` is the dotted path of the first problem; the message names every
    path and rule. Secret values found in ``data`` never appear in it, and the
    error is meant to be raised outside the ``except`` block, so that the
    pydantic error (which holds the inputs) is not its ``__context__``.
    """
    lines: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc, rule = _rule(error, root, prefix + tuple(error["loc"]))
        path = ".".join(str(p) for p in loc) or root.__name__
        if (path, rule) not in lines:
            lines.append((path, rule))
    secrets = collect_secrets(data)
    # Paths are field names and keys; rules may quote a value: redact those.
    lines = [(path, redact(rule, secrets)) for path, rule in lines]
    first, *rest = lines or [(root.__name__, "invalid settings")]
    rule = first[1] + "".join(f"\n{path}: {text}" for path, text in rest)
    return ConfigError(first[0], rule)
