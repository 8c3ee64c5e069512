"""`diff`: what differs between two schema snapshots, object by object.

Pure code over two `SchemaSnapshot` objects (from two databases, one
database at two moments, or JSON saved earlier). Objects are matched by
identity — schema and name; a function by its argument types too; a column,
constraint, index or trigger by its table and name — never by OID or by the
order they were created in. The result is a sorted list of `Difference`:
an object *added* (only in the target), *removed* (only in the source) or
*changed*, with each changed attribute's source and target values. An added
or removed table brings its columns, constraints, indexes and triggers
along without listing them.

Indexes that implement a constraint (primary key, unique, exclusion) are
compared through the constraint. Column positions are not compared unless
asked (``column_order=True``): adding a column elsewhere shifts them. With
``ignore_default_names=True`` a constraint or index whose name is the one
PostgreSQL would have chosen itself (``orders_pkey``,
``orders_customer_id_idx1``) is matched by its definition instead, so two
databases that only disagree on such names compare equal.

Nothing here writes SQL: it reports, it does not migrate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from collections.abc import Sequence as Seq
from dataclasses import dataclass, fields
from typing import Any, Literal

from .model import (
    Column,
    Constraint,
    Extension,
    Function,
    Index,
    Schema,
    SchemaObject,
    Table,
    Trigger,
    View,
)
from .names import is_default_name, quote_ident
from .snapshot import SchemaSnapshot

__all__ = ["KINDS", "Change", "Difference", "diff"]

ChangeKind = Literal["added", "removed", "changed"]

#: The kinds a `Difference` can be about, in report order.
KINDS = (
    "schema",
    "extension",
    "type",
    "sequence",
    "table",
    "column",
    "constraint",
    "index",
    "trigger",
    "view",
    "function",
)
_RANK = {kind: i for i, kind in enumerate(KINDS)}
_CHILDREN = ("columns", "constraints", "indexes", "triggers")
_IDENTITY = ("schema", "name")


@dataclass(frozen=True, slots=True)
class Change:
    """One attribute that differs: its value in the source and in the target
    (plain values, as in ``to_dict()``)."""

    attribute: str
    source: Any
    target: Any

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return {"attribute": self.attribute, "source": self.source, "target": self.target}


@dataclass(frozen=True, slots=True)
class Difference:
    """One object that differs between the source and the target.

    Attributes:
        change: ``"added"`` (only in the target), ``"removed"`` (only in the
            source) or ``"changed"``.
        kind: One of `KINDS`.
        schema: The schema the object is in (None for a schema itself).
        name: The object's name, quoted as needed: qualified for top-level
            objects (``app."Order"``), a function with its argument types
            (``app.add(integer, integer)``), bare for a table's column,
            constraint, index or trigger.
        table: For those, the qualified table (or view); else None.
        changes: For ``"changed"``: each differing attribute.
        detail: A short description of the object (a column's type, a
            constraint's definition) for added and removed ones.
    """

    change: ChangeKind
    kind: str
    schema: str | None
    name: str
    table: str | None = None
    changes: tuple[Change, ...] = ()
    detail: str | None = None

    @property
    def path(self) -> str:
        """The object's full name (``app.orders.total`` for a column)."""
        return f"{self.table}.{self.name}" if self.table else self.name

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        return {
            "change": self.change,
            "kind": self.kind,
            "schema": self.schema,
            "name": self.name,
            "table": self.table,
            "changes": [c.to_dict() for c in self.changes],
            "detail": self.detail,
        }

    def __str__(self) -> str:
        head = f"{self.change} {self.kind} {self.path}"
        if self.changes:
            return head + ": " + "; ".join(f"{c.attribute}" for c in self.changes)
        return head


@dataclass(frozen=True, slots=True)
class _Options:
    ignore_default_names: bool
    ignore_owners: bool
    ignore_grants: bool
    ignore_comments: bool
    column_order: bool

    def skipped(self) -> set[str]:
        out = set()
        if self.ignore_owners:
            out.add("owner")
        if self.ignore_grants:
            out.add("grants")
        if self.ignore_comments:
            out.add("comment")
        if not self.column_order:
            out.add("position")
        return out


def diff(
    source: SchemaSnapshot,
    target: SchemaSnapshot,
    *,
    ignore_default_names: bool = False,
    ignore_owners: bool = False,
    ignore_grants: bool = False,
    ignore_comments: bool = False,
    column_order: bool = False,
) -> list[Difference]:
    """Every difference between *source* and *target*, sorted by schema,
    object and kind. Empty when they describe the same schema.

    Args:
        source: The snapshot taken as the reference.
        target: The one compared with it ("added" = only here).
        ignore_default_names: Match constraints and indexes that carry the
            name PostgreSQL would have chosen by definition, not by name.
        ignore_owners: Leave owners out (they often differ between
            environments).
        ignore_grants: Leave privileges out.
        ignore_comments: Leave comments out.
        column_order: Also report columns whose position differs.
    """
    opts = _Options(
        ignore_default_names, ignore_owners, ignore_grants, ignore_comments, column_order
    )
    out: list[Difference] = []
    top: list[tuple[str, Callable[[SchemaSnapshot], Iterable[Any]]]] = [
        ("schema", lambda s: s.schemas),
        ("extension", lambda s: s.extensions),
        ("type", lambda s: (*s.enums, *s.domains, *s.composites, *s.ranges)),
        ("sequence", lambda s: s.sequences),
        ("table", lambda s: s.tables),
        ("view", lambda s: s.views),
        ("function", lambda s: s.functions),
    ]
    for kind, pick in top:
        src = {_key(o): o for o in pick(source)}
        dst = {_key(o): o for o in pick(target)}
        for key in src.keys() | dst.keys():
            a, b = src.get(key), dst.get(key)
            if a is None or b is None:
                obj = a if b is None else b
                out.append(_presence("removed" if b is None else "added", kind, obj, None))
            elif type(a) is not type(b):  # an enum became a domain, say
                out.append(_presence("removed", kind, a, None))
                out.append(_presence("added", kind, b, None))
            else:
                out.extend(_compare(kind, a, b, None, opts))
                if isinstance(a, Table | View):
                    out.extend(_children(a, b, opts))
    out.sort(key=_order)
    return out


def _key(obj: Any) -> tuple[str, ...]:
    """What identifies a top-level object across databases."""
    if isinstance(obj, Function):
        return (obj.schema, obj.name, obj.identity_arguments)
    if isinstance(obj, Schema | Extension):  # an extension: one per database
        return (obj.name,)
    return (obj.schema, obj.name)


def _display(obj: Any) -> tuple[str | None, str]:
    """(schema, name as shown) of a top-level object."""
    if isinstance(obj, Function):
        return obj.schema, obj.signature
    if isinstance(obj, Schema):
        return None, obj.qualified_name
    return obj.schema, obj.qualified_name


def _detail(obj: Any) -> str | None:
    if isinstance(obj, Column):
        return obj.type
    if isinstance(obj, Constraint | Index | Trigger | View):
        return obj.definition
    if isinstance(obj, Table):
        return obj.kind if obj.kind != "table" else None
    return None


def _presence(change: ChangeKind, kind: str, obj: Any, table: Table | View | None) -> Difference:
    if table is None:
        schema, name = _display(obj)
        return Difference(change, kind, schema, name, detail=_detail(obj))
    return Difference(
        change,
        kind,
        table.schema,
        quote_ident(obj.name),
        table.qualified_name,
        detail=_detail(obj),
    )


def _compare(
    kind: str, a: Any, b: Any, table: Table | View | None, opts: _Options, *, renamed: bool = False
) -> list[Difference]:
    """A "changed" difference listing the attributes that differ, or none."""
    # An extension's schema is where it lives, not who it is.
    identity = {"name"} if isinstance(a, Extension) else set(_IDENTITY)
    skip = opts.skipped() | identity | set(_CHILDREN)
    if renamed:
        # Matched by definition: the name (and what repeats it) may differ.
        skip |= {"name", "constraint", "definition"} if isinstance(a, Index) else {"name"}
    changes = []
    for f in fields(a):
        if f.name in skip:
            continue
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if va != vb:
            changes.append(Change(f.name, _plain(va), _plain(vb)))
    if not changes:
        return []
    if table is None:
        schema, name = _display(a)
        return [Difference("changed", kind, schema, name, changes=tuple(changes))]
    return [
        Difference(
            "changed",
            kind,
            table.schema,
            quote_ident(a.name),
            table.qualified_name,
            changes=tuple(changes),
        )
    ]


def _plain(value: Any) -> Any:
    if isinstance(value, SchemaObject):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _children(a: Table | View, b: Table | View, opts: _Options) -> list[Difference]:
    out: list[Difference] = []
    pairs: list[tuple[str, Seq[Any], Seq[Any]]] = [
        ("column", a.columns, b.columns),
        ("index", _own_indexes(a), _own_indexes(b)),
        ("trigger", a.triggers, b.triggers),
    ]
    if isinstance(a, Table) and isinstance(b, Table):
        pairs.append(("constraint", a.constraints, b.constraints))
    for kind, xs, ys in pairs:
        src = {obj.name: obj for obj in xs}
        dst = {obj.name: obj for obj in ys}
        for name in src.keys() & dst.keys():
            out.extend(_compare(kind, src.pop(name), dst.pop(name), a, opts))
        if opts.ignore_default_names:
            for x, y in _pair_default_named(a.name, src, dst):
                out.extend(_compare(kind, x, y, a, opts, renamed=True))
        out.extend(_presence("removed", kind, x, a) for x in src.values())
        out.extend(_presence("added", kind, y, a) for y in dst.values())
    return out


def _own_indexes(rel: Table | View) -> tuple[Index, ...]:
    """Indexes not implementing a constraint (those compare as constraints)."""
    return tuple(i for i in rel.indexes if i.constraint is None)


def _pair_default_named(
    table: str, src: dict[str, Any], dst: dict[str, Any]
) -> list[tuple[Any, Any]]:
    """Pairs of constraints or indexes left unmatched by name, both carrying
    a name PostgreSQL chose, with the same definition; taken out of *src*
    and *dst*. Paired in name order when several share a definition."""
    wanted: dict[tuple[Any, ...], list[str]] = {}
    for name in sorted(src):
        if _has_default_name(table, src[name]):
            wanted.setdefault(_signature(src[name]), []).append(name)
    pairs = []
    for name in sorted(dst):
        if not _has_default_name(table, dst[name]):
            continue
        match = wanted.get(_signature(dst[name]))
        if match:
            pairs.append((src.pop(match.pop(0)), dst.pop(name)))
    return pairs


def _has_default_name(table: str, obj: Any) -> bool:
    if isinstance(obj, Constraint):
        label, candidates = _CONSTRAINT_LABELS[obj.kind](obj.columns)
        return is_default_name(obj.name, table, label, candidates)
    if isinstance(obj, Index):
        names = list(obj.column_names)
        return is_default_name(obj.name, table, "idx", [names, names[: len(obj.columns)]])
    return False


_CONSTRAINT_LABELS: dict[str, Callable[[tuple[str, ...]], tuple[str, list[Any]]]] = {
    "primary key": lambda cols: ("pkey", [None]),
    "unique": lambda cols: ("key", [list(cols)]),
    "exclusion": lambda cols: ("excl", [list(cols)]),
    "foreign key": lambda cols: ("fkey", [list(cols), list(cols[:1])]),
    "check": lambda cols: ("check", [None, *([c] for c in cols)]),
}


def _signature(obj: Constraint | Index) -> tuple[Any, ...]:
    if isinstance(obj, Constraint):
        return ("constraint", obj.kind, obj.definition)
    # pg_get_indexdef names the index: "CREATE [UNIQUE] INDEX <name> ON ...".
    named = f" INDEX {quote_ident(obj.name)} ON "
    if named in obj.definition:
        return ("index", obj.definition.replace(named, " INDEX ON ", 1))
    return ("index", obj.method, obj.unique, obj.columns, obj.include, obj.predicate)


def _order(d: Difference) -> tuple[Any, ...]:
    """Schemas first, then by schema and object, the object before its parts."""
    if d.kind == "schema":
        return (0, d.name, "", 0, "")
    owner = d.table or d.name
    return (1, d.schema or "", owner, _RANK[d.kind], d.name)
