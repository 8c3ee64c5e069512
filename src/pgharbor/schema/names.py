"""Identifiers as PostgreSQL writes them: quoting, qualified names, default names.

Pure code. `quote_ident` follows the server's ``quote_ident()``: a name stays
bare only if it is lower case ASCII letters, digits and underscores, starts
with a letter or underscore, and is not a keyword the grammar reserves in
some position. The keyword list is the union of several versions' lists, so
a name is sometimes quoted where an older server would not quote it; quoting
more than needed is always valid SQL.

`is_default_name` tells whether a constraint or index carries the name
PostgreSQL would have chosen for it (``orders_pkey``,
``orders_customer_id_fkey``, ``orders_lower_idx1``...): `pgharbor.diff`
matches such objects by what they are rather than by name when asked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

__all__ = ["default_name", "is_default_name", "qualify", "quote_ident"]

# pg_get_keywords() WHERE catcode <> 'U' (column-name, type/function-name and
# reserved keywords): the union of PostgreSQL 15, 16 and 18's lists. A word
# only a newer server reserves is quoted for every server (still valid SQL).
_KEYWORD_LIST = """
    all analyse analyze and any array as asc asymmetric authorization between bigint
    binary bit boolean both case cast char character check coalesce collate collation
    column concurrently constraint create cross current_catalog current_date current_role
    current_schema current_time current_timestamp current_user dec decimal default
    deferrable desc distinct do else end except exists extract false fetch float for
    foreign freeze from full grant greatest group grouping having ilike in initially
    inner inout int integer intersect interval into is isnull join json json_array
    json_arrayagg json_exists json_object json_objectagg json_query json_scalar
    json_serialize json_table json_value lateral leading least left like limit
    localtime localtimestamp merge_action national natural nchar none normalize not
    notnull null nullif numeric offset on only or order out outer overlaps overlay
    placing position precision primary real references returning right row select
    session_user setof similar smallint some substring symmetric system_user table
    tablesample then time timestamp to trailing treat trim true union unique user using
    values varchar variadic verbose when where window with xmlattributes xmlconcat
    xmlelement xmlexists xmlforest xmlnamespaces xmlparse xmlpi xmlroot xmlserialize
    xmltable
"""
_KEYWORDS = frozenset(_KEYWORD_LIST.split())
_BARE = re.compile(r"[a-z_][a-z0-9_]*")

#: NAMEDATALEN - 1: the longest identifier, in bytes.
MAX_IDENTIFIER_BYTES = 63


def quote_ident(name: str) -> str:
    """*name* as an SQL identifier: bare when it can be, else double-quoted
    with inner double quotes doubled (``Order`` → ``"Order"``, ``user`` →
    ``"user"``, ``a"b`` → ``"a""b"``)."""
    if _BARE.fullmatch(name) and name not in _KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


def qualify(schema: str, name: str) -> str:
    """``schema.name``, each part quoted as needed."""
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def _clip(text: str, limit: int) -> str:
    """The longest prefix of *text* that fits in *limit* UTF-8 bytes without
    splitting a character (the server's ``pg_mbcliplen``)."""
    out = text.encode()[:limit]
    return out.decode(errors="ignore")


def default_name(table: str, middle: str | None, label: str) -> str:
    """The name PostgreSQL makes from *table*, *middle* (column names joined
    by ``_``, or none) and *label* (``pkey``, ``key``, ``fkey``, ``check``,
    ``excl``, ``idx``, possibly numbered: ``key1``): the server's
    ``makeObjectName``, which shortens the longer of the two names until the
    whole fits in 63 bytes."""
    overhead = len(label.encode()) + 1 + (1 if middle is not None else 0)
    avail = MAX_IDENTIFIER_BYTES - overhead
    n1 = len(table.encode())
    n2 = len(middle.encode()) if middle is not None else 0
    while n1 + n2 > avail:
        if n1 > n2:
            n1 -= 1
        else:
            n2 -= 1
    parts = [_clip(table, n1)]
    if middle is not None:
        # pg_mbcliplen may clip a little more than asked; the rest still fits.
        parts.append(_clip(middle, n2))
    parts.append(label)
    return "_".join(parts)


def is_default_name(
    name: str, table: str, label: str, candidates: Iterable[Sequence[str] | None]
) -> bool:
    """Whether *name* is what PostgreSQL would name an object of *table* with
    *label* and one of *candidates* (lists of column names; None for none),
    with or without the number it appends on a clash (``orders_pkey1``)."""
    labels = [label]
    number = re.search(r"(\d+)$", name)
    if number and name[: number.start()].endswith(label):
        labels.append(label + number.group(1))
    for columns in candidates:
        middle = None if columns is None else "_".join(columns)
        for each in labels:
            if default_name(table, middle, each) == name:
                return True
    return False
