"""The catalogue queries behind a schema snapshot: one per object kind.

Pure code: `snapshot_queries` returns the statements (``%s`` placeholders,
see `pgharbor.facts`) for a server version; `pgharbor.schema.read` runs them
and builds the snapshot. Everything is read from ``pg_catalog`` — never
``information_schema``, whose views hide what the reading role neither owns
nor may change: a role that may only read sees every constraint, sequence,
trigger and grant here.

Every query takes one parameter, the schema names (``text[]``), except the
first two: ``META`` (the server and session, and it empties the
transaction's ``search_path`` so that every name the server renders comes
out schema-qualified) and ``SCHEMAS`` (which schemas there are: those asked
for, or every one but the system's). Objects an extension brings are left
out: the extension itself is listed.

`CATALOG_RELATIONS` and `CATALOG_FUNCTIONS` name what these queries read and
call: `pgharbor.privileges.CatalogRead` checks exactly that.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..facts import Query

__all__ = [
    "CATALOG_FUNCTIONS",
    "CATALOG_RELATIONS",
    "META",
    "SCHEMAS",
    "KindQueries",
    "snapshot_queries",
]

#: Every relation the snapshot reads (all in ``pg_catalog``, all per database),
#: directly or through the functions it calls.
CATALOG_RELATIONS: tuple[str, ...] = tuple(
    f"pg_catalog.{name}"
    for name in (
        "pg_am",
        "pg_attrdef",
        "pg_attribute",
        "pg_class",
        "pg_collation",
        "pg_constraint",
        "pg_depend",
        "pg_description",
        "pg_enum",
        "pg_extension",
        "pg_index",
        "pg_inherits",
        "pg_language",
        "pg_namespace",
        "pg_proc",
        "pg_range",
        "pg_rewrite",  # pg_get_viewdef reads it (through SPI, as the caller)
        "pg_sequence",
        "pg_trigger",
        "pg_type",
    )
)

#: The functions that read definitions, names and privileges, as signatures
#: (each exists on PostgreSQL 13 to 18). Operators, ``json_agg`` and the
#: like are not listed: a server that revoked those breaks psql as well.
CATALOG_FUNCTIONS: tuple[str, ...] = tuple(
    f"pg_catalog.{sig}"
    for sig in (
        'acldefault("char", oid)',
        "aclexplode(aclitem[])",
        "format_type(oid, integer)",
        "pg_get_constraintdef(oid)",
        "pg_get_expr(pg_node_tree, oid)",
        "pg_get_expr(pg_node_tree, oid, boolean)",
        "pg_get_function_arguments(oid)",
        "pg_get_function_identity_arguments(oid)",
        "pg_get_function_result(oid)",
        "pg_get_indexdef(oid)",
        "pg_get_indexdef(oid, integer, boolean)",
        "pg_get_partkeydef(oid)",
        "pg_get_triggerdef(oid)",
        "pg_get_userbyid(oid)",
        "pg_get_viewdef(oid, boolean)",
        "pg_is_in_recovery()",
        "set_config(text, text, boolean)",
    )
)

# The first query: who and where, and an empty search_path for the rest of
# the transaction (names in pg_get_*def output are then always qualified).
# Fully qualified itself, as the session's search_path still applies to it.
META = Query(
    "SELECT pg_catalog.set_config('search_path', '', true),"
    " pg_catalog.current_setting('server_version_num')::int,"
    " pg_catalog.current_setting('server_version'),"
    " pg_catalog.current_database()::text,"
    " CURRENT_USER::text,"
    " pg_catalog.pg_is_in_recovery()"
)

_DEFAULT_SCHEMAS = "n.nspname <> 'information_schema' AND left(n.nspname, 3) <> 'pg_'"


def _member(classid: str, oid: str) -> str:
    """True when the object belongs to an extension."""
    return (
        "EXISTS (SELECT FROM pg_depend AS x WHERE x.classid = "
        f"'{classid}'::regclass AND x.objid = {oid} AND x.deptype = 'e')"
    )


def _comment(classid: str, oid: str, sub: str = "0") -> str:
    """The description of an object (a LEFT JOIN ... ON condition)."""
    return f"d.objoid = {oid} AND d.classoid = '{classid}'::regclass AND d.objsubid = {sub}"


def _grants(acl: str, kind: str | None = None, owner: str | None = None) -> str:
    """The effective privileges as a JSON array of [grantee, privilege,
    grantable]: the defaults (``acldefault``) where the catalogue stores
    none, unless *kind* is None (columns have no defaults)."""
    source = acl if kind is None else f"coalesce({acl}, acldefault('{kind}', {owner}))"
    return (
        "(SELECT json_agg(json_build_array(CASE WHEN a.grantee = 0 THEN 'PUBLIC'"
        " ELSE pg_get_userbyid(a.grantee)::text END, a.privilege_type, a.is_grantable))::text"
        f" FROM aclexplode({source}) AS a)"
    )


SCHEMAS = Query(
    "SELECT n.nspname::text, pg_get_userbyid(n.nspowner)::text,"
    f" {_grants('n.nspacl', 'n', 'n.nspowner')}, d.description,"
    " current_setting('search_path')"
    " FROM pg_namespace AS n"
    f" LEFT JOIN pg_description AS d ON {_comment('pg_namespace', 'n.oid')}"
    f" WHERE CASE WHEN %s::text[] IS NULL THEN {_DEFAULT_SCHEMAS}"
    " ELSE n.nspname = ANY(%s::text[]) END"
    f" AND NOT {_member('pg_namespace', 'n.oid')}"
    " ORDER BY n.nspname"
)


def _in_schemas() -> str:
    """In the schemas asked for (the parameter), and no extension's."""
    return f"n.nspname = ANY(%s::text[]) AND NOT {_member('pg_class', 'c.oid')}"


_TABLES = f"""\
SELECT n.nspname::text, c.relname::text, c.relkind::text, c.relpersistence::text,
  pg_get_userbyid(c.relowner)::text,
  CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
  c.relispartition,
  CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END,
  (SELECT json_agg(json_build_array(pn.nspname, p.relname) ORDER BY i.inhseqno)::text
     FROM pg_inherits AS i JOIN pg_class AS p ON p.oid = i.inhparent
     JOIN pg_namespace AS pn ON pn.oid = p.relnamespace WHERE i.inhrelid = c.oid),
  c.reloptions::text[], c.relrowsecurity, c.relforcerowsecurity,
  {_grants("c.relacl", "r", "c.relowner")}, d.description
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_description AS d ON {_comment("pg_class", "c.oid")}
WHERE c.relkind IN ('r', 'p', 'f') AND {_in_schemas()}
ORDER BY n.nspname, c.relname"""

# Columns of tables, views, materialized views and composite types.
_COLUMNS = f"""\
SELECT n.nspname::text, c.relname::text, a.attname::text,
  format_type(a.atttypid, a.atttypmod), a.attnotnull,
  pg_get_expr(ad.adbin, ad.adrelid), a.attidentity::text, a.attgenerated::text,
  cn.nspname::text, co.collname::text, a.attinhcount > 0,
  {_grants("a.attacl")}, d.description
FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_type AS t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef AS ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
LEFT JOIN pg_collation AS co ON co.oid = a.attcollation AND a.attcollation <> t.typcollation
LEFT JOIN pg_namespace AS cn ON cn.oid = co.collnamespace
LEFT JOIN pg_description AS d ON {_comment("pg_class", "c.oid", "a.attnum")}
WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'c') AND a.attnum > 0 AND NOT a.attisdropped
  AND {_in_schemas()}
ORDER BY n.nspname, c.relname, a.attnum"""


def _names_of(keys: str, relid: str) -> str:
    """Column names of the attribute numbers *keys* of *relid*, in order."""
    return (
        f"ARRAY(SELECT a.attname::text FROM unnest({keys}) WITH ORDINALITY AS k(num, ord)"
        f" JOIN pg_attribute AS a ON a.attrelid = {relid} AND a.attnum = k.num ORDER BY k.ord)"
    )


def _constraints(version: int) -> str:
    # A foreign key to a partitioned table has one row per referenced
    # partition besides its own, on the same table: only the top one counts.
    enforced = "con.conenforced" if version >= 180000 else "true"
    return f"""\
SELECT n.nspname::text, c.relname::text, con.conname::text, con.contype::text,
  pg_get_constraintdef(con.oid), {_names_of("con.conkey", "con.conrelid")},
  fn.nspname::text, f.relname::text, {_names_of("con.confkey", "con.confrelid")},
  con.confupdtype::text, con.confdeltype::text, con.confmatchtype::text,
  con.condeferrable, con.condeferred, con.convalidated, {enforced},
  NOT con.conislocal, con.connoinherit, d.description
FROM pg_constraint AS con JOIN pg_class AS c ON c.oid = con.conrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_class AS f ON f.oid = con.confrelid
LEFT JOIN pg_namespace AS fn ON fn.oid = f.relnamespace
LEFT JOIN pg_description AS d ON {_comment("pg_constraint", "con.oid")}
WHERE con.contype IN ('p', 'u', 'f', 'c', 'x') AND {_in_schemas()}
  AND NOT EXISTS (SELECT FROM pg_constraint AS up
                  WHERE up.oid = con.conparentid AND up.conrelid = con.conrelid)
ORDER BY n.nspname, c.relname, con.conname"""


_INDEXES = f"""\
SELECT n.nspname::text, c.relname::text, ic.relname::text, pg_get_indexdef(i.indexrelid),
  am.amname::text, i.indisunique, i.indisprimary,
  ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true)
        FROM generate_series(1, i.indnkeyatts::int) AS k ORDER BY k),
  ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true)
        FROM generate_series(i.indnkeyatts::int + 1, i.indnatts::int) AS k ORDER BY k),
  pg_get_expr(i.indpred, i.indrelid, true), con.conname::text, i.indisvalid,
  ARRAY(SELECT a.attname::text FROM pg_attribute AS a
        WHERE a.attrelid = i.indexrelid ORDER BY a.attnum),
  d.description
FROM pg_index AS i JOIN pg_class AS ic ON ic.oid = i.indexrelid
JOIN pg_class AS c ON c.oid = i.indrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_am AS am ON am.oid = ic.relam
LEFT JOIN pg_constraint AS con ON con.conindid = i.indexrelid
  AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x')
LEFT JOIN pg_description AS d ON {_comment("pg_class", "ic.oid")}
WHERE c.relkind IN ('r', 'p', 'm') AND {_in_schemas()}
ORDER BY n.nspname, c.relname, ic.relname"""

# Identity columns' sequences (dependency 'i') belong to the column.
_SEQUENCES = f"""\
SELECT n.nspname::text, c.relname::text, format_type(s.seqtypid, NULL),
  s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle,
  (SELECT json_build_array(tn.nspname, t.relname, ta.attname)::text
     FROM pg_depend AS dep JOIN pg_class AS t ON t.oid = dep.refobjid
     JOIN pg_namespace AS tn ON tn.oid = t.relnamespace
     JOIN pg_attribute AS ta ON ta.attrelid = t.oid AND ta.attnum = dep.refobjsubid
     WHERE dep.classid = 'pg_class'::regclass AND dep.objid = c.oid
       AND dep.refclassid = 'pg_class'::regclass AND dep.deptype = 'a' LIMIT 1),
  pg_get_userbyid(c.relowner)::text, {_grants("c.relacl", "s", "c.relowner")}, d.description
FROM pg_sequence AS s JOIN pg_class AS c ON c.oid = s.seqrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_description AS d ON {_comment("pg_class", "c.oid")}
WHERE {_in_schemas()}
  AND NOT EXISTS (SELECT FROM pg_depend AS dep WHERE dep.classid = 'pg_class'::regclass
                  AND dep.objid = c.oid AND dep.deptype = 'i')
ORDER BY n.nspname, c.relname"""

_VIEWS = f"""\
SELECT n.nspname::text, c.relname::text, c.relkind::text, pg_get_viewdef(c.oid, true),
  pg_get_userbyid(c.relowner)::text, c.reloptions::text[],
  {_grants("c.relacl", "r", "c.relowner")}, d.description
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_description AS d ON {_comment("pg_class", "c.oid")}
WHERE c.relkind IN ('v', 'm') AND {_in_schemas()}
ORDER BY n.nspname, c.relname"""


def _functions(version: int) -> str:
    # Functions made for another object (a range type's constructors) depend
    # on it internally ('i') and are left out with it.
    # SQL-standard bodies (BEGIN ATOMIC, 14+) live in prosqlbody, not prosrc.
    body = (
        "CASE WHEN p.prosqlbody IS NOT NULL THEN pg_get_function_sqlbody(p.oid) ELSE p.prosrc END"
        if version >= 140000
        else "p.prosrc"
    )
    return f"""\
SELECT n.nspname::text, p.proname::text, p.prokind::text,
  pg_get_function_identity_arguments(p.oid), pg_get_function_arguments(p.oid),
  CASE WHEN p.prokind <> 'p' THEN pg_get_function_result(p.oid) END,
  l.lanname::text, p.provolatile::text, p.proisstrict, p.prosecdef, p.proleakproof,
  p.proparallel::text, p.proconfig::text[],
  CASE WHEN p.prokind <> 'a' THEN {body} END,
  pg_get_userbyid(p.proowner)::text, {_grants("p.proacl", "f", "p.proowner")}, d.description
FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
JOIN pg_language AS l ON l.oid = p.prolang
LEFT JOIN pg_description AS d ON {_comment("pg_proc", "p.oid")}
WHERE n.nspname = ANY(%s::text[]) AND NOT {_member("pg_proc", "p.oid")}
  AND NOT EXISTS (SELECT FROM pg_depend AS dep WHERE dep.classid = 'pg_proc'::regclass
                  AND dep.objid = p.oid AND dep.deptype = 'i')
ORDER BY n.nspname, p.proname, 4"""


_TRIGGERS = f"""\
SELECT n.nspname::text, c.relname::text, t.tgname::text, pg_get_triggerdef(t.oid),
  fn.nspname::text, f.proname::text, t.tgenabled::text, d.description
FROM pg_trigger AS t JOIN pg_class AS c ON c.oid = t.tgrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_proc AS f ON f.oid = t.tgfoid
JOIN pg_namespace AS fn ON fn.oid = f.pronamespace
LEFT JOIN pg_description AS d ON {_comment("pg_trigger", "t.oid")}
WHERE NOT t.tgisinternal AND {_in_schemas()}
ORDER BY n.nspname, c.relname, t.tgname"""

# Enums, domains, ranges and standalone composite types (not the row types
# every table has); their attributes come with the columns.
_TYPES = f"""\
SELECT n.nspname::text, t.typname::text, t.typtype::text,
  ARRAY(SELECT e.enumlabel::text FROM pg_enum AS e
        WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder),
  CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
  t.typnotnull, t.typdefault,
  (SELECT json_agg(json_build_array(con.conname, pg_get_constraintdef(con.oid),
                   con.convalidated) ORDER BY con.conname)::text
     FROM pg_constraint AS con WHERE con.contypid = t.oid AND con.contype = 'c'),
  (SELECT format_type(r.rngsubtype, NULL) FROM pg_range AS r WHERE r.rngtypid = t.oid),
  cn.nspname::text, co.collname::text,
  pg_get_userbyid(t.typowner)::text, {_grants("t.typacl", "T", "t.typowner")}, d.description
FROM pg_type AS t JOIN pg_namespace AS n ON n.oid = t.typnamespace
LEFT JOIN pg_type AS bt ON bt.oid = t.typbasetype
LEFT JOIN pg_range AS rg ON rg.rngtypid = t.oid
LEFT JOIN pg_collation AS co ON co.oid = coalesce(nullif(rg.rngcollation, 0), t.typcollation)
  AND co.oid IS DISTINCT FROM bt.typcollation
LEFT JOIN pg_namespace AS cn ON cn.oid = co.collnamespace
LEFT JOIN pg_description AS d ON {_comment("pg_type", "t.oid")}
WHERE (t.typtype IN ('e', 'd', 'r')
       OR (t.typtype = 'c' AND EXISTS (SELECT FROM pg_class AS r
                                       WHERE r.oid = t.typrelid AND r.relkind = 'c')))
  AND n.nspname = ANY(%s::text[]) AND NOT {_member("pg_type", "t.oid")}
ORDER BY n.nspname, t.typname"""

_EXTENSIONS = f"""\
SELECT x.extname::text, x.extversion::text, n.nspname::text, d.description
FROM pg_extension AS x JOIN pg_namespace AS n ON n.oid = x.extnamespace
LEFT JOIN pg_description AS d ON {_comment("pg_extension", "x.oid")}
WHERE n.nspname = ANY(%s::text[])
ORDER BY x.extname"""


@dataclass(frozen=True, slots=True)
class KindQueries:
    """One statement per object kind, each taking the schema names."""

    tables: str
    columns: str
    constraints: str
    indexes: str
    sequences: str
    views: str
    functions: str
    triggers: str
    types: str
    extensions: str


def snapshot_queries(version: int) -> KindQueries:
    """The per-kind statements for a server of ``server_version_num``
    *version* (130000 and up)."""
    return KindQueries(
        tables=_TABLES,
        columns=_COLUMNS,
        constraints=_constraints(version),
        indexes=_INDEXES,
        sequences=_SEQUENCES,
        views=_VIEWS,
        functions=_functions(version),
        triggers=_TRIGGERS,
        types=_TYPES,
        extensions=_EXTENSIONS,
    )
