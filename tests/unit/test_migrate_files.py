"""Migration files, statements and plans: the pure part (no server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pgharbor._migrate.files import Migration, load_directory, load_migration
from pgharbor._migrate.plan import Applied, plan_down, plan_up, status
from pgharbor._pgparse import check_pageable, split_statements
from pgharbor.errors import ConfigError, MigrationDrift, MigrationError


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


# -- statements ------------------------------------------------------------------


def test_split_keeps_quoted_semicolons_and_counts_lines() -> None:
    """Dollar quotes, E'' strings, nested comments and non-ASCII text do not
    confuse the split; each statement knows its first line."""
    text = (
        "-- héllo wörld; a comment\n"
        "/* a /* nested */ comment; */\n"
        "CREATE FUNCTION f() RETURNS text AS $body$\n"
        "  SELECT 'a;b' || $$;$$; -- inside\n"
        "$body$ LANGUAGE sql;\n"
        "\n"
        "INSERT INTO t VALUES (E'it\\'s; ü');\n"
        "SELECT 1"
    )
    statements = split_statements(text)
    assert [(s.line, s.kind) for s in statements] == [
        (3, "CreateFunctionStmt"),
        (7, "InsertStmt"),
        (8, "SelectStmt"),
    ]
    assert statements[0].sql.startswith("CREATE FUNCTION") and statements[0].sql.endswith("sql")
    assert statements[1].sql == "INSERT INTO t VALUES (E'it\\'s; ü')"
    assert statements[2].sql == "SELECT 1"


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("CREATE INDEX CONCURRENTLY i ON t (x)", "CREATE INDEX CONCURRENTLY"),
        ("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (x)", "CREATE INDEX CONCURRENTLY"),
        ("DROP INDEX CONCURRENTLY i", "DROP INDEX CONCURRENTLY"),
        ("REINDEX TABLE CONCURRENTLY t", "REINDEX CONCURRENTLY"),
        ("REINDEX (CONCURRENTLY) INDEX i", "REINDEX CONCURRENTLY"),
        ("REINDEX DATABASE d", "REINDEX DATABASE"),
        ("REINDEX SYSTEM d", "REINDEX SYSTEM"),
        ("VACUUM t", "VACUUM"),
        ("VACUUM (ANALYZE) t", "VACUUM"),
        ("CLUSTER", "CLUSTER without a table"),
        ("CREATE DATABASE d", "CREATE DATABASE"),
        ("DROP DATABASE d", "DROP DATABASE"),
        ("ALTER DATABASE d SET TABLESPACE x", "ALTER DATABASE ... SET TABLESPACE"),
        ("CREATE TABLESPACE x LOCATION '/tmp'", "CREATE TABLESPACE"),
        ("DROP TABLESPACE x", "DROP TABLESPACE"),
        ("ALTER SYSTEM SET work_mem = '8MB'", "ALTER SYSTEM"),
        ("ALTER TABLE p DETACH PARTITION c CONCURRENTLY", "DETACH PARTITION ... CONCURRENTLY"),
        (
            "CREATE SUBSCRIPTION s CONNECTION 'dbname=x' PUBLICATION p",
            "CREATE SUBSCRIPTION (creating a replication slot)",
        ),
        ("DROP SUBSCRIPTION s", "DROP SUBSCRIPTION"),
        ("DISCARD ALL", "DISCARD ALL"),
    ],
)
def test_statements_that_cannot_run_in_a_transaction(sql: str, reason: str) -> None:
    """Statements PostgreSQL refuses inside a transaction block are recognised."""
    (st,) = split_statements(sql)
    assert st.outside_transaction == reason


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE INDEX i ON t (x)",
        "ANALYZE t",
        "REINDEX TABLE t",
        "CLUSTER t USING i",
        "REFRESH MATERIALIZED VIEW CONCURRENTLY v",
        "ALTER TYPE mood ADD VALUE 'meh'",
        "ALTER TABLE p DETACH PARTITION c",
        "ALTER DATABASE d SET work_mem = '8MB'",
        "DROP INDEX i",
        "CREATE SUBSCRIPTION s CONNECTION 'dbname=x' PUBLICATION p WITH (create_slot = false)",
        "SAVEPOINT a",
        "SELECT 'CREATE INDEX CONCURRENTLY'",
    ],
)
def test_statements_that_run_in_a_transaction(sql: str) -> None:
    """Everything else runs in the migration's transaction (the parser, not
    keywords in a string, decides)."""
    (st,) = split_statements(sql)
    assert st.outside_transaction is None and st.refused is None


@pytest.mark.parametrize(
    ("sql", "match"),
    [
        ("BEGIN", "transaction control"),
        ("COMMIT", "transaction control"),
        ("ROLLBACK", "transaction control"),
        ("COPY t FROM STDIN", "COPY from or to the client"),
    ],
)
def test_statements_refused_in_a_migration(tmp_path: Path, sql: str, match: str) -> None:
    """Transaction control and COPY from the client are refused at load, with the line."""
    path = tmp_path / "0001_x.sql"
    path.write_text(f"SELECT 1;\n{sql};\n")
    with pytest.raises(MigrationError, match=rf"0001_x.sql:2: {match}"):
        load_migration(path)


# -- files -------------------------------------------------------------------------


def test_sections_and_twins(tmp_path: Path) -> None:
    """Up/down sections in one file, or a .down.sql twin; line numbers are the
    file's; a marker inside a function body is not a marker."""
    d = write(
        tmp_path,
        {
            "0001_a.sql": "CREATE TABLE a (x int);\n",
            "0001_a.down.sql": "DROP TABLE a;\n",
            "0002_b.sql": (
                "-- a header comment\n"
                "-- migrate:up\n"
                "CREATE FUNCTION f() RETURNS int AS $$\n"
                "-- migrate:down\n"
                "SELECT 1 $$ LANGUAGE sql;\n"
                "-- migrate:down\n"
                "\n"
                "DROP FUNCTION f();\n"
            ),
            "0003_c.sql": "-- migrate:up\nCREATE TABLE c ();\n",
        },
    )
    a, b, c = load_directory(d)
    assert (a.version, a.name, b.version, c.version) == (1, "a", 2, 3)
    assert a.down is not None and a.down.statements[0].sql == "DROP TABLE a"
    assert [st.line for st in b.up.statements] == [3]
    assert b.down is not None and [st.line for st in b.down.statements] == [8]
    assert c.down is None
    assert a.label == "0001_a"


def test_transaction_choice(tmp_path: Path) -> None:
    """A part whose statements all need to run outside a transaction runs
    without one; a mixed part is refused unless marked transaction:false;
    transaction:true with such a statement is refused."""
    alone = tmp_path / "0001_alone.sql"
    alone.write_text("CREATE INDEX CONCURRENTLY i ON t (x);\nVACUUM t;\n")
    part = load_migration(alone).up
    assert not part.transactional and part.why_not == "CREATE INDEX CONCURRENTLY at line 1"

    mixed = tmp_path / "0002_mixed.sql"
    mixed.write_text("CREATE TABLE t (x int);\nCREATE INDEX CONCURRENTLY i ON t (x);\n")
    with pytest.raises(MigrationError, match=r"0002_mixed.sql:2: CREATE INDEX CONCURRENTLY .*own"):
        load_migration(mixed)
    mixed.write_text("-- migrate:up transaction:false\n" + mixed.read_text())
    part = load_migration(mixed).up
    assert not part.transactional and part.why_not == "transaction:false"

    forced = tmp_path / "0003_forced.sql"
    forced.write_text("-- migrate:up transaction:true\nVACUUM t;\n")
    with pytest.raises(MigrationError, match=r"0003_forced.sql:2: VACUUM .*transaction:true"):
        load_migration(forced)


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ({"create_orders.sql": ""}, "not a migration file name"),
        ({"0001_a.sql": "", "001_b.sql": ""}, "version 1 is also"),
        ({"0002_b.down.sql": ""}, "no up file with version 2"),
        ({"0001_a.sql": "", "0001_b.down.sql": ""}, "does not match its up file"),
        ({"0001_a.sql": "SELEC 1;"}, r"0001_a.sql:1: PostgreSQL's parser refuses it"),
        ({"0001_a.sql": "SELECT 1;\n-- migrate:up\nSELECT 2;"}, "statements before the first"),
        ({"0001_a.sql": "-- migrate:up\n-- migrate:up\n"}, "a second '-- migrate:up'"),
        ({"0001_a.sql": "-- migrate:down\nSELECT 1;"}, "no '-- migrate:up'"),
        ({"0001_a.sql": "-- migrate:up atomic:false\n"}, "unknown option 'atomic:false'"),
        (
            {"0001_a.sql": "-- migrate:up\n-- migrate:down\n", "0001_a.down.sql": ""},
            "down section and a 0001_a.down.sql twin",
        ),
    ],
)
def test_bad_directories(tmp_path: Path, files: dict[str, str], match: str) -> None:
    """Misnamed, duplicate, orphaned or unparsable files are errors naming the file."""
    with pytest.raises(MigrationError, match=match):
        load_directory(write(tmp_path / "m", files))


def test_missing_directory(tmp_path: Path) -> None:
    """A missing directory is named."""
    with pytest.raises(MigrationError, match="no such migrations directory"):
        load_directory(tmp_path / "nope")


def test_checksum_covers_the_up_part_only(tmp_path: Path) -> None:
    """Line endings do not change the checksum, nor does editing the down
    part; editing the up part does."""
    path = tmp_path / "0001_a.sql"
    path.write_text("-- migrate:up\nCREATE TABLE a ();\n-- migrate:down\nDROP TABLE a;\n")
    first = load_migration(path).checksum
    path.write_bytes(b"-- migrate:up\r\nCREATE TABLE a ();\r\n-- migrate:down\r\nDROP TABLE a;\r\n")
    assert load_migration(path).checksum == first
    path.write_text("-- migrate:up\nCREATE TABLE a ();\n-- migrate:down\nDROP TABLE a CASCADE;\n")
    assert load_migration(path).checksum == first
    path.write_text("-- migrate:up\nCREATE TABLE a (x int);\n-- migrate:down\nDROP TABLE a;\n")
    assert load_migration(path).checksum != first


# -- plans -------------------------------------------------------------------------


@pytest.fixture
def three(tmp_path: Path) -> list[Migration]:
    return load_directory(
        write(
            tmp_path / "m",
            {
                "0001_a.sql": "CREATE TABLE a ();",
                "0001_a.down.sql": "DROP TABLE a;",
                "0002_b.sql": "CREATE TABLE b ();",
                "0003_c.sql": "-- migrate:up\nCREATE TABLE c ();\n-- migrate:down\nDROP TABLE c;",
            },
        )
    )


def applied(m: Migration, **kw: Any) -> Applied:
    values: dict[str, Any] = {
        "version": m.version,
        "name": m.name,
        "checksum": m.checksum,
        "success": True,
    }
    return Applied(**{**values, **kw})


def test_plan_up(three: list[Migration]) -> None:
    """Pending migrations up to a version, oldest first."""
    assert [s.version for s in plan_up(three, []).steps] == [1, 2, 3]
    plan = plan_up(three, [applied(three[0])], to=2)
    assert [s.version for s in plan.steps] == [2] and (plan.current, plan.target) == (1, 2)
    assert not plan_up(three, [applied(m) for m in three])


def test_plan_up_refuses_drift_failed_and_out_of_order(three: list[Migration]) -> None:
    """Changed or missing files, out-of-order pending ones and failed runs
    stop the plan, each with its own way out."""
    changed = [applied(three[0], checksum="x")]
    with pytest.raises(MigrationDrift, match="0001_a: changed"):
        plan_up(three, changed)
    assert [s.version for s in plan_up(three, changed, allow_drift=True).steps] == [2, 3]
    gone = [applied(three[0]), Applied(9, "gone", "c", True)]
    with pytest.raises(MigrationDrift, match="0009_gone: missing"):
        plan_up(three, gone)
    late = [applied(three[0]), applied(three[2])]
    with pytest.raises(MigrationDrift, match="0002_b"):
        plan_up(three, late)
    assert [s.version for s in plan_up(three, late, out_of_order=True).steps] == [2]
    failed = [applied(three[0], success=False, statements_done=1, error="boom")]
    with pytest.raises(MigrationError, match="0001_a: stopped after 1 statement"):
        plan_up(three, failed)
    assert [s.state for s in status(three, failed)] == ["failed", "pending", "pending"]


def test_plan_down(three: list[Migration]) -> None:
    """down: the newest one, n steps, or everything above a version; refused
    for a migration without a down part or a changed file."""
    everything = [applied(m) for m in three]
    assert [s.version for s in plan_down(three, everything).steps] == [3]
    with pytest.raises(MigrationError, match=r"0002_b.sql: has no down part"):
        plan_down(three, everything, steps=2)
    only_ac = [applied(three[0]), applied(three[2])]
    plan = plan_down(three, only_ac, to=0)
    assert [s.version for s in plan.steps] == [3, 1] and plan.target is None
    with pytest.raises(MigrationDrift, match="changed"):
        plan_down(three, [applied(three[0], checksum="x")])
    with pytest.raises(MigrationError, match="either"):
        plan_down(three, everything, to=1, steps=1)


# -- pagination checks -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "style"),
    [
        ("SELECT id, name FROM t WHERE a = %s AND b = %(b)s", "format"),
        ("SELECT id FROM t WHERE name LIKE 'a%%'", "format"),
        ("SELECT id FROM t WHERE a = $1", "dollar"),
        ("SELECT id FROM t WHERE name LIKE 'a%'", "none"),
        ("VALUES (1), (2)", "none"),
        ("WITH x AS (SELECT 1 AS id) SELECT id FROM x", "none"),
        ("SELECT id FROM a UNION ALL SELECT id FROM b", "none"),
        ("SELECT 1 AS id", "none"),
    ],
)
def test_pageable_queries(query: str, style: str) -> None:
    """One SELECT without its own ordering or limits can be paginated, with
    any driver's placeholders."""
    check_pageable(query, style)


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ("SELECT id FROM t ORDER BY id", "ORDER BY"),
        ("SELECT id FROM t LIMIT 10", "LIMIT"),
        ("SELECT id FROM t OFFSET 10", "LIMIT"),
        ("SELECT id FROM t FETCH FIRST 5 ROWS ONLY", "LIMIT"),
        ("SELECT 1 AS id; SELECT 2 AS id", "one statement"),
        ("DELETE FROM t RETURNING id", "must be a SELECT"),
        ("SELECT id INTO x FROM t", "SELECT INTO"),
        ("SELEC id", "not valid SQL"),
    ],
)
def test_unpageable_queries(query: str, match: str) -> None:
    """A query pages cannot be cut from is refused with ConfigError, saying why."""
    with pytest.raises(ConfigError, match=match):
        check_pageable(query, "none")
