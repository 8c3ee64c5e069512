"""``${VAR}`` and ``${VAR:-default}`` in the values of a settings file.

A TOML file can take secrets and per-host values from the environment::

    [databases.orders]
    url = "postgresql://app@${DB_HOST:-localhost}/orders"
    password = "${ORDERS_PASSWORD}"

Only string values are expanded (never keys), in one pass: a variable's value
is taken literally, even when it contains ``${``. ``$${`` is a literal
``${``; a ``$`` not followed by ``{`` is an ordinary character (passwords
have them). An unset variable without a default is a `ConfigError` naming the
field and the variable — never a value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

__all__ = ["Expansion", "expand_variables"]

# ``$${`` (an escaped ``${``), or ``${`` up to the next ``}`` (or the end of
# the text: an unterminated reference, reported as such).
_REFERENCE = re.compile(r"\$\$\{|\$\{(?P<body>[^}]*)(?P<close>\}?)")
_BODY = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?$", re.DOTALL)
_FORMS = "write ${NAME} or ${NAME:-default} ($${ for a literal ${)"


@dataclass
class Expansion:
    """What `expand_variables` did: the data, and the variable names it read
    (``used``) or replaced by their default (``defaulted``) — names only."""

    data: Any
    used: set[str] = field(default_factory=set)
    defaulted: set[str] = field(default_factory=set)


def expand_variables(data: Any, lookup: Callable[[str], str | None], where: str) -> Expansion:
    """``data`` (parsed TOML) with every ``${...}`` in its string values replaced.

    ``lookup`` returns a variable's value, or None when it is unset; ``where``
    names the file in error messages. A default applies when the variable is
    unset or empty, as in the shell.

    Raises:
        ConfigError: a variable is unset and has no default, or a reference is
            malformed; the field is the dotted path of the value
            (``databases.orders.password``).
    """
    result = Expansion(None)
    result.data = _walk(data, (), lookup, where, result)
    return result


def _walk(
    value: Any,
    path: tuple[str, ...],
    lookup: Callable[[str], str | None],
    where: str,
    out: Expansion,
) -> Any:
    if isinstance(value, str):
        return _expand(value, ".".join(path) or "(top level)", lookup, where, out)
    if isinstance(value, Mapping):
        return {k: _walk(v, (*path, str(k)), lookup, where, out) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, (*path, str(i)), lookup, where, out) for i, v in enumerate(value)]
    return value


def _expand(
    text: str, field_path: str, lookup: Callable[[str], str | None], where: str, out: Expansion
) -> str:
    if "${" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        body, close = match.group("body"), match.group("close")
        if not close:
            raise ConfigError(field_path, f"unterminated ${{ in {where}: {_FORMS}")
        parsed = _BODY.match(body)
        if parsed is None:
            # The body is not quoted: it may be part of a secret.
            raise ConfigError(field_path, f"malformed ${{...}} in {where}: {_FORMS}")
        name, default = parsed.group("name"), parsed.group("default")
        if default is not None and "${" in default:
            raise ConfigError(field_path, f"${{{name}:-...}} in {where}: defaults do not nest")
        value = lookup(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise ConfigError(
                    field_path,
                    f"${{{name}}} in {where}: {name} is not set "
                    f"(set it, or give a default: ${{{name}:-...}})",
                )
            out.defaulted.add(name)
            return default
        out.used.add(name)
        return value

    return _REFERENCE.sub(replace, text)
