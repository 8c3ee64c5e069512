"""The objects of a schema snapshot: frozen dataclasses, one per kind.

Names are stored as the catalogue holds them (unquoted); references to other
objects (a partition's parent, a foreign key's table, a sequence's owner
column) are quoted, schema-qualified names (`pgharbor.schema.names.qualify`).
Definitions (``definition``, ``default``, ``predicate``...) are the server's
own rendering (``pg_get_constraintdef``, ``pg_get_expr``...), read with an
empty ``search_path`` so every name in them is qualified the same way
whoever reads them. Collections are tuples in a stable order (by name, or
by position where position means something: columns, enum labels).

Every object converts to plain values with ``to_dict()``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from .names import qualify, quote_ident

__all__ = [
    "Column",
    "CompositeType",
    "Constraint",
    "DomainType",
    "EnumType",
    "Extension",
    "Function",
    "Grant",
    "Index",
    "RangeType",
    "Schema",
    "SchemaObject",
    "Sequence",
    "Table",
    "Trigger",
    "View",
]


class SchemaObject:
    """Base of the snapshot's objects: plain-value conversion."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain values (nested objects as dicts, tuples as lists) for JSON."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


def _plain(value: Any) -> Any:
    if isinstance(value, SchemaObject):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Grant(SchemaObject):
    """One privilege held by one role (``PUBLIC`` for everyone).

    Objects list their effective privileges: where the catalogue stores none
    (the defaults), the defaults are listed (``acldefault``), so an explicit
    grant equal to the default does not read as a difference.
    """

    grantee: str
    privilege: str
    grantable: bool = False

    def __str__(self) -> str:
        return f"{self.privilege} to {self.grantee}" + (
            " with grant option" if self.grantable else ""
        )


@dataclass(frozen=True, slots=True)
class Schema(SchemaObject):
    """A namespace."""

    name: str
    owner: str
    grants: tuple[Grant, ...] = ()
    comment: str | None = None

    @property
    def qualified_name(self) -> str:
        """The name, quoted as needed."""
        return quote_ident(self.name)


@dataclass(frozen=True, slots=True)
class Column(SchemaObject):
    """A column of a table, view or composite type.

    Attributes:
        name: The column name.
        type: ``format_type`` of its type and modifier (``numeric(10,2)``).
        position: 1-based among the live columns (dropped ones leave no gap).
        not_null: ``NOT NULL``.
        default: The default expression (``nextval('public.s'::regclass)``).
        identity: ``"always"`` or ``"by default"`` for identity columns.
        generated: ``"stored"`` (or ``"virtual"``, PostgreSQL 18) for
            generated columns; ``expression`` is then the expression.
        expression: The generation expression of a generated column.
        collation: A collation other than the type's default (qualified).
        inherited: Inherited from a parent table (or partitioned table).
        grants: Column-level privileges (table-level ones are on the table).
        comment: ``COMMENT ON COLUMN``.
    """

    name: str
    type: str
    position: int
    not_null: bool = False
    default: str | None = None
    identity: str | None = None
    generated: str | None = None
    expression: str | None = None
    collation: str | None = None
    inherited: bool = False
    grants: tuple[Grant, ...] = ()
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class Constraint(SchemaObject):
    """A table (or domain) constraint. NOT NULL is a column attribute.

    Attributes:
        name: The constraint name.
        kind: ``"primary key"``, ``"unique"``, ``"foreign key"``,
            ``"check"`` or ``"exclusion"``.
        definition: ``pg_get_constraintdef`` (``FOREIGN KEY (a) REFERENCES
            public.t(id) ON DELETE CASCADE``).
        columns: The constrained columns, in key order (for a check, the
            columns it reads).
        references: A foreign key's referenced table, qualified.
        referenced_columns: ... and its columns.
        on_update: A foreign key's action: ``"no action"``, ``"restrict"``,
            ``"cascade"``, ``"set null"``, ``"set default"``.
        on_delete: Likewise.
        match: A foreign key's ``"simple"``, ``"full"`` or ``"partial"``.
        deferrable: ``DEFERRABLE``.
        initially_deferred: ``INITIALLY DEFERRED``.
        validated: False for ``NOT VALID``.
        enforced: False for ``NOT ENFORCED`` (PostgreSQL 18).
        inherited: Inherited from a parent table (not defined locally).
        no_inherit: ``NO INHERIT`` (check constraints).
        comment: ``COMMENT ON CONSTRAINT``.
    """

    name: str
    kind: str
    definition: str
    columns: tuple[str, ...] = ()
    references: str | None = None
    referenced_columns: tuple[str, ...] = ()
    on_update: str | None = None
    on_delete: str | None = None
    match: str | None = None
    deferrable: bool = False
    initially_deferred: bool = False
    validated: bool = True
    enforced: bool = True
    inherited: bool = False
    no_inherit: bool = False
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class Index(SchemaObject):
    """An index of a table or materialized view.

    Attributes:
        name: The index name.
        definition: ``pg_get_indexdef`` (a whole ``CREATE INDEX``).
        method: The access method (``btree``, ``gin``, ``gist``...).
        unique: A unique index.
        primary: The primary key's index.
        columns: Key columns or expressions, in order.
        include: ``INCLUDE`` columns.
        partial: Has a ``WHERE`` clause.
        predicate: That clause.
        constraint: The constraint this index implements (primary key,
            unique, exclusion), if any.
        valid: False while a ``CREATE INDEX CONCURRENTLY`` is unfinished or
            after it failed.
        column_names: The index's own column names (``lower`` for
            ``lower(email)``): what PostgreSQL builds a default name from.
        comment: ``COMMENT ON INDEX``.
    """

    name: str
    definition: str
    method: str
    unique: bool = False
    primary: bool = False
    columns: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    partial: bool = False
    predicate: str | None = None
    constraint: str | None = None
    valid: bool = True
    column_names: tuple[str, ...] = ()
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class Trigger(SchemaObject):
    """A trigger on a table or view (internal ones, such as those behind
    foreign keys, are left out).

    Attributes:
        name: The trigger name.
        definition: ``pg_get_triggerdef`` (a whole ``CREATE TRIGGER``).
        function: The trigger function, qualified.
        enabled: ``"origin"`` (the default), ``"disabled"``, ``"replica"``
            or ``"always"``.
        comment: ``COMMENT ON TRIGGER``.
    """

    name: str
    definition: str
    function: str
    enabled: str = "origin"
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class Table(SchemaObject):
    """A table: ordinary, partitioned or foreign.

    Attributes:
        schema: Its schema.
        name: Its name.
        kind: ``"table"``, ``"partitioned table"`` or ``"foreign table"``.
        persistence: ``"permanent"``, ``"unlogged"`` or ``"temporary"``.
        owner: The owning role.
        partition_key: A partitioned table's key (``RANGE (created_at)``).
        partition_of: A partition's parent, qualified.
        partition_bound: A partition's bound (``FOR VALUES FROM ... TO ...``,
            ``DEFAULT``).
        inherits: Parents by plain inheritance (``INHERITS``), qualified.
        options: Storage parameters (``fillfactor=70``).
        row_security: ``ENABLE ROW LEVEL SECURITY``.
        force_row_security: ``FORCE ROW LEVEL SECURITY``.
        columns: In position order.
        constraints: By name.
        indexes: By name.
        triggers: By name.
        grants: Table privileges.
        comment: ``COMMENT ON TABLE``.
    """

    schema: str
    name: str
    kind: str = "table"
    persistence: str = "permanent"
    owner: str = ""
    partition_key: str | None = None
    partition_of: str | None = None
    partition_bound: str | None = None
    inherits: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    row_security: bool = False
    force_row_security: bool = False
    columns: tuple[Column, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    indexes: tuple[Index, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    grants: tuple[Grant, ...] = ()
    comment: str | None = None

    @property
    def qualified_name(self) -> str:
        """``schema.name``, quoted as needed."""
        return qualify(self.schema, self.name)

    def column(self, name: str) -> Column:
        """The column called *name*.

        Raises:
            KeyError: No such column.
        """
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.qualified_name} has no column {name!r}")


@dataclass(frozen=True, slots=True)
class View(SchemaObject):
    """A view or materialized view.

    Attributes:
        schema: Its schema.
        name: Its name.
        kind: ``"view"`` or ``"materialized view"``.
        definition: ``pg_get_viewdef`` (the ``SELECT``).
        owner: The owning role.
        options: ``security_barrier``, ``check_option``,
            ``security_invoker``...
        columns: Its output columns.
        indexes: A materialized view's indexes.
        triggers: ``INSTEAD OF`` triggers.
        grants: Privileges.
        comment: ``COMMENT ON VIEW``.
    """

    schema: str
    name: str
    kind: str
    definition: str
    owner: str = ""
    options: tuple[str, ...] = ()
    columns: tuple[Column, ...] = ()
    indexes: tuple[Index, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    grants: tuple[Grant, ...] = ()
    comment: str | None = None

    @property
    def qualified_name(self) -> str:
        """``schema.name``, quoted as needed."""
        return qualify(self.schema, self.name)


@dataclass(frozen=True, slots=True)
class Sequence(SchemaObject):
    """A sequence (identity columns' own sequences are part of the column).

    Attributes:
        owned_by: ``OWNED BY`` column as ``schema.table.column`` (serial).
    """

    schema: str
    name: str
    type: str
    start: int
    increment: int
    minimum: int
    maximum: int
    cache: int
    cycle: bool
    owned_by: str | None = None
    owner: str = ""
    grants: tuple[Grant, ...] = ()
    comment: str | None = None

    @property
    def qualified_name(self) -> str:
        """``schema.name``, quoted as needed."""
        return qualify(self.schema, self.name)


@dataclass(frozen=True, slots=True)
class Function(SchemaObject):
    """A function, procedure, aggregate or window function.

    Overloads are told apart by ``identity_arguments``.

    Attributes:
        kind: ``"function"``, ``"procedure"``, ``"aggregate"`` or ``"window"``.
        identity_arguments: The argument types that identify it
            (``pg_get_function_identity_arguments``).
        arguments: The full argument list, with names and defaults.
        result: The result type (``SETOF text``, ``TABLE(...)``; None for a
            procedure).
        language: ``sql``, ``plpgsql``, ``c``, ``internal``...
        volatility: ``"immutable"``, ``"stable"`` or ``"volatile"``.
        strict: ``STRICT`` (returns null on null input).
        security_definer: ``SECURITY DEFINER``.
        leakproof: ``LEAKPROOF``.
        parallel: ``"safe"``, ``"restricted"`` or ``"unsafe"``.
        config: ``SET`` clauses (``search_path=public``).
        body: The source text; for an SQL-standard body (``BEGIN ATOMIC``,
            PostgreSQL 14+) the server's rendering of it.
    """

    schema: str
    name: str
    kind: str
    identity_arguments: str
    arguments: str
    result: str | None
    language: str
    volatility: str = "volatile"
    strict: bool = False
    security_definer: bool = False
    leakproof: bool = False
    parallel: str = "unsafe"
    config: tuple[str, ...] = ()
    body: str | None = None
    owner: str = ""
    grants: tuple[Grant, ...] = ()
    comment: str | None = None

    @property
    def qualified_name(self) -> str:
        """``schema.name``, quoted as needed."""
        return qualify(self.schema, self.name)

    @property
    def signature(self) -> str:
        """``schema.name(argument types)``: what identifies an overload."""
        return f"{self.qualified_name}({self.identity_arguments})"


@dataclass(frozen=True, slots=True)
class EnumType(SchemaObject):
    """An enum type; ``labels`` in their sort order."""

    schema: str
    name: str
    labels: tuple[str, ...]
    owner: str = ""
    grants: tuple[Grant, ...] = ()
    comment: str | None = None

    @property
    def qualified_name(self) -> str:
        """``schema.name``, quoted as needed."""
        return qualify(self.schema, self.name)


@dataclass(frozen=True, slots=True)
class DomainType(SchemaObject):
    """A domain over ``base_type``, with its ``CHECK`` constraints."""

    schema: str
    name: str
    base_type: str
    not_null: bool = False
    default: str | None = None
    collation: str | None = None
    constraints: tuple[Constraint, ...] = ()
    owner: str = ""
    grants: tuple[Grant, ...] = ()
    comment: str | None = None

    @property
    def qualified_name(self) -> str:
        """``schema.name``, quoted as needed."""
        return qualify(self.schema, self.name)


@dataclass(frozen=True, slots=True)
class CompositeType(SchemaObject):
    """A composite type made with ``CREATE TYPE ... AS (...)``."""

    schema: str
    name: str
    attributes: tuple[Column, ...]
    owner: str = ""
    grants: tuple[Grant, ...] = ()
    comment: str | None = None

    @property
    def qualified_name(self) -> str:
        """``schema.name``, quoted as needed."""
        return qualify(self.schema, self.name)


@dataclass(frozen=True, slots=True)
class RangeType(SchemaObject):
    """A range type over ``subtype``."""

    schema: str
    name: str
    subtype: str
    collation: str | None = None
    owner: str = ""
    grants: tuple[Grant, ...] = ()
    comment: str | None = None

    @property
    def qualified_name(self) -> str:
        """``schema.name``, quoted as needed."""
        return qualify(self.schema, self.name)


@dataclass(frozen=True, slots=True)
class Extension(SchemaObject):
    """An installed extension; the objects it brings are left out of the
    snapshot (they belong to it)."""

    name: str
    version: str
    schema: str
    comment: str | None = None

    @property
    def qualified_name(self) -> str:
        """The name, quoted as needed (extensions are not schema-qualified)."""
        return quote_ident(self.name)
