"""`DatabaseSettings`: one logical database — endpoint, session, pool, policies."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from psycopg.conninfo import make_conninfo
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    InstanceOf,
    PlainSerializer,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic import model_validator as _model_validator

from .._conninfo import mask_conninfo, parse_conninfo, validate_params
from .._policy.autoscale import Autoscale, autoscale_option
from .._policy.backoff import Backoff
from .._policy.breaker import BreakerOptions
from .._policy.options import DEFAULTS, PoolOptions
from .._policy.retry import RetryPolicy
from .._policy.routing import OPTIONS as ROUTER_OPTIONS
from .._policy.routing import PROBE_INTERVAL, PROBE_TIMEOUT
from ..errors import ConfigError
from ..guard import Guard
from .problems import to_config_error
from .values import (
    GUC_NAME,
    Count,
    Duration,
    Flag,
    OptionalCount,
    OptionalSeconds,
    Seconds,
    Secret,
    Text,
    check_text,
    is_text,
    name_bytes,
    normalize_encoding,
    quote_schema,
    render_options,
    schema_list,
)

__all__ = ["AutoscaleSettings", "BreakerSettings", "DatabaseSettings", "RetrySettings"]


def _guard(value: Any) -> Any:
    """A `Guard`, from itself or from a table of its options (TOML)."""
    if value is None or isinstance(value, Guard):
        return value
    if isinstance(value, Mapping):
        return Guard.from_mapping({k: _guard_text(k, v) for k, v in value.items()})
    raise ValueError("must be a pgharbor.Guard or a table of its options")


_ON, _OFF = frozenset({"true", "on", "yes", "1"}), frozenset({"false", "off", "no", "0"})


def _guard_text(key: str, value: Any) -> Any:
    """A guard option read as text (``.env``, the environment), parsed."""
    if not is_text(value):
        return value
    text = str(value).strip()
    low = text.lower()
    try:
        if key == "allow_writes":
            if low in _ON | _OFF:
                return low in _ON
            raise ValueError
        if key in ("allowed_schemas", "denied_functions"):
            return [part.strip() for part in text.split(",") if part.strip()]
        if low in ("none", "null", ""):
            return None
        if key in ("max_rows", "max_length"):
            return int(text)
        if key in ("timeout", "lock_timeout", "idle_timeout"):
            return float(text)
    except ValueError:
        raise ConfigError(key, f"cannot read {text!r}") from None
    return value


def _guard_data(value: Guard | None) -> dict[str, Any] | None:
    if value is None:
        return None
    data = dataclasses.asdict(value)
    data["allowed_schemas"] = None if value.allowed_schemas is None else list(value.allowed_schemas)
    data["denied_functions"] = sorted(value.denied_functions)
    return data


#: The default `Guard` of a database (`Database.run_guarded`, `pgharbor mcp`).
GuardSetting = Annotated[
    InstanceOf[Guard] | None,
    BeforeValidator(_guard),
    PlainSerializer(_guard_data),
]

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
SessionAttrs = Literal["any", "read-write", "read-only", "primary", "standby", "prefer-standby"]
Isolation = Literal["read committed", "repeatable read", "serializable"]

# The pool defaults live in PoolOptions; the settings only point at them.
_POOL: dict[str, Any] = {f.name: getattr(DEFAULTS, f.name) for f in dataclasses.fields(PoolOptions)}
_BREAKER = BreakerOptions()
_AUTOSCALE = Autoscale()
_DEFAULT_SIZE = 5
_VERIFY = ("verify-ca", "verify-full")
_LIBPQ_MAX_SECONDS = 2**31 - 1
#: Fields sent in the ``options`` startup parameter (see `session_settings`):
#: the ones PgBouncer cannot carry.
#: Settings of a database with replicas: its topology's probe and routing.
TOPOLOGY_FIELDS = ("probe_interval", "probe_timeout", *ROUTER_OPTIONS)

OPTIONS_FIELDS = frozenset(
    {
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
        "search_path",
        "timezone",
        "default_transaction_isolation",
        "server_settings",
    }
)
# Settings that have their own field: not accepted again in server_settings.
_DEDICATED = (OPTIONS_FIELDS - {"server_settings"}) | {"application_name", "client_encoding"}


def _fail(model: type[BaseModel], data: Mapping[str, Any], exc: ValidationError) -> ConfigError:
    return to_config_error(exc, model, dict(data))


class _Strict(BaseModel):
    """Frozen, no unknown keys, and `ConfigError` instead of ValidationError."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=False)

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
            return
        except ValidationError as exc:
            error = _fail(type(self), data, exc)
        # Raised outside the except block: the pydantic error, which holds the
        # raw inputs (passwords included), must not become __context__.
        raise error


class RetrySettings(_Strict):
    """When and how often a transient failure is retried (exponential backoff).

    Attributes:
        max_attempts: tries in total, the first included (>= 1).
        initial_delay: seconds before the first retry (>= 0).
        max_delay: upper bound of one delay (>= initial_delay).
        multiplier: growth factor between delays (>= 1).
        jitter: random fraction taken off each delay, in [0, 1).
    """

    if TYPE_CHECKING:
        # Inputs are wider than the stored types (str for SecretStr, seconds
        # for durations...): keep type checkers from synthesising __init__.
        def __init__(self, /, **data: Any) -> None: ...

    max_attempts: Count = 3
    initial_delay: Seconds = 0.1
    max_delay: Seconds = 10.0
    multiplier: Seconds = 2.0
    jitter: Seconds = 0.1

    @_model_validator(mode="after")
    def _rules(self) -> RetrySettings:
        if self.max_attempts < 1:
            raise ConfigError("max_attempts", f"must be >= 1, got {self.max_attempts}")
        if self.initial_delay < 0:
            raise ConfigError("initial_delay", f"must be >= 0, got {self.initial_delay}")
        if self.max_delay < self.initial_delay:
            raise ConfigError(
                "max_delay",
                f"must be >= initial_delay ({self.initial_delay}), got {self.max_delay}",
            )
        if self.multiplier < 1:
            raise ConfigError("multiplier", f"must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter < 1:
            raise ConfigError("jitter", f"must be in [0, 1), got {self.jitter}")
        return self


class BreakerSettings(_Strict):
    """The per-endpoint circuit breaker.

    Attributes:
        failure_threshold: consecutive failures that open it (>= 1).
        reset_timeout: seconds it stays open before a probe (> 0).
        half_open_max: probes allowed while half-open (>= 1).
    """

    if TYPE_CHECKING:
        # Inputs are wider than the stored types (str for SecretStr, seconds
        # for durations...): keep type checkers from synthesising __init__.
        def __init__(self, /, **data: Any) -> None: ...

    failure_threshold: Count = _BREAKER.failure_threshold
    reset_timeout: Seconds = _BREAKER.reset_timeout
    half_open_max: Count = _BREAKER.half_open_max

    @_model_validator(mode="after")
    def _rules(self) -> BreakerSettings:
        if self.failure_threshold < 1:
            raise ConfigError("failure_threshold", f"must be >= 1, got {self.failure_threshold}")
        if self.reset_timeout <= 0:
            raise ConfigError("reset_timeout", f"must be > 0, got {self.reset_timeout}")
        if self.half_open_max < 1:
            raise ConfigError("half_open_max", f"must be >= 1, got {self.half_open_max}")
        return self


class AutoscaleSettings(_Strict):
    """A pool that sizes itself (see `pgharbor.Autoscale`): off unless enabled.

    ``autoscale = true`` turns it on with these defaults; a table of settings
    (``[databases.main.autoscale]``) or an `Autoscale` object turns it on
    too, unless it says ``enabled = false``.

    Attributes:
        enabled: whether the pool sizes itself.
        window: seconds the demand is averaged over.
        grow_after: seconds the demand must exceed the size before it grows.
        shrink_after: seconds it must stay below before the size shrinks.
        headroom: spare capacity above the demand, as a fraction.
        interval: seconds between two samples while there is load.
        server_room: cap the size by what the server's limits leave.
    """

    if TYPE_CHECKING:
        # Inputs are wider than the stored types (str for SecretStr, seconds
        # for durations...): keep type checkers from synthesising __init__.
        def __init__(self, /, **data: Any) -> None: ...

    enabled: Flag = False
    window: Seconds = _AUTOSCALE.window
    grow_after: Seconds = _AUTOSCALE.grow_after
    shrink_after: Seconds = _AUTOSCALE.shrink_after
    headroom: Seconds = _AUTOSCALE.headroom
    interval: Seconds = _AUTOSCALE.interval
    server_room: Flag = _AUTOSCALE.server_room

    @_model_validator(mode="after")
    def _rules(self) -> AutoscaleSettings:
        self.options()
        return self

    def options(self) -> Autoscale | None:
        """The validated `Autoscale`, or None when not enabled.

        Raises:
            ConfigError: a value out of its bounds (the field is named).
        """
        try:
            options = Autoscale(
                window=self.window,
                grow_after=self.grow_after,
                shrink_after=self.shrink_after,
                headroom=self.headroom,
                interval=self.interval,
                server_room=self.server_room,
            )
        except ConfigError as exc:
            # Named from this section, which the settings path already says.
            raise ConfigError(exc.field.removeprefix("autoscale."), exc.rule) from None
        return options if self.enabled else None


def _masked_url(url: SecretStr | None) -> str | None:
    """The URL with its password shown as ``***``."""
    if url is None:
        return None
    return mask_conninfo(url.get_secret_value())


def _identity(params: Mapping[str, str]) -> tuple[str, str] | None:
    """``(host, port)``: the server of a single-host endpoint, to spot duplicates."""
    host = params.get("host") or params.get("hostaddr")
    if not host or "," in host:
        return None
    return (host.lower(), params.get("port") or "5432")


class DatabaseSettings(_Strict):
    """Settings of one logical database: where it is, how sessions start, the pool.

    Every value is validated here; a bad one raises `pgharbor.ConfigError`
    naming the field and the rule (all problems at once, one per line).
    Numbers must be numbers when passed from Python; text is parsed only when
    it comes from TOML, ``.env`` or the environment (see `load_settings`).
    Secrets (``password``, ``url``, ``primary``, ``replicas``) are `SecretStr`:
    ``repr``, ``str``, `model_dump_json`, `masked` never show them.
    """

    if TYPE_CHECKING:
        # Inputs are wider than the stored types (str for SecretStr, seconds
        # for durations...): keep type checkers from synthesising __init__.
        def __init__(self, /, **data: Any) -> None: ...

    # -- endpoint --------------------------------------------------------------
    url: Secret | None = None
    host: Text | None = None
    port: Text | None = None
    dbname: Text | None = None
    user: Text | None = None
    password: Secret | None = None
    sslmode: SslMode | None = None
    sslrootcert: Text | None = None
    sslcert: Text | None = None
    sslkey: Text | None = None
    service: Text | None = None
    target_session_attrs: SessionAttrs | None = None
    connect_timeout: OptionalSeconds = None
    ignore_libpq_env: Flag = False
    # -- topology (see pgharbor._async.topology) ----------------------------------
    primary: Secret | None = None
    replicas: list[Secret] = Field(default_factory=list)
    reads: Literal["primary", "replica", "any"] = "primary"
    probe_interval: Seconds = PROBE_INTERVAL
    probe_timeout: Seconds = PROBE_TIMEOUT
    max_replica_lag: OptionalSeconds = None
    max_replica_lag_bytes: OptionalCount = None
    fallback_to_primary: Flag = True
    ban_time: Seconds = 5.0
    read_your_writes: OptionalSeconds = None
    balance: Literal["round_robin", "least_busy"] = "round_robin"
    # -- session settings (startup parameters) ---------------------------------
    application_name: Text = "pgharbor"
    statement_timeout: Duration | None = None
    lock_timeout: Duration | None = None
    idle_in_transaction_session_timeout: Duration | None = None
    search_path: list[str] | None = None
    timezone: Text | None = None
    default_transaction_isolation: Isolation | None = None
    client_encoding: Text | None = None
    server_settings: dict[str, str] = Field(default_factory=dict)
    # -- pool ------------------------------------------------------------------
    min_size: OptionalCount = None
    max_size: OptionalCount = None
    timeout: Seconds = _POOL["timeout"]
    max_waiting: Count = _POOL["max_waiting"]
    max_lifetime: OptionalSeconds = _POOL["max_lifetime"]
    max_idle: OptionalSeconds = _POOL["max_idle"]
    max_uses: OptionalCount = _POOL["max_uses"]
    check_window: Seconds = _POOL["check_window"]
    check_timeout: Seconds = _POOL["check_timeout"]
    keepalive: OptionalSeconds = _POOL["keepalive"]
    leak_threshold: OptionalSeconds = _POOL["leak_threshold"]
    reconnect_timeout: Seconds = _POOL["reconnect_timeout"]
    driver: Literal["psycopg", "asyncpg", "psycopg2"] = "psycopg"
    pgbouncer: Flag = False
    pgbouncer_prepared_statements: Flag = False
    minimum_version: Count = 13
    retry: RetrySettings = Field(default_factory=RetrySettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    autoscale: AutoscaleSettings = Field(default_factory=AutoscaleSettings)
    # -- observability -----------------------------------------------------------
    slow_query: OptionalSeconds = None
    log_parameters: Flag = False
    # -- untrusted SQL (see pgharbor.guard) ------------------------------------------
    guard: GuardSetting = None

    _URLS: ClassVar[tuple[str, ...]] = ("url", "primary")

    # -- field rules -------------------------------------------------------------

    @field_validator("url", "primary")
    @classmethod
    def _parse_url(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None:
            validate_params(parse_conninfo(value.get_secret_value(), str(info.field_name)))
        return value

    @field_validator("replicas")
    @classmethod
    def _parse_replicas(cls, value: list[SecretStr]) -> list[SecretStr]:
        for index, url in enumerate(value):
            validate_params(parse_conninfo(url.get_secret_value(), str(index)))
        return value

    @field_validator("probe_interval", "probe_timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        # The topology would refuse these only when the database is built.
        if value <= 0:
            raise ValueError(f"must be > 0, got {value}")
        return value

    @field_validator(
        "max_replica_lag", "max_replica_lag_bytes", "ban_time", "read_your_writes", "slow_query"
    )
    @classmethod
    def _not_negative(cls, value: float | None) -> float | None:
        if value is not None and value < 0:
            raise ValueError(f"must be >= 0, got {value}")
        return value

    @field_validator("autoscale", mode="before")
    @classmethod
    def _autoscale(cls, value: Any) -> Any:
        # autoscale = true (or "on" from text), an Autoscale, or a table of
        # settings, which turns it on unless it says enabled = false.
        if isinstance(value, Autoscale):
            return {
                "enabled": True,
                **{f.name: getattr(value, f.name) for f in dataclasses.fields(value)},
            }
        if isinstance(value, bool) or is_text(value):
            return {"enabled": value}
        if isinstance(value, Mapping):
            return {"enabled": True, **value}
        return value

    @field_validator("port", mode="before")
    @classmethod
    def _port_text(cls, value: Any) -> Any:
        # A port is a number, or a comma list of them for multi-host DSNs.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("dbname", "user")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else name_bytes(value)

    @field_validator("application_name")
    @classmethod
    def _app_name(cls, value: str) -> str:
        # The server replaces anything else with '?' and truncates at 63 bytes;
        # leak checks find backends by this name, so it must arrive intact.
        if not all(" " <= ch <= "~" for ch in value):
            raise ValueError("must be printable ASCII (the server would replace other characters)")
        return name_bytes(value)

    @field_validator("search_path", mode="before")
    @classmethod
    def _search_path(cls, value: Any) -> Any:
        return None if value is None else schema_list(value)

    @field_validator("client_encoding")
    @classmethod
    def _encoding(cls, value: str | None) -> str | None:
        return None if value is None else normalize_encoding(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("server_settings", mode="before")
    @classmethod
    def _server_settings(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError("must be a table of setting names to values")
        out: dict[str, str] = {}
        for name, item in value.items():
            if not isinstance(name, str) or not GUC_NAME.match(name):
                raise ValueError(f"invalid setting name {name!r} (letters, digits, _ and .)")
            if name.lower() in _DEDICATED:
                raise ValueError(f"{name!r} has its own setting; use it instead")
            out[name] = _guc_text(name, item)
        return out

    # -- rules across fields -----------------------------------------------------

    @_model_validator(mode="after")
    def _rules(self) -> DatabaseSettings:
        params = self.conninfo_params()
        validate_params(params)
        self._check_tls(params)
        if self.ignore_libpq_env and not (params.get("host") or params.get("hostaddr")):
            raise ConfigError("host", "is required with ignore_libpq_env (libpq would read PGHOST)")
        options = self.pool_options()
        autoscale_option(self.autoscale.options(), options.min_size, options.max_size)
        both = self.model_fields_set
        # Contradictions only between values the user chose (defaults never clash).
        idle, life = self.max_idle, self.max_lifetime
        if {"max_idle", "max_lifetime"} <= both and idle and life and idle > life:
            raise ConfigError("max_idle", f"must be <= max_lifetime ({self.max_lifetime})")
        connect = self.connect_timeout
        if connect and "reconnect_timeout" in both and self.reconnect_timeout < connect:
            raise ConfigError("reconnect_timeout", f"must be >= connect_timeout ({connect})")
        if not 13 <= self.minimum_version <= 99:
            raise ConfigError("minimum_version", "must be a PostgreSQL major version, 13 or newer")
        if self.pgbouncer_prepared_statements:
            self._check_pgbouncer_prepared()
        if self.pgbouncer and "options" in params:
            # PgBouncer refuses the ``options`` startup parameter (before 1.20)
            # or cannot keep it per client in transaction mode: the settings
            # would be rejected, or silently lost between transactions.
            name = self.session_settings()[0][0] if self.session_settings() else "options"
            raise ConfigError(
                name,
                "cannot travel through PgBouncer as a startup parameter; set it on the "
                f"role or database instead (ALTER ROLE ... SET {name} = ...), or with "
                "SET LOCAL inside transactions",
            )
        self._check_topology(params)
        return self

    @staticmethod
    def _check_tls(params: Mapping[str, str]) -> None:
        mode = params.get("sslmode")
        root = params.get("sslrootcert")
        if root == "system":
            if mode not in (None, "verify-full"):
                raise ConfigError("sslrootcert", "'system' requires sslmode verify-full")
        elif (
            root and mode in ("verify-ca", "verify-full") and not Path(root).expanduser().is_file()
        ):
            raise ConfigError("sslrootcert", f"file not found: {root}")
        for key in ("sslcert", "sslkey"):
            if params.get(key) and not Path(params[key]).expanduser().is_file():
                raise ConfigError(key, f"file not found: {params[key]}")

    def _check_pgbouncer_prepared(self) -> None:
        """PgBouncer >= 1.22 (``max_prepared_statements`` set) tracks prepared
        statements per client; psycopg also needs libpq >= 17 to close them."""
        field = "pgbouncer_prepared_statements"
        if not self.pgbouncer:
            raise ConfigError(field, "applies with pgbouncer = true")
        if self.driver == "psycopg":
            from psycopg import pq

            if pq.version() < 170000:
                raise ConfigError(
                    field,
                    f"psycopg needs libpq >= 17 for prepared statements through PgBouncer "
                    f"(this one is {pq.version()})",
                )
        elif self.driver == "psycopg2":
            raise ConfigError(field, "psycopg2 prepares no statements of its own: leave it off")

    def topology_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the topology of a database with replicas."""
        return {name: getattr(self, name) for name in TOPOLOGY_FIELDS}

    def _check_topology(self, params: Mapping[str, str]) -> None:
        if self.reads == "replica" and not self.replicas:
            raise ConfigError("reads", "'replica' needs at least one entry in replicas")
        if self.primary is None and not self.replicas:
            for name in TOPOLOGY_FIELDS:
                if name != "reads" and name in self.model_fields_set:
                    raise ConfigError(name, "applies to a database with replicas (give replicas)")
        seen: dict[tuple[str, str], str] = {}
        primary = self.primary.get_secret_value() if self.primary else None
        main = _identity(parse_conninfo(primary)) if primary else _identity(params)
        if main:
            seen[main] = "the primary"
        for index, url in enumerate(self.replicas):
            ident = _identity(parse_conninfo(url.get_secret_value()))
            if ident is None:
                continue
            if ident in seen:
                raise ConfigError(f"replicas.{index}", f"is the same server as {seen[ident]}")
            seen[ident] = f"replicas.{index}"

    # -- what the pool gets ------------------------------------------------------

    @property
    def effective_connect_timeout(self) -> float:
        """Seconds for one connection attempt: the setting, the URL's, or 10."""
        if self.connect_timeout is not None:
            return self.connect_timeout
        if self.url is not None:
            raw = parse_conninfo(self.url.get_secret_value(), "url").get("connect_timeout")
            if raw is not None:
                if not raw.strip().isdigit() or int(raw) <= 0:
                    raise ConfigError("url", "connect_timeout must be a positive whole number")
                return float(raw)
        return float(_POOL["connect_timeout"])

    def pool_options(self) -> PoolOptions:
        """The validated `PoolOptions` (sizes resolved as the pool resolves them).

        An unset ``max_size`` is ``max(min_size, 5)``; an unset ``min_size`` is
        ``min(5, max_size)``, so setting one bound never contradicts the other.

        Raises:
            ConfigError: a pool rule is broken (the field is named).
        """
        min_size, max_size = self.min_size, self.max_size
        if max_size is None:
            max_size = max(min_size if min_size is not None else 0, _DEFAULT_SIZE)
        if min_size is None:
            # Clamped at 0: a bad max_size (-1) is reported as itself by
            # PoolOptions, not as the min_size derived from it.
            min_size = min(_DEFAULT_SIZE, max(max_size, 0))
        return PoolOptions(
            min_size=min_size,
            max_size=max_size,
            timeout=self.timeout,
            max_waiting=self.max_waiting,
            max_lifetime=self.max_lifetime,
            max_idle=self.max_idle,
            max_uses=self.max_uses,
            check_window=self.check_window,
            check_timeout=self.check_timeout,
            keepalive=self.keepalive,
            leak_threshold=self.leak_threshold,
            connect_timeout=self.effective_connect_timeout,
            reconnect_timeout=self.reconnect_timeout,
        )

    def session_settings(self) -> list[tuple[str, str]]:
        """The ``(name, value)`` GUCs sent in the ``options`` startup parameter."""
        pairs: list[tuple[str, str]] = []
        for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"):
            value = getattr(self, name)
            if value is not None:
                pairs.append((name, value))
        if self.search_path is not None:
            pairs.append(("search_path", ",".join(map(quote_schema, self.search_path))))
        if self.timezone is not None:
            pairs.append(("timezone", self.timezone))
        if self.default_transaction_isolation is not None:
            pairs.append(("default_transaction_isolation", self.default_transaction_isolation))
        pairs.extend(self.server_settings.items())
        return pairs

    def conninfo_params(self) -> dict[str, str]:
        """libpq keyword parameters for this database (password included).

        The URL's parameters, overridden by the explicit fields; then
        ``application_name``, ``connect_timeout`` (always explicit, so
        ``PGCONNECT_TIMEOUT`` cannot change it) and ``options`` carrying the
        session settings as ``-c name=value`` with spaces and backslashes
        escaped. Values are never spliced into a string: join them with
        ``psycopg.conninfo.make_conninfo`` only. An explicit ``sslmode`` is
        always passed, so ``PGSSLMODE`` cannot weaken it.
        """
        params: dict[str, str] = {}
        if self.url is not None:
            params.update(parse_conninfo(self.url.get_secret_value(), "url"))
        for key in (
            "host",
            "port",
            "dbname",
            "user",
            "sslmode",
            "sslrootcert",
            "sslcert",
            "sslkey",
            "service",
            "target_session_attrs",
        ):
            value = getattr(self, key)
            if value is not None:
                params[key] = value
        if self.password is not None:
            params["password"] = self.password.get_secret_value()
        if "application_name" in self.model_fields_set or "application_name" not in params:
            params["application_name"] = self.application_name
        if self.client_encoding is not None:
            params["client_encoding"] = self.client_encoding
        seconds = self.effective_connect_timeout
        # libpq counts whole seconds and treats anything below 2 as 2.
        params["connect_timeout"] = str(min(_LIBPQ_MAX_SECONDS, max(2, round(seconds))))
        session = self.session_settings()
        if session:
            ours = render_options(session)
            theirs = params.get("options", "").strip()
            # The server applies -c pairs in order: ours, later, win.
            params["options"] = f"{theirs} {ours}" if theirs else ours
        if self.ignore_libpq_env:
            # Every parameter libpq would otherwise take from PG* variables.
            params.setdefault("port", "5432")
            params.setdefault("sslmode", "prefer")
            params.setdefault("target_session_attrs", "any")
            params.setdefault("options", "")
            if "user" in params:
                params.setdefault("dbname", params["user"])
        return params

    def retry_policy(self) -> RetryPolicy:
        """The `RetryPolicy` of the ``retry`` section."""
        r = self.retry
        backoff = Backoff(
            initial=max(r.initial_delay, 0.001),
            multiplier=r.multiplier,
            max_delay=max(r.max_delay, r.initial_delay, 0.001),
            jitter=r.jitter,
        )
        return RetryPolicy(max_attempts=r.max_attempts, backoff=backoff)

    def pool_kwargs(self, name: str | None = None) -> dict[str, Any]:
        """Keyword arguments for `pgharbor.Pool` / `pgharbor.AsyncPool`.

        ``conninfo`` is a keyword DSN built by ``make_conninfo`` *without* the
        secrets (the pool may show it in messages); ``password`` travels as its
        own argument and ``sslpassword`` in ``kwargs``. ``pgbouncer=True``
        turns driver prepared statements off.
        """
        params = self.conninfo_params()
        password = params.pop("password", None)
        hidden = {k: params.pop(k) for k in ("sslpassword",) if k in params}
        options = self.pool_options()
        kwargs: dict[str, Any] = {
            "conninfo": make_conninfo("", **params),
            "driver": self.driver,
            "min_size": options.min_size,
            "max_size": options.max_size,
            "timeout": options.timeout,
            "max_waiting": options.max_waiting,
            "max_lifetime": options.max_lifetime,
            "max_idle": options.max_idle,
            "max_uses": options.max_uses,
            "check_window": options.check_window,
            "check_timeout": options.check_timeout,
            "keepalive": options.keepalive,
            "leak_threshold": options.leak_threshold,
            "connect_timeout": options.connect_timeout,
            "reconnect_timeout": options.reconnect_timeout,
            "prepared_statements": not self.pgbouncer or self.pgbouncer_prepared_statements,
            # A database's pools get a breaker (a bare Pool has none unless asked).
            "breaker": BreakerOptions(
                failure_threshold=self.breaker.failure_threshold,
                reset_timeout=self.breaker.reset_timeout,
                half_open_max=self.breaker.half_open_max,
            ),
            "autoscale": self.autoscale.options(),
        }
        if password is not None:
            kwargs["password"] = password
        if hidden:
            kwargs["kwargs"] = hidden
        if name is not None:
            kwargs["name"] = name
        return kwargs

    # -- display -------------------------------------------------------------------

    def masked(self) -> dict[str, Any]:
        """Every setting as plain data, secrets shown as ``***``.

        URLs keep their host, port and database; their password becomes ``***``.
        """
        data = self.model_dump(mode="json")
        data["password"] = None if self.password is None else "***"
        data["url"] = _masked_url(self.url)
        data["primary"] = _masked_url(self.primary)
        data["replicas"] = [_masked_url(url) for url in self.replicas]
        return data

    def to_dict(self) -> dict[str, Any]:
        """Same as `masked`: a dump that is safe to log or show."""
        return self.masked()

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # Show URLs without their password instead of a row of stars.
        for key, value in super().__repr_args__():
            if key in self._URLS:
                yield key, _masked_url(value)
            elif key == "replicas":
                yield key, [_masked_url(url) for url in value]
            else:
                yield key, value

    @classmethod
    def from_env(
        cls, name: str | None = None, env: Mapping[str, str] | None = None
    ) -> DatabaseSettings:
        """One database's settings from environment variables.

        Reads ``PGHARBOR_<NAME>__<FIELD>``, ``PGHARBOR_PROFILE``,
        ``DATABASE_URL`` and the ``POSTGRES_*`` names (database ``default``)
        from ``env`` (default: ``os.environ``); no file is read. Without
        ``name``: the only database configured, else ``default``.

        Raises:
            ConfigError: a value is invalid, or the database is not configured.
        """
        from .harbor import load_settings

        settings = load_settings(None, env=env, dotenv=None)
        return settings.database(name)


def _guc_text(name: str, value: Any) -> str:
    """A server setting value as PostgreSQL text (bools as on/off)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"server_settings.{name} must be finite")
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"server_settings.{name} must be text, a number or a bool")
    return check_text(str(value) if is_text(value) else value)
