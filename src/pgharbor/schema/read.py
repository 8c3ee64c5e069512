"""Reading a snapshot: the catalogue queries in order, rows into objects.

Sans-I/O like `pgharbor.facts`: `snapshot_steps` is a generator that yields
each `Query` and is sent back its rows; `read_schema_sync` and
`read_schema_async` drive it over a caller's ``fetch`` (``%s``
placeholders; `pgharbor.facts.to_dollar` for asyncpg). The statements must
run in one transaction on one session — best ``REPEATABLE READ``, so every
query sees the same moment — as `Database.schema` does::

    with conn.transaction():   # psycopg
        snap = read_schema_sync(lambda q, p: conn.execute(q, p).fetchall())

Two round trips to start (the session, then the schemas), then one per
object kind: 12 in all, whatever the number of objects.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Generator, Iterable
from collections.abc import Sequence as Seq
from typing import Any

from ..errors import ConfigError, InsufficientPrivileges, sqlstate_of
from ..facts import AsyncFetch, Fetch, Query, check_version
from ..version import ServerVersion
from .catalog import META, SCHEMAS, snapshot_queries
from .model import (
    Column,
    CompositeType,
    Constraint,
    DomainType,
    EnumType,
    Extension,
    Function,
    Grant,
    Index,
    RangeType,
    Schema,
    Sequence,
    Table,
    Trigger,
    View,
)
from .names import qualify, quote_ident
from .snapshot import SchemaSnapshot

__all__ = ["Steps", "check_schemas", "read_schema_async", "read_schema_sync", "snapshot_steps"]

#: What `snapshot_steps` is: yields queries, is sent rows, returns the snapshot.
Steps = Generator[Query, Seq[Any], SchemaSnapshot]

_RELKINDS = {"r": "table", "p": "partitioned table", "f": "foreign table"}
_VIEW_KINDS = {"v": "view", "m": "materialized view"}
_PERSISTENCE = {"p": "permanent", "u": "unlogged", "t": "temporary"}
_CONTYPES = {
    "p": "primary key",
    "u": "unique",
    "f": "foreign key",
    "c": "check",
    "x": "exclusion",
}
_FK_ACTIONS = {
    "a": "no action",
    "r": "restrict",
    "c": "cascade",
    "n": "set null",
    "d": "set default",
}
_FK_MATCH = {"s": "simple", "f": "full", "p": "partial"}
_PROKINDS = {"f": "function", "p": "procedure", "a": "aggregate", "w": "window"}
_VOLATILITY = {"i": "immutable", "s": "stable", "v": "volatile"}
_PARALLEL = {"s": "safe", "r": "restricted", "u": "unsafe"}
_IDENTITY = {"a": "always", "d": "by default"}
_GENERATED = {"s": "stored", "v": "virtual"}
_ENABLED = {"O": "origin", "D": "disabled", "R": "replica", "A": "always"}


def check_schemas(schemas: Iterable[str] | None) -> tuple[str, ...] | None:
    """*schemas* as a tuple of names (None stays None: every user schema).

    Raises:
        ConfigError: A single string instead of a list, or a name that is not
            a non-empty string.
    """
    if schemas is None:
        return None
    if isinstance(schemas, str):
        raise ConfigError(
            "schemas", f"must be a list of schema names, not one string ({schemas!r})"
        )
    names = tuple(schemas)
    for name in names:
        if not isinstance(name, str) or not name:
            raise ConfigError("schemas", f"every name must be a non-empty string, got {name!r}")
    return names


def snapshot_steps(schemas: Iterable[str] | None = None) -> Steps:
    """The snapshot as a conversation: yields each query, expects its rows.

    Raises:
        ConfigError: Bad *schemas* (at the first step).
        UnsupportedServerVersion: A server older than 13.
        ValueError: The statements did not run in one transaction (the
            ``search_path`` set by the first was gone in the second).
    """
    requested = check_schemas(schemas)
    meta = _one((yield META))
    version = check_version(ServerVersion.from_num(int(meta[1])))
    as_array = None if requested is None else list(requested)
    schema_rows = yield Query(SCHEMAS.sql, (as_array, as_array))
    if any(row[4] != "" for row in schema_rows):
        raise ValueError(
            "the snapshot's statements must run in one transaction on one session "
            "(the search_path the first one set was gone in the second)"
        )
    found = [Schema(name=r[0], owner=r[1], grants=_grants(r[2]), comment=r[3]) for r in schema_rows]
    base: dict[str, Any] = {
        "database": meta[3],
        "user": meta[4],
        "server_version": str(version),
        "server_version_num": version.num,
        "in_recovery": bool(meta[5]),
        "requested": requested,
        "schemas": tuple(found),
    }
    if not found:
        return SchemaSnapshot(**base)
    names = ([s.name for s in found],)
    q = snapshot_queries(version.num)
    # One statement per kind; the children first, to attach them.
    columns = _group((yield Query(q.columns, names)), _column)
    constraints = _group((yield Query(q.constraints, names)), _constraint)
    indexes = _group((yield Query(q.indexes, names)), _index)
    triggers = _group((yield Query(q.triggers, names)), _trigger)
    tables = [
        _table(r, columns, constraints, indexes, triggers) for r in (yield Query(q.tables, names))
    ]
    views = [_view(r, columns, indexes, triggers) for r in (yield Query(q.views, names))]
    sequences = [_sequence(r) for r in (yield Query(q.sequences, names))]
    functions = [_function(r) for r in (yield Query(q.functions, names))]
    kinds: dict[str, list[Any]] = defaultdict(list)
    for r in (yield Query(q.types, names)):
        kinds[r[2]].append(_type(r, columns))
    extensions = [
        Extension(name=r[0], version=r[1], schema=r[2], comment=r[3])
        for r in (yield Query(q.extensions, names))
    ]
    return SchemaSnapshot(
        **base,
        tables=tuple(sorted(tables, key=lambda t: (t.schema, t.name))),
        views=tuple(sorted(views, key=lambda v: (v.schema, v.name))),
        sequences=tuple(sorted(sequences, key=lambda s: (s.schema, s.name))),
        functions=tuple(sorted(functions, key=lambda f: (f.schema, f.name, f.identity_arguments))),
        enums=tuple(kinds["e"]),
        domains=tuple(kinds["d"]),
        composites=tuple(kinds["c"]),
        ranges=tuple(kinds["r"]),
        extensions=tuple(extensions),
    )


def read_schema_sync(fetch: Fetch, schemas: Iterable[str] | None = None) -> SchemaSnapshot:
    """Take a snapshot through *fetch* (12 round trips; see the module).

    Raises:
        InsufficientPrivileges: The role may not read a catalogue or call a
            catalogue function (the driver's error as ``__cause__``).
        Whatever else *fetch* raises, and see `snapshot_steps`.
    """
    steps = snapshot_steps(schemas)
    query = next(steps)
    while True:
        try:
            rows = fetch(query.sql, query.params)
        except Exception as exc:
            _reraise(exc)
        try:
            query = steps.send(rows)
        except StopIteration as done:
            snapshot: SchemaSnapshot = done.value
            return snapshot


async def read_schema_async(
    afetch: AsyncFetch, schemas: Iterable[str] | None = None
) -> SchemaSnapshot:
    """`read_schema_sync` for an awaitable *afetch*."""
    steps = snapshot_steps(schemas)
    query = next(steps)
    while True:
        try:
            rows = await afetch(query.sql, query.params)
        except Exception as exc:
            _reraise(exc)
        try:
            query = steps.send(rows)
        except StopIteration as done:
            snapshot: SchemaSnapshot = done.value
            return snapshot


def _reraise(exc: Exception) -> None:
    if sqlstate_of(exc) == "42501":  # insufficient_privilege
        raise InsufficientPrivileges(
            f"cannot read the catalogue for a schema snapshot: {exc} "
            "(check_privileges() lists what is missing)"
        ) from exc
    raise exc


# -- rows into objects ---------------------------------------------------------


def _one(rows: Seq[Any]) -> Any:
    if len(rows) != 1:
        raise ValueError(f"expected one row, got {len(rows)}")
    return rows[0]


def _grants(text: str | None) -> tuple[Grant, ...]:
    if not text:
        return ()
    items = {(str(g), str(p), bool(w)) for g, p, w in json.loads(text)}
    return tuple(Grant(g, p, w) for g, p, w in sorted(items))


def _strings(values: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in values) if values else ()


def _group(
    rows: Seq[Any], build: Callable[[Seq[Any], int], Any]
) -> dict[tuple[str, str], list[Any]]:
    """Objects by the (schema, relation) of their first two columns, in row order."""
    out: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for row in rows:
        key = (row[0], row[1])
        out[key].append(build(row, len(out[key]) + 1))
    return out


def _column(r: Seq[Any], position: int) -> Column:
    generated = _GENERATED.get(r[7] or "")
    return Column(
        name=r[2],
        type=r[3],
        position=position,
        not_null=bool(r[4]),
        default=None if generated else r[5],
        identity=_IDENTITY.get(r[6] or ""),
        generated=generated,
        expression=r[5] if generated else None,
        collation=qualify(r[8], r[9]) if r[9] is not None else None,
        inherited=bool(r[10]),
        grants=_grants(r[11]),
        comment=r[12],
    )


def _constraint(r: Seq[Any], _: int) -> Constraint:
    foreign = r[3] == "f"
    return Constraint(
        name=r[2],
        kind=_CONTYPES[r[3]],
        definition=r[4],
        columns=_strings(r[5]),
        references=qualify(r[6], r[7]) if foreign else None,
        referenced_columns=_strings(r[8]),
        on_update=_FK_ACTIONS.get(r[9]) if foreign else None,
        on_delete=_FK_ACTIONS.get(r[10]) if foreign else None,
        match=_FK_MATCH.get(r[11]) if foreign else None,
        deferrable=bool(r[12]),
        initially_deferred=bool(r[13]),
        validated=bool(r[14]),
        enforced=bool(r[15]),
        inherited=bool(r[16]),
        no_inherit=bool(r[17]),
        comment=r[18],
    )


def _index(r: Seq[Any], _: int) -> Index:
    return Index(
        name=r[2],
        definition=r[3],
        method=r[4],
        unique=bool(r[5]),
        primary=bool(r[6]),
        columns=_strings(r[7]),
        include=_strings(r[8]),
        partial=r[9] is not None,
        predicate=r[9],
        constraint=r[10],
        valid=bool(r[11]),
        column_names=_strings(r[12]),
        comment=r[13],
    )


def _trigger(r: Seq[Any], _: int) -> Trigger:
    return Trigger(
        name=r[2],
        definition=r[3],
        function=qualify(r[4], r[5]),
        enabled=_ENABLED.get(r[6], r[6]),
        comment=r[7],
    )


Children = dict[tuple[str, str], list[Any]]


def _table(
    r: Seq[Any], columns: Children, constraints: Children, indexes: Children, triggers: Children
) -> Table:
    key = (r[0], r[1])
    parents = tuple(qualify(s, n) for s, n in json.loads(r[8] or "[]"))
    partition = bool(r[6])
    return Table(
        schema=r[0],
        name=r[1],
        kind=_RELKINDS[r[2]],
        persistence=_PERSISTENCE[r[3]],
        owner=r[4],
        partition_key=r[5],
        partition_of=parents[0] if partition and parents else None,
        partition_bound=r[7],
        inherits=() if partition else parents,
        options=_strings(r[9]),
        row_security=bool(r[10]),
        force_row_security=bool(r[11]),
        columns=tuple(columns.get(key, ())),
        constraints=tuple(constraints.get(key, ())),
        indexes=tuple(indexes.get(key, ())),
        triggers=tuple(triggers.get(key, ())),
        grants=_grants(r[12]),
        comment=r[13],
    )


def _view(r: Seq[Any], columns: Children, indexes: Children, triggers: Children) -> View:
    key = (r[0], r[1])
    return View(
        schema=r[0],
        name=r[1],
        kind=_VIEW_KINDS[r[2]],
        definition=r[3],
        owner=r[4],
        options=_strings(r[5]),
        columns=tuple(columns.get(key, ())),
        indexes=tuple(indexes.get(key, ())),
        triggers=tuple(triggers.get(key, ())),
        grants=_grants(r[6]),
        comment=r[7],
    )


def _sequence(r: Seq[Any]) -> Sequence:
    owned = json.loads(r[9]) if r[9] else None
    return Sequence(
        schema=r[0],
        name=r[1],
        type=r[2],
        start=int(r[3]),
        increment=int(r[4]),
        minimum=int(r[5]),
        maximum=int(r[6]),
        cache=int(r[7]),
        cycle=bool(r[8]),
        owned_by=f"{qualify(owned[0], owned[1])}.{quote_ident(owned[2])}" if owned else None,
        owner=r[10],
        grants=_grants(r[11]),
        comment=r[12],
    )


def _function(r: Seq[Any]) -> Function:
    return Function(
        schema=r[0],
        name=r[1],
        kind=_PROKINDS[r[2]],
        identity_arguments=r[3],
        arguments=r[4],
        result=r[5],
        language=r[6],
        volatility=_VOLATILITY[r[7]],
        strict=bool(r[8]),
        security_definer=bool(r[9]),
        leakproof=bool(r[10]),
        parallel=_PARALLEL[r[11]],
        config=_strings(r[12]),
        body=r[13],
        owner=r[14],
        grants=_grants(r[15]),
        comment=r[16],
    )


def _type(r: Seq[Any], columns: Children) -> EnumType | DomainType | CompositeType | RangeType:
    common: dict[str, Any] = {
        "schema": r[0],
        "name": r[1],
        "owner": r[11],
        "grants": _grants(r[12]),
        "comment": r[13],
    }
    collation = qualify(r[9], r[10]) if r[10] is not None else None
    kind = r[2]
    if kind == "e":
        return EnumType(labels=_strings(r[3]), **common)
    if kind == "d":
        checks = tuple(
            Constraint(name=n, kind="check", definition=d, validated=bool(v))
            for n, d, v in json.loads(r[7] or "[]")
        )
        return DomainType(
            base_type=r[4],
            not_null=bool(r[5]),
            default=r[6],
            collation=collation,
            constraints=checks,
            **common,
        )
    if kind == "r":
        return RangeType(subtype=r[8], collation=collation, **common)
    return CompositeType(attributes=tuple(columns.get((r[0], r[1]), ())), **common)
