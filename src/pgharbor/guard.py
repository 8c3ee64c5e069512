"""`Guard`: the rules SQL from an untrusted caller must pass before it runs.

The first of three walls (docs/untrusted-sql.md). `Guard.check` parses the
text with PostgreSQL's own parser (pglast, i.e. libpg_query) and accepts
exactly one statement of an allowed kind, or raises `GuardRefused` naming
the rule:

=========================  ===================================================
rule                       refused
=========================  ===================================================
``text``                   empty text, a NUL character, longer than ``max_length``
``syntax``                 what PostgreSQL's parser rejects
``one-statement``          more than one statement
``transaction-control``    BEGIN, COMMIT, ROLLBACK, SAVEPOINT... (anywhere)
``session-change``         SET, RESET, SET SESSION CHARACTERISTICS, DISCARD
``statement-kind``         anything else not allowed: DO, COPY, PREPARE,
                           EXECUTE, LISTEN/NOTIFY, CALL, LOCK, DECLARE, DDL...;
                           writes and data-modifying WITH unless ``allow_writes``
``select-into``            SELECT ... INTO (it creates a table)
``locking``                FOR UPDATE / FOR SHARE... unless ``allow_writes``
``explain-analyze``        EXPLAIN ANALYZE unless ``allow_writes`` (it runs the statement)
``function``               a function of the deny list (`DENIED_FUNCTIONS`)
``schema``                 a table in a schema outside ``allowed_schemas``
=========================  ===================================================

Read-only (the default) allows ``SELECT``, ``VALUES``, ``TABLE``, ``WITH``
without data-modifying parts, ``EXPLAIN`` without ``ANALYZE`` and ``SHOW``;
``allow_writes`` adds ``INSERT``, ``UPDATE``, ``DELETE``, ``MERGE`` (still one
statement). Everything else is refused because it is not on the list, not
because it is on a list of bad things: a statement kind PostgreSQL adds
tomorrow is refused too.

The parser is never trusted alone: what passes runs in a READ ONLY
transaction that is always rolled back, with local timeouts, sent so that the
server refuses a second statement (`pgharbor.Database.run_guarded`), under a
role that should not be able to write.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from typing import Any, Literal

from .errors import ConfigError, GuardRefused

__all__ = ["DENIED_FUNCTIONS", "DENIED_PREFIXES", "Guard", "Statement", "statement_kind"]

#: Functions refused by name (any schema): they change the session or the
#: server, reach outside the database, or run SQL text the guard never sees.
DENIED_FUNCTIONS = frozenset(
    {
        # session state that survives the statement
        "set_config",
        # other backends and the server
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_promote",
        "pg_switch_wal",
        "pg_create_restore_point",
        "pg_backup_start",
        "pg_backup_stop",
        "pg_start_backup",
        "pg_stop_backup",
        "pg_log_backend_memory_contexts",
        "pg_logical_emit_message",
        "pg_notify",
        "pg_import_system_collations",
        "pg_export_snapshot",
        "pg_wal_replay_pause",
        "pg_wal_replay_resume",
        # files on the server
        "pg_read_file",
        "pg_read_binary_file",
        "pg_stat_file",
        "pg_ls_dir",
        "pg_current_logfile",
        # large objects (lo_import / lo_export read and write server files)
        "lo_import",
        "lo_export",
        "lo_create",
        "lo_creat",
        "lo_unlink",
        "lo_open",
        "lo_put",
        "lo_from_bytea",
        "lo_truncate",
        "lo_truncate64",
        "lowrite",
        # functions that run SQL text given as an argument (the guard never sees it)
        "query_to_xml",
        "query_to_xmlschema",
        "query_to_xml_and_xmlschema",
        "cursor_to_xml",
        "cursor_to_xmlschema",
        "ts_stat",
        "ts_rewrite",
        "database_to_xml",
        "database_to_xml_and_xmlschema",
        "schema_to_xml",
        "schema_to_xml_and_xmlschema",
        # sequences (nextval/setval write even in a SELECT)
        "nextval",
        "setval",
    }
)

#: Name prefixes refused the same way (families of functions).
DENIED_PREFIXES = (
    "pg_advisory",  # session advisory locks outlive the transaction
    "pg_try_advisory",
    "dblink",  # another connection, outside this transaction
    "pg_ls_",  # directory listings
    "pg_file_",  # adminpack: write, rename, unlink server files
    "pg_logdir_",
    "pg_stat_reset",
    "pg_stat_statements_reset",
    "pg_replication_",
    "pg_create_",  # replication slots
    "pg_drop_",
    "pg_copy_",
    "pg_sequence_",
)


def _pglast_parser() -> Any:
    """``pglast.parser``, imported on first use (the ``sql`` extra), or an
    ImportError that says what to install: a guard never runs without it."""
    try:
        from pglast import parser
    except ImportError as exc:
        raise ImportError(
            "the SQL guard needs PostgreSQL's parser (pglast): pip install 'pgharbor[sql]'",
            name="pglast",
        ) from exc
    return parser


_READS = frozenset({"SelectStmt"})
_WRITES = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})
_TOP_ONLY = frozenset({"ExplainStmt", "VariableShowStmt"})
_RULES_BY_STMT = {
    "TransactionStmt": ("transaction-control", "transaction control"),
    "VariableSetStmt": ("session-change", "SET/RESET changes the session"),
    "DiscardStmt": ("session-change", "DISCARD changes the session"),
    "DoStmt": ("statement-kind", "DO runs procedural code"),
    "CopyStmt": ("statement-kind", "COPY reads or writes files and programs"),
    "PrepareStmt": ("statement-kind", "PREPARE creates session state"),
    "ExecuteStmt": ("statement-kind", "EXECUTE runs a prepared statement"),
    "DeallocateStmt": ("statement-kind", "DEALLOCATE changes the session"),
    "ListenStmt": ("statement-kind", "LISTEN changes the session"),
    "UnlistenStmt": ("statement-kind", "UNLISTEN changes the session"),
    "NotifyStmt": ("statement-kind", "NOTIFY signals other sessions"),
    "CallStmt": ("statement-kind", "CALL runs a procedure (it may commit)"),
    "LockStmt": ("statement-kind", "LOCK takes table locks"),
    "DeclareCursorStmt": ("statement-kind", "DECLARE creates a cursor"),
    "FetchStmt": ("statement-kind", "FETCH/MOVE reads a cursor"),
    "ClosePortalStmt": ("statement-kind", "CLOSE closes a cursor"),
    "CreateTableAsStmt": ("statement-kind", "CREATE TABLE AS creates a table"),
    "LoadStmt": ("statement-kind", "LOAD loads a shared library"),
}
_FALSE = frozenset({"false", "off", "no", "0"})

Kind = Literal["query", "explain", "show", "write"]


@dataclasses.dataclass(frozen=True, slots=True)
class Statement:
    """A statement the guard accepted.

    Attributes:
        kind: ``query`` (SELECT, VALUES, TABLE, WITH... SELECT), ``explain``,
            ``show`` or ``write`` (INSERT, UPDATE, DELETE, MERGE, or a query
            with a data-modifying WITH).
        text: the text that was checked.
    """

    kind: Kind
    text: str

    @property
    def cursor(self) -> bool:
        """Whether a server-side cursor can run it (so the server stops
        producing rows at the cap): queries only."""
        return self.kind == "query"


def _seconds(field: str, value: Any, *, allow_none: bool = True) -> float | None:
    if value is None:
        if allow_none:
            return None
        raise ConfigError(field, "is required")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(field, "must be a number of seconds or None", value)
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(field, f"must be > 0 seconds, got {value}")
    if value * 1000 > 2**31 - 1:
        raise ConfigError(field, f"must be at most {(2**31 - 1) // 1000} s, got {value}")
    return float(value)


@dataclasses.dataclass(frozen=True, slots=True)
class Guard:
    """Options of a guarded run (`pgharbor.Database.run_guarded`); immutable.

    Attributes:
        allow_writes: also allow INSERT, UPDATE, DELETE, MERGE, data-modifying
            WITH, locking clauses and EXPLAIN ANALYZE; the statement then runs
            in a READ WRITE transaction that is committed. Still one statement.
        max_rows: rows returned at most (None: no cap); ``truncated`` on the
            result says whether there were more.
        timeout: ``statement_timeout`` of the run, seconds.
        lock_timeout: ``lock_timeout`` of the run, seconds (None: the session's).
        idle_timeout: ``idle_in_transaction_session_timeout`` of the run,
            seconds: the server ends the session if the client stalls mid-run.
        max_length: longest text accepted, in characters.
        allowed_schemas: when given, tables named with a schema must be in one
            of these, and ``search_path`` is set to them for the run (a
            convenience that keeps honest callers in their lane; privileges
            are what enforces it).
        denied_functions: more function names to refuse, on top of
            `DENIED_FUNCTIONS` and `DENIED_PREFIXES`.

    Raises:
        ConfigError: a value is out of range or of the wrong type.
        ImportError: pglast is missing (``pip install 'pgharbor[sql]'``).
    """

    allow_writes: bool = False
    max_rows: int | None = 1000
    timeout: float | None = 30.0
    lock_timeout: float | None = 5.0
    idle_timeout: float | None = 60.0
    max_length: int = 100_000
    allowed_schemas: tuple[str, ...] | None = None
    denied_functions: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        _pglast_parser()  # fail at construction, not at the first statement
        if not isinstance(self.allow_writes, bool):
            raise ConfigError("allow_writes", "must be a bool", self.allow_writes)
        for name in ("max_rows", "max_length"):
            value = getattr(self, name)
            if value is None and name == "max_rows":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(name, "must be a whole number >= 1", value)
        object.__setattr__(self, "timeout", _seconds("timeout", self.timeout))
        object.__setattr__(self, "lock_timeout", _seconds("lock_timeout", self.lock_timeout))
        object.__setattr__(self, "idle_timeout", _seconds("idle_timeout", self.idle_timeout))
        if self.allowed_schemas is not None:
            schemas = self.allowed_schemas
            if isinstance(schemas, str) or not all(isinstance(s, str) and s for s in schemas):
                raise ConfigError("allowed_schemas", "must be a list of schema names")
            if any("\x00" in s for s in schemas) or not schemas:
                raise ConfigError("allowed_schemas", "must be a non-empty list of schema names")
            object.__setattr__(self, "allowed_schemas", tuple(schemas))
        denied = self.denied_functions
        if isinstance(denied, str) or not all(isinstance(f, str) for f in denied):
            raise ConfigError("denied_functions", "must be a set of function names")
        object.__setattr__(self, "denied_functions", frozenset(f.lower() for f in denied))

    @classmethod
    def from_mapping(cls, values: Any) -> Guard:
        """A guard from plain data (a TOML table): the field names as keys.

        Raises:
            ConfigError: an unknown key or a bad value.
        """
        if isinstance(values, Guard):
            return values
        if not isinstance(values, dict):
            raise ConfigError("guard", "must be a pgharbor.Guard or a table of its options")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(key, f"is not a guard option ({', '.join(known)})")
        data = dict(values)
        for key in ("allowed_schemas",):
            if isinstance(data.get(key), list):
                data[key] = tuple(data[key])
        if isinstance(data.get("denied_functions"), list | tuple | set):
            data["denied_functions"] = frozenset(data["denied_functions"])
        return cls(**data)

    # -- the first wall ------------------------------------------------------------

    def check(self, text: str) -> Statement:
        """Parse ``text`` and accept it, or raise `GuardRefused` naming the rule.

        ``text`` must be what the server will read (parameters as ``$n``, or
        inlined as the driver inlines them). Never touches a server.
        """
        if not isinstance(text, str):
            raise GuardRefused("text", f"SQL must be a str, got {type(text).__name__}")
        if "\x00" in text:
            raise GuardRefused("text", "the text holds a NUL character")
        if len(text) > self.max_length:
            raise GuardRefused("text", f"longer than {self.max_length} characters")
        tree = _parse(text)
        stmts = tree.get("stmts", [])
        if not stmts:
            raise GuardRefused("text", "no statement")
        if len(stmts) > 1:
            raise GuardRefused("one-statement", f"{len(stmts)} statements; exactly one is allowed")
        node = stmts[0].get("stmt", {})
        ((kind_name, body),) = node.items()
        kind = self._top_kind(kind_name, body)
        writes = self._walk(node)
        if writes and kind == "query":
            kind = "write"
        return Statement(kind=kind, text=text)

    def _top_kind(self, name: str, body: dict[str, Any]) -> Kind:
        if name == "SelectStmt":
            return "query"
        if name == "VariableShowStmt":
            return "show"
        if name == "ExplainStmt":
            for option in body.get("options", []):
                opt = option.get("DefElem", {})
                analyze = opt.get("defname") == "analyze" and _truthy(opt.get("arg"))
                if analyze and not self.allow_writes:
                    raise GuardRefused("explain-analyze", "EXPLAIN ANALYZE runs the statement")
            return "explain"
        if name in _WRITES:
            if not self.allow_writes:
                raise GuardRefused(
                    "statement-kind", f"{_sql_name(name)} writes; this guard is read-only"
                )
            return "write"
        raise _refusal(name)

    def _walk(self, tree: dict[str, Any]) -> bool:
        """Check every node; whether a data-modifying statement was found."""
        writes = False
        schemas = self.allowed_schemas
        for key, value, parent_key in _nodes(tree):
            if key == "FuncCall":
                self._check_function(value.get("funcname", []))
            elif key == "ColumnRef" or key == "A_Indirection":
                # (x).f and f(x) are the same call for a composite x: check the names.
                for item in value.get("fields", value.get("indirection", [])):
                    name = item.get("String", {}).get("sval") if isinstance(item, dict) else None
                    if name is not None and self._denied(name):
                        raise GuardRefused("function", f"{name!r} is not allowed")
            elif key.endswith("Stmt"):
                if key in _WRITES:
                    if not self.allow_writes:
                        raise GuardRefused(
                            "statement-kind",
                            f"a data-modifying {_sql_name(key)} inside the statement; this "
                            "guard is read-only",
                        )
                    writes = True
                elif key in _TOP_ONLY:
                    if parent_key != "<top>":
                        raise _refusal(key)
                elif key not in _READS:
                    raise _refusal(key)
                if key == "SelectStmt" and value.get("intoClause") is not None:
                    raise GuardRefused("select-into", "SELECT ... INTO creates a table")
            elif key == "LockingClause" and not self.allow_writes:
                raise GuardRefused("locking", "FOR UPDATE/SHARE takes row locks")
            elif key == "RangeVar" and schemas is not None:
                schema = value.get("schemaname")
                if schema is not None and schema not in schemas:
                    raise GuardRefused("schema", f"schema {schema!r} is not allowed")
        return writes

    def _denied(self, name: str) -> bool:
        low = name.lower()
        return (
            low in DENIED_FUNCTIONS
            or low in self.denied_functions
            or low.startswith(DENIED_PREFIXES)
        )

    def _check_function(self, funcname: list[Any]) -> None:
        parts = [p.get("String", {}).get("sval", "") for p in funcname]
        name = parts[-1] if parts else ""
        if self._denied(name):
            raise GuardRefused("function", f"{'.'.join(parts)}() is not allowed")

    # -- what the run sends around the statement ----------------------------------

    def setup_sql(self) -> str:
        """``BEGIN ...; SET LOCAL ...`` for the run: our own text, sent as one
        simple query (one round trip)."""
        parts = ["BEGIN READ WRITE" if self.allow_writes else "BEGIN READ ONLY"]
        for name, seconds in (
            ("statement_timeout", self.timeout),
            ("lock_timeout", self.lock_timeout),
            ("idle_in_transaction_session_timeout", self.idle_timeout),
        ):
            if seconds is not None:
                parts.append(f"SET LOCAL {name} = {max(1, round(seconds * 1000))}")
        if self.allowed_schemas is not None:
            from .sql import quote_ident

            path = ", ".join(quote_ident(s) for s in self.allowed_schemas)
            parts.append(f"SET LOCAL search_path = {path}")
        return "; ".join(parts)


def _truthy(arg: Any) -> bool:
    """A DefElem's boolean value (no argument means true)."""
    if arg is None:
        return True
    if "String" in arg:
        return str(arg["String"].get("sval", "")).lower() not in _FALSE
    if "Integer" in arg:
        return bool(arg["Integer"].get("ival", 0))
    if "Boolean" in arg:
        return bool(arg["Boolean"].get("boolval", False))
    return True


def _sql_name(node: str) -> str:
    return node.removesuffix("Stmt").upper()


def _refusal(node: str) -> GuardRefused:
    rule, why = _RULES_BY_STMT.get(node, ("statement-kind", f"{node} is not an allowed statement"))
    return GuardRefused(rule, why)


def _parse(text: str) -> dict[str, Any]:
    parser = _pglast_parser()
    try:
        tree: dict[str, Any] = json.loads(parser.parse_sql_json(text))
    except parser.ParseError as exc:
        raise GuardRefused("syntax", str(exc)) from None
    except RecursionError:
        raise GuardRefused("syntax", "nested too deeply") from None
    except UnicodeError:
        raise GuardRefused("text", "the text is not valid Unicode (a lone surrogate?)") from None
    return tree


def _nodes(tree: Any, parent: str = "<top>") -> Iterator[tuple[str, dict[str, Any], str]]:
    """Every ``(node type, node, parent node type)`` of a JSON parse tree,
    iteratively (a deep tree must not exhaust Python's stack)."""
    stack: list[tuple[Any, str]] = [(tree, parent)]
    while stack:
        item, owner = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key[:1].isupper() and isinstance(value, dict):
                    yield key, value, owner
                    stack.append((value, key))
                elif isinstance(value, dict | list):
                    stack.append((value, owner))
        elif isinstance(item, list):
            stack.extend((child, owner) for child in item)


_KIND_CACHE: dict[str, Kind | None] = {}
_KIND_CACHE_MAX = 1024


def statement_kind(text: str) -> Kind | None:
    """What kind of statement trusted ``text`` is (see `Statement.kind`), or
    None if the parser cannot tell (``%s`` placeholders are read as
    parameters). Cached: bounded fetches call it per statement."""
    kind = _KIND_CACHE.get(text, "?")
    if kind != "?":
        return kind  # type: ignore[return-value]
    kind = _classify(text)
    if len(_KIND_CACHE) >= _KIND_CACHE_MAX:
        _KIND_CACHE.clear()
    _KIND_CACHE[text] = kind
    return kind


def _classify(text: str) -> Kind | None:
    parser = _pglast_parser()
    try:
        tree = json.loads(parser.parse_sql_json(_dollar_params(text)))
    except Exception:
        return None
    stmts = tree.get("stmts", [])
    if len(stmts) != 1:
        return None
    node = stmts[0].get("stmt", {})
    name = next(iter(node), "")
    if name == "SelectStmt":
        writes = any(key in _WRITES for key, _, _ in _nodes(node))
        locks = any(key == "LockingClause" for key, _, _ in _nodes(node))
        return "write" if writes or locks else "query"
    if name == "VariableShowStmt":
        return "show"
    if name == "ExplainStmt":
        return "explain"
    return "write"


def _dollar_params(text: str) -> str:
    """``%s`` / ``%(name)s`` as ``$n`` and ``%%`` as ``%``, as psycopg reads
    them, so the parser can read a psycopg-style statement."""
    if "%" not in text:
        return text
    out: list[str] = []
    n = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "%" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "%":
                out.append("%")
                i += 2
                continue
            if nxt in "sbt":
                n += 1
                out.append(f"${n}")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i)
                if end != -1 and end + 1 < len(text) and text[end + 1] in "sbt":
                    n += 1
                    out.append(f"${n}")
                    i = end + 2
                    continue
        out.append(ch)
        i += 1
    return "".join(out)
