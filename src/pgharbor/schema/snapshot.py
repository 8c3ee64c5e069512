"""`SchemaSnapshot`: everything one read of the catalogue found, and its JSON form."""

from __future__ import annotations

import json
import types
from dataclasses import dataclass, fields
from typing import Any, Union, get_args, get_origin, get_type_hints

from .model import (
    CompositeType,
    DomainType,
    EnumType,
    Extension,
    Function,
    RangeType,
    Schema,
    SchemaObject,
    Sequence,
    Table,
    View,
)
from .names import qualify

__all__ = ["SchemaSnapshot", "from_plain"]


@dataclass(frozen=True, slots=True)
class SchemaSnapshot(SchemaObject):
    """The schemas of one database as one role saw them, at one moment.

    Every collection is a tuple sorted by schema and name (functions by
    signature too), so two snapshots of the same schema compare equal
    (``==``) whatever the OIDs and the order objects were created in.

    Attributes:
        database: ``current_database()``.
        user: The role that read the catalogue.
        server_version: ``"16.2"``.
        server_version_num: ``160002``.
        in_recovery: Read from a standby.
        requested: The schema names asked for; None: every schema but the
            system's (``pg_*``, ``information_schema``).
        schemas: The schemas found.
        tables: Tables, partitioned tables, partitions and foreign tables,
            each with its columns, constraints, indexes and triggers.
        views: Views and materialized views.
        sequences: Sequences (not identity columns' own).
        functions: Functions, procedures, aggregates, window functions.
        enums: Enum types.
        domains: Domains.
        composites: Standalone composite types.
        ranges: Range types.
        extensions: Extensions installed in those schemas.
    """

    database: str
    user: str
    server_version: str
    server_version_num: int
    in_recovery: bool = False
    requested: tuple[str, ...] | None = None
    schemas: tuple[Schema, ...] = ()
    tables: tuple[Table, ...] = ()
    views: tuple[View, ...] = ()
    sequences: tuple[Sequence, ...] = ()
    functions: tuple[Function, ...] = ()
    enums: tuple[EnumType, ...] = ()
    domains: tuple[DomainType, ...] = ()
    composites: tuple[CompositeType, ...] = ()
    ranges: tuple[RangeType, ...] = ()
    extensions: tuple[Extension, ...] = ()

    def table(self, schema: str, name: str) -> Table:
        """The table *schema*.*name* (unquoted names).

        Raises:
            KeyError: No such table in the snapshot.
        """
        for table in self.tables:
            if (table.schema, table.name) == (schema, name):
                return table
        raise KeyError(f"no table {qualify(schema, name)} in the snapshot")

    def counts(self) -> dict[str, int]:
        """How many objects of each kind (columns, constraints, indexes and
        triggers counted over tables and views)."""
        relations: list[Table | View] = [*self.tables, *self.views]
        return {
            "schemas": len(self.schemas),
            "tables": len(self.tables),
            "views": len(self.views),
            "columns": sum(len(r.columns) for r in relations),
            "constraints": sum(len(t.constraints) for t in self.tables),
            "indexes": sum(len(r.indexes) for r in relations),
            "triggers": sum(len(r.triggers) for r in relations),
            "sequences": len(self.sequences),
            "functions": len(self.functions),
            "types": len(self.enums) + len(self.domains) + len(self.composites) + len(self.ranges),
            "extensions": len(self.extensions),
        }

    def to_json(self, indent: int | None = 2) -> str:
        """The snapshot as JSON (non-ASCII kept as is)."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SchemaSnapshot:
        """Rebuild a snapshot from `to_dict`'s output (or parsed `to_json`).

        Raises:
            TypeError: A key that is not a field, or a required one missing.
        """
        snapshot = from_plain(cls, data)
        assert isinstance(snapshot, SchemaSnapshot)
        return snapshot

    @classmethod
    def from_json(cls, text: str) -> SchemaSnapshot:
        """Rebuild a snapshot from `to_json`'s output."""
        return cls.from_dict(json.loads(text))


def from_plain(cls: type[SchemaObject], data: dict[str, Any]) -> SchemaObject:
    """Build *cls* (a snapshot dataclass) from plain values, recursively.

    Raises:
        TypeError: Unknown or missing fields.
    """
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {', '.join(sorted(unknown))}")
    return cls(**{k: _convert(hints[k], v) for k, v in data.items()})


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = get_origin(hint)
    if origin is tuple:
        item = get_args(hint)[0]
        return tuple(_convert(item, v) for v in value)
    if origin in (Union, types.UnionType):
        (inner,) = [a for a in get_args(hint) if a is not type(None)]
        return _convert(inner, value)
    if isinstance(hint, type) and issubclass(hint, SchemaObject):
        return from_plain(hint, value)
    return value
