"""`HarborSettings`: named databases, profiles, and the sources settings come from.

Precedence, lowest first: defaults (then the profile's) < TOML file <
``.env`` file < environment variables < keyword arguments. With a TOML file,
the file names the databases; variables only override their settings. The
database ``default`` also reads ``DATABASE_URL`` and the ``POSTGRES_*``
names (see `EnvSource`); TOML values may say ``${VAR}`` (see `expand`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .._conninfo import parse_conninfo
from ..errors import ConfigError
from .database import OPTIONS_FIELDS, DatabaseSettings, _identity
from .expand import expand_variables
from .problems import to_config_error
from .values import TextValue

__all__ = ["PROFILES", "HarborSettings", "load_settings"]

logger = logging.getLogger("pgharbor.config")

Profile = Literal["development", "test", "production"]

#: Defaults each profile adds to every database, for settings no source set.
#: ``min_size``/``max_size`` are added only when neither is set.
PROFILES: dict[str, dict[str, Any]] = {
    "development": {"min_size": 1, "max_size": 5},
    "test": {
        "min_size": 0,
        "max_size": 2,
        "timeout": 5.0,
        "connect_timeout": 3.0,
        "check_timeout": 2.0,
        "leak_threshold": 10.0,
        "statement_timeout": "30s",
        "lock_timeout": "5s",
    },
    "production": {
        "min_size": 5,
        "max_size": 10,
        "leak_threshold": 60.0,
        "idle_in_transaction_session_timeout": "10min",
        "sslmode": "require",
    },
}

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_ENV_PREFIX = "PGHARBOR_"
#: The de-facto variable (Heroku, Render, Railway, dj-database-url...): the
#: ``url`` of the database named ``default``.
DATABASE_URL = "DATABASE_URL"
#: The original design's variables that say where to connect, for the
#: database named ``default``; ignored when ``DATABASE_URL`` is set, which
#: says it whole (docker-compose files often hold both, the ``POSTGRES_*``
#: ones describing the server image's superuser).
_POSTGRES_ENDPOINT = {
    "POSTGRES_HOST": "host",
    "POSTGRES_PORT": "port",
    "POSTGRES_DB": "dbname",
    "POSTGRES_USER": "user",
    "POSTGRES_PASSWORD": "password",
    "POSTGRES_SSL_MODE": "sslmode",
}
#: The original design's variables for the database ``default``, all of them.
_POSTGRES = {**_POSTGRES_ENDPOINT, "POSTGRES_CONNECT_TIMEOUT": "connect_timeout"}
_POSTGRES_SIZES = ("POSTGRES_POOL_SIZE", "POSTGRES_MAX_OVERFLOW")
_STRUCTURED = ("replicas", "search_path", "server_settings")


def _plain(value: Any) -> Any:
    """A model as the dict of the fields that were set (for layering)."""
    if isinstance(value, BaseModel):
        return {k: _plain(getattr(value, k)) for k in value.model_fields_set}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _find(names: Mapping[str, Any], name: str) -> str | None:
    """The key of ``names`` equal to ``name`` ignoring case."""
    folded = name.casefold()
    return next((k for k in names if isinstance(k, str) and k.casefold() == folded), None)


def _merge(
    base: Mapping[str, Any], top: Mapping[str, Any], *, named: bool = False
) -> dict[str, Any]:
    """Deep merge; in the ``databases`` table, names match ignoring case."""
    out = dict(base)
    for key, value in top.items():
        if named and isinstance(key, str):
            key = _find(out, key) or key
        old = out.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            out[key] = _merge(old, value, named=(key == "databases" and not named))
        else:
            out[key] = value
    return out


def _as_text(value: Any) -> Any:
    """Mark every string of parsed configuration text as `TextValue`."""
    if isinstance(value, str):
        return TextValue(value)
    if isinstance(value, Mapping):
        return {k: _as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_text(v) for v in value]
    return value


class EnvSource(PydanticBaseSettingsSource):
    """Settings from a mapping of environment variables (default ``os.environ``).

    ``PGHARBOR_PROFILE``; ``PGHARBOR_<NAME>__<SETTING>`` (nested tables with
    more ``__``: ``PGHARBOR_MAIN__RETRY__MAX_ATTEMPTS``); and, for the
    database ``default``, ``DATABASE_URL`` and the original ``POSTGRES_*``
    names. Names are matched ignoring case; database names read from
    variables are lower case. ``PGHARBOR_`` variables without ``__`` (other
    than the profile) are not ours and are ignored.

    For ``default``, from highest to lowest: ``PGHARBOR_DEFAULT__<SETTING>``;
    ``DATABASE_URL`` (its ``url``); ``POSTGRES_*`` — of which the endpoint
    ones (``HOST``, ``PORT``, ``DB``, ``USER``, ``PASSWORD``, ``SSL_MODE``)
    are ignored when ``DATABASE_URL`` is set.
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.environ = environ

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        """Unused: `__call__` reads the whole mapping at once."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        """The settings found, as a nested dict of `TextValue`s."""
        out: dict[str, Any] = {}
        databases: dict[str, Any] = {}
        default = self._postgres()
        if default:
            databases["default"] = default
        for key, raw in sorted(self.environ.items()):
            upper = key.upper()
            if upper == _ENV_PREFIX + "PROFILE":
                out["profile"] = TextValue(raw)
                continue
            if not upper.startswith(_ENV_PREFIX) or "__" not in upper:
                continue
            name, *path = upper[len(_ENV_PREFIX) :].lower().split("__")
            if not name or not all(path):
                raise ConfigError(key, "expected PGHARBOR_<NAME>__<SETTING>")
            table = databases.setdefault(name, {})
            for part in path[:-1]:
                table = table.setdefault(part, {})
                if not isinstance(table, dict):
                    raise ConfigError(key, f"{part!r} is not a table")
            table[path[-1]] = _decode(key, path[-1], raw)
        if databases:
            out["databases"] = databases
        return out

    def _postgres(self) -> dict[str, Any]:
        found = {
            k.upper(): v
            for k, v in self.environ.items()
            if k.upper().startswith("POSTGRES_") or k.upper() == DATABASE_URL
        }
        names = _POSTGRES
        out: dict[str, Any] = {}
        if found.get(DATABASE_URL, "").strip():
            names = {k: v for k, v in _POSTGRES.items() if k not in _POSTGRES_ENDPOINT}
            out["url"] = TextValue(found[DATABASE_URL])
        out.update({field: TextValue(found[var]) for var, field in names.items() if var in found})
        size = _whole(found, "POSTGRES_POOL_SIZE")
        overflow = _whole(found, "POSTGRES_MAX_OVERFLOW")
        # SQLAlchemy's meaning: pool_size connections kept, overflow on demand.
        if size is not None:
            out["min_size"] = size
            out["max_size"] = size + (overflow or 0)
        elif overflow is not None:
            out["max_size"] = 5 + overflow
        return out


def _owner(key: str) -> str | None:
    """The database (lower case) variable ``key`` configures, ``""`` for
    ``PGHARBOR_PROFILE``, None when it is no setting of ours."""
    upper = key.upper()
    if upper == _ENV_PREFIX + "PROFILE":
        return ""
    if upper.startswith(_ENV_PREFIX) and "__" in upper:
        return upper[len(_ENV_PREFIX) :].split("__", 1)[0].lower()
    if upper in _POSTGRES or upper in _POSTGRES_SIZES or upper == DATABASE_URL:
        return "default"
    return None


def _whole(found: Mapping[str, str], var: str) -> int | None:
    if var not in found:
        return None
    text = found[var].strip()
    if not text.isdigit():
        raise ConfigError(var, "must be a whole number >= 0")
    return int(text)


def _decode(key: str, field: str, raw: str) -> Any:
    """One variable's value: JSON for lists and tables, else text."""
    if field in _STRUCTURED and raw.lstrip()[:1] in ("[", "{"):
        try:
            return _as_text(json.loads(raw))
        except ValueError:
            pass
        # Raised outside the except block: the JSON error quotes the value.
        raise ConfigError(key, "is not valid JSON")
    if field == "replicas":
        return [TextValue(url) for url in raw.split()]
    return TextValue(raw)


def _read_toml(path: str | Path) -> dict[str, Any]:
    """The file's tables as parsed, before ``${VAR}`` expansion."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(str(path), "settings file not found")
    try:
        data = TomlConfigSettingsSource(HarborSettings, toml_file=file)()
    except tomllib.TOMLDecodeError as exc:
        error = ConfigError(str(path), f"invalid TOML: {exc}")
    else:
        return dict(data)
    raise error


def _read_dotenv(path: str | Path) -> dict[str, str]:
    source = DotEnvSettingsSource(HarborSettings, env_file=Path(path), case_sensitive=True)
    return {k: v for k, v in source.env_vars.items() if v is not None}


class HarborSettings(BaseSettings):
    """The named databases an application uses, and the profile they share.

    Built from Python values (strict: ``"5"`` is not a number); to read the
    TOML file, ``.env`` and the environment as well, use `load_settings`.
    Invalid settings raise `pgharbor.ConfigError` with dotted field paths
    such as ``databases.source.max_size``.
    """

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    profile: Profile = "development"
    databases: dict[str, DatabaseSettings] = Field(default_factory=dict)

    def __init__(self, /, **values: Any) -> None:
        try:
            super().__init__(**values)
            return
        except ValidationError as exc:
            error = to_config_error(exc, HarborSettings, values)
        raise error  # outside except: the inputs stay out of __context__

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments only: `load_settings` layers the other sources."""
        return (init_settings,)

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or not isinstance(data.get("databases"), Mapping):
            return data
        profile = PROFILES.get(str(data.get("profile", "development")), {})
        databases: dict[Any, Any] = {}
        for name, raw in data["databases"].items():
            if not isinstance(name, str) or not _NAME.match(name):
                raise ConfigError(
                    f"databases.{name}", "names are letters, digits, _ and -, not starting with one"
                )
            if _find(databases, name) is not None:
                raise ConfigError(f"databases.{name}", "duplicate name (names ignore case)")
            databases[name] = _with_profile(_plain(raw), profile)
        return {**data, "databases": databases}

    @model_validator(mode="after")
    def _no_crossed_roles(self) -> HarborSettings:
        primaries: dict[tuple[str, str], str] = {}
        for name, db in self.databases.items():
            main = db.primary.get_secret_value() if db.primary else None
            ident = _identity(parse_conninfo(main)) if main else _identity(db.conninfo_params())
            if ident:
                primaries[ident] = name
        for name, db in self.databases.items():
            for index, url in enumerate(db.replicas):
                ident = _identity(parse_conninfo(url.get_secret_value()))
                other = primaries.get(ident) if ident else None
                if other is not None and other != name:
                    raise ConfigError(
                        f"databases.{name}.replicas.{index}",
                        f"is the primary of database {other!r}",
                    )
        return self

    def database(self, name: str | None = None) -> DatabaseSettings:
        """The settings of database ``name`` (ignoring case).

        Without a name: the only database, or the one named ``default``.

        Raises:
            ConfigError: no such database, or no name and several databases.
        """
        known = ", ".join(sorted(self.databases)) or "none"
        if name is None:
            if len(self.databases) == 1:
                return next(iter(self.databases.values()))
            name = "default"
            if _find(self.databases, name) is None:
                raise ConfigError("databases", f"name the database to use (configured: {known})")
        key = _find(self.databases, name)
        if key is None:
            raise ConfigError(f"databases.{name}", f"is not configured (configured: {known})")
        return self.databases[key]

    def pool_kwargs(self, name: str | None = None) -> dict[str, Any]:
        """`DatabaseSettings.pool_kwargs` of database ``name``, with the pool named after it."""
        db = self.database(name)
        key = next(k for k, v in self.databases.items() if v is db)
        return db.pool_kwargs(name=key)

    def masked(self) -> dict[str, Any]:
        """Every setting of every database, secrets shown as ``***``."""
        return {
            "profile": self.profile,
            "databases": {name: db.masked() for name, db in self.databases.items()},
        }

    def to_dict(self) -> dict[str, Any]:
        """Same as `masked`."""
        return self.masked()


def _with_profile(raw: Any, profile: Mapping[str, Any]) -> Any:
    """``raw`` database settings plus the profile's defaults for what is unset."""
    if not isinstance(raw, Mapping) or not profile:
        return raw
    out = dict(raw)
    sizes = ("min_size", "max_size")
    for key, value in profile.items():
        if key in OPTIONS_FIELDS and raw.get("pgbouncer"):
            # PgBouncer cannot carry session settings (see DatabaseSettings):
            # a profile's defaults are left out rather than failing.
            continue
        if key in sizes:
            if not any(k in raw for k in sizes):
                out[key] = value
        elif key == "sslmode":
            # "At least require" only when TLS was configured nowhere: not in
            # the settings, the URL, or a service file.
            if "sslmode" not in raw and "service" not in raw and not _url_sets(raw, "sslmode"):
                out[key] = value
        elif key not in raw:
            out[key] = value
    return out


def _url_sets(raw: Mapping[str, Any], key: str) -> bool:
    url = raw.get("url")
    if isinstance(url, SecretStr):
        url = url.get_secret_value()
    if not isinstance(url, str):
        return False
    try:
        params = parse_conninfo(str(url), "url")
    except ConfigError:
        return False  # reported by the url field itself
    return key in params or (key == "sslmode" and "service" in params)


def _is_database_url(key: str) -> bool:
    return key.upper() == DATABASE_URL


def _is_ours(key: str, value: str) -> bool:
    """Whether variable ``key`` is a setting (an empty ``DATABASE_URL``, as
    in an ``.env`` template, is none)."""
    return _owner(key) is not None and not (_is_database_url(key) and not value.strip())


def _expanded_toml(
    path: str | Path, layers: list[tuple[str, Mapping[str, str]]]
) -> tuple[dict[str, Any], str]:
    """The file's data with ``${VAR}`` expanded (the environment first, then
    the ``.env`` file), as text values; and, for the log, the names read."""

    def lookup(name: str) -> str | None:
        for _, variables in reversed(layers):
            if name in variables:
                return variables[name]
        return None

    result = expand_variables(_read_toml(path), lookup, str(path))
    note = ""
    if result.used:
        note += f"; variables: {', '.join(sorted(result.used))}"
    if result.defaulted:
        note += f"; defaults for unset: {', '.join(sorted(result.defaulted))}"
    return dict(_as_text(result.data)), note


def load_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    dotenv: str | Path | None = ".env",
    **overrides: Any,
) -> HarborSettings:
    """Settings from every source, later ones overriding earlier ones.

    Defaults (and the profile's) < the TOML file at ``path`` < the ``dotenv``
    file (ignored when missing) < ``env`` (default ``os.environ``) < keyword
    ``overrides`` (``profile=``, ``databases=``). Text from files and
    variables is parsed (``"5"`` is 5); overrides must be proper Python values.

    With a file, the file names the databases: ``.env`` and environment
    variables override settings of those databases and add none (a stray
    docker-compose ``.env`` with ``POSTGRES_*`` or ``DATABASE_URL`` does not
    create ``default``); variables for other names are ignored. Without a
    file they define the databases. ``DATABASE_URL`` (from either source)
    makes the ``POSTGRES_*`` endpoint variables ignored. String values in the
    file may say ``${VAR}`` or ``${VAR:-default}``, read from ``env`` and
    then the ``dotenv`` file. Logs (INFO, ``pgharbor.config``) which sources contributed and
    which variables were ignored — by name, never a value.

    Raises:
        ConfigError: a file is missing or malformed, or any value is invalid;
            the message lists every problem, one per line, without secrets.
    """
    merged: dict[str, Any] = {}
    origins: list[str] = []
    ignored: list[str] = []
    superseded: list[str] = []
    known: set[str] | None = None  # the file's databases, case-folded
    layers: list[tuple[str, Mapping[str, str]]] = []
    if dotenv is not None:
        layers.append((str(dotenv), _read_dotenv(dotenv)))
    layers.append(("environment", os.environ if env is None else env))
    if path is not None:
        data, expanded = _expanded_toml(path, layers)
        merged = _merge(merged, data)
        tables = data.get("databases")
        known = {str(k).casefold() for k in tables} if isinstance(tables, Mapping) else set()
        origins.append(f"{path} (databases: {', '.join(sorted(known)) or 'none'}{expanded})")
    # DATABASE_URL, from whichever source, says where ``default`` is whole.
    has_url = any(
        _is_database_url(k) and v.strip() for _, layer in layers for k, v in layer.items()
    )
    for label, variables in layers:
        ours = {k: v for k, v in variables.items() if _is_ours(k, v)}
        if known is not None:
            # Only variables read before this check could fail to parse:
            # an ignored POSTGRES_POOL_SIZE=abc is no error.
            kept = {k: v for k, v in ours.items() if _owner(k) in known or _owner(k) == ""}
            ignored += sorted(set(ours) - set(kept))
            ours = kept
        if has_url:
            endpoint = {k for k in ours if k.upper() in _POSTGRES_ENDPOINT}
            superseded += sorted(endpoint)
            ours = {k: v for k, v in ours.items() if k not in endpoint}
        if ours:
            merged = _merge(merged, EnvSource(HarborSettings, ours)())
            origins.append(f"{label}: {', '.join(sorted(ours))}")
    if overrides:
        merged = _merge(merged, _plain(overrides))
        origins.append("arguments")
    settings = HarborSettings(**merged)
    summary = "; ".join(origins) or "no file, no variables"
    if ignored:
        summary += f"; ignored, as {path} defines no such database: {', '.join(ignored)}"
    if superseded:
        summary += f"; ignored, as DATABASE_URL is set: {', '.join(superseded)}"
    logger.info("settings from %s", summary)
    logger.debug("settings loaded: %s", json.dumps(settings.masked()))
    return settings
