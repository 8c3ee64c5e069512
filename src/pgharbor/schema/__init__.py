"""Schema snapshots read from ``pg_catalog``, and the differences between two.

``db.schema()`` (on `Database` and `AsyncDatabase`) returns a
`SchemaSnapshot`; `diff` compares two. Pure code lives here — the snapshot
model (`model`, `snapshot`), the catalogue queries (`catalog`), the reader
that runs them through any ``fetch`` (`read`) and the comparison (`diff`) —
so the sync and async flavours, every driver and the CLI share it.
"""

from __future__ import annotations

from .catalog import CATALOG_FUNCTIONS, CATALOG_RELATIONS
from .diff import Change, Difference, diff
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
    SchemaObject,
    Sequence,
    Table,
    Trigger,
    View,
)
from .names import is_default_name, qualify, quote_ident
from .read import read_schema_async, read_schema_sync, snapshot_steps
from .snapshot import SchemaSnapshot

__all__ = [
    "CATALOG_FUNCTIONS",
    "CATALOG_RELATIONS",
    "Change",
    "Column",
    "CompositeType",
    "Constraint",
    "Difference",
    "DomainType",
    "EnumType",
    "Extension",
    "Function",
    "Grant",
    "Index",
    "RangeType",
    "Schema",
    "SchemaObject",
    "SchemaSnapshot",
    "Sequence",
    "Table",
    "Trigger",
    "View",
    "diff",
    "is_default_name",
    "qualify",
    "quote_ident",
    "read_schema_async",
    "read_schema_sync",
    "snapshot_steps",
]
