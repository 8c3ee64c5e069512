"""Pure parts of privileges and facts: placeholders, plans, reports, sizing math."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from pgharbor.errors import InsufficientPrivileges
from pgharbor.facts import (
    FACTS_QUERY,
    Query,
    ServerFacts,
    parse_duration_ms,
    parse_facts,
    sizing_warnings,
    to_dollar,
)
from pgharbor.privileges import (
    BATCH,
    CatalogRead,
    CustomCheck,
    DatabaseConnect,
    Missing,
    PrivilegePlan,
    PrivilegeReport,
    Requirement,
    SchemaUsage,
    SelectOnAllTables,
    TableSelect,
    check_privileges_sync,
    require,
    schema_diff_requirements,
)
from pgharbor.version import ServerVersion

# -- to_dollar ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1", "SELECT 1"),
        ("SELECT %s, %s", "SELECT $1, $2"),
        ("a = %s AND b LIKE '10%%' AND c = %s", "a = $1 AND b LIKE '10%' AND c = $2"),
        ("%s%s%s%s%s%s%s%s%s%s%s", "".join(f"${i}" for i in range(1, 12))),
    ],
)
def test_to_dollar(sql: str, expected: str) -> None:
    """%s becomes $1..$n in order and %% a single %."""
    assert to_dollar(sql) == expected


@pytest.mark.parametrize("sql", ["SELECT %(x)s", "SELECT %d", "SELECT 5 %", "format('%I', x)"])
def test_to_dollar_refuses_other_percent_signs(sql: str) -> None:
    """Any % the two conventions would read differently is an error."""
    with pytest.raises(ValueError, match="unsupported placeholder"):
        to_dollar(sql)


def test_generated_sql_converts_cleanly() -> None:
    """Every generated query converts; placeholders match the parameter count."""
    plan = PrivilegePlan(
        [*schema_diff_requirements(["a", "b"]), TableSelect("s", "t"), CatalogRead()]
    )
    for query in [*plan.queries(), FACTS_QUERY]:
        converted = query.dollar()
        assert converted.sql.count("$") == len(query.params) == query.sql.count("%s")
        assert "%" not in converted.sql


# -- plans and reports ------------------------------------------------------------


def test_one_query_carries_every_requirement() -> None:
    """N requirements make one SELECT with N + 2 columns and names as parameters."""
    reqs = [*schema_diff_requirements(), SchemaUsage("x'; DROP TABLE t; --")]
    (query,) = PrivilegePlan(reqs).queries()
    assert query.params[0] is None  # DatabaseConnect(): the current database
    assert query.params[-1] == "x'; DROP TABLE t; --"
    assert "DROP" not in query.sql
    assert query.sql.startswith("SELECT current_user::text, current_database()::text,")


def test_schema_diff_preset_is_what_the_snapshot_reads() -> None:
    """The preset is CONNECT plus read access to exactly the catalogues and
    functions the snapshot uses, whatever the schemas (pg_catalog shows them
    all); every name travels as a parameter."""
    from pgharbor.schema import CATALOG_FUNCTIONS, CATALOG_RELATIONS

    reqs = schema_diff_requirements(["public", "app"])
    assert reqs == [DatabaseConnect(), CatalogRead()] == schema_diff_requirements()
    read = CatalogRead()
    assert (read.relations, read.functions) == (CATALOG_RELATIONS, CATALOG_FUNCTIONS)
    query = read.expression()
    names = query.params[::2]
    assert names == ("pg_catalog", *CATALOG_RELATIONS, *CATALOG_FUNCTIONS)
    assert query.sql.count("%s") == len(query.params)
    assert "pg_get_viewdef" not in query.sql
    with pytest.raises(TypeError, match="schema names are strings"):
        schema_diff_requirements([1])  # type: ignore[list-item]


def test_batches_and_empty_plans() -> None:
    """Past BATCH requirements a second query appears; none make none."""
    assert len(PrivilegePlan([SchemaUsage("s")] * (BATCH + 1)).queries()) == 2
    empty = PrivilegePlan([])
    assert empty.queries() == []
    assert empty.report([]) == PrivilegeReport(True, (), 0)
    assert len(PrivilegePlan().requirements) == 2  # the schema-diff preset


def test_plan_refuses_non_requirements() -> None:
    """A stray object is a TypeError at plan time, not a confusing SQL error."""
    with pytest.raises(TypeError, match="not a privilege Requirement"):
        PrivilegePlan(["SELECT 1"])  # type: ignore[list-item]


def fake_fetch(values: list[Any]) -> Any:
    """A fetch answering any plan with ('alice', 'shop', *values)."""

    def fetch(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return [("alice", "shop", *values)]

    return fetch


REQS: list[Requirement] = [
    DatabaseConnect(),
    SchemaUsage("app"),
    SelectOnAllTables("app"),
    TableSelect("app", "t"),
    CatalogRead(),
    CustomCheck("custom", "SELECT true"),
]


def test_report_judges_each_column() -> None:
    """Values map to met / not granted / absent / named relations."""
    report = check_privileges_sync(
        fake_fetch([True, False, ["app.a", "app.b"], None, [], None]), REQS
    )
    assert not report.sufficient
    assert report.checked == 6
    assert [(m.requirement, m.detail, m.objects) for m in report.missing] == [
        (SchemaUsage("app"), "not granted", ()),
        (SelectOnAllTables("app"), "2 relation(s) not readable", ("app.a", "app.b")),
        (TableSelect("app", "t"), "relation does not exist", ()),
        (REQS[5], "check returned no value", ()),
    ]
    assert report.to_dict()["missing"][1] == {
        "requirement": "SELECT on all tables and views of schema app",
        "kind": "SelectOnAllTables",
        "detail": "2 relation(s) not readable",
        "objects": ["app.a", "app.b"],
    }


def test_report_text() -> None:
    """str(report) is a readable summary listing what is missing."""
    many = [f"app.t{i}" for i in range(25)]
    report = check_privileges_sync(fake_fetch([True, False, many, True, [], True]), REQS)
    text = str(report)
    assert text.splitlines()[:3] == [
        "role 'alice' on database 'shop': 2 of 6 privilege requirement(s) unmet",
        "  - USAGE on schema app: not granted",
        "  - SELECT on all tables and views of schema app: 25 relation(s) not readable",
    ]
    assert "      app.t19" in text and "app.t20" not in text
    assert text.endswith("... and 5 more")
    ok = check_privileges_sync(fake_fetch([True, True, [], True, [], True]), REQS)
    assert str(ok) == "role 'alice' on database 'shop': all 6 privilege requirement(s) met"


def test_report_rejects_misshapen_rows() -> None:
    """A row with the wrong number of columns is a ValueError."""
    plan = PrivilegePlan(REQS)
    with pytest.raises(ValueError, match="one row of 8 columns"):
        plan.report([[("alice", "shop", True)]])
    with pytest.raises(ValueError, match="results of 1 queries"):
        plan.report([])


def test_require() -> None:
    """require passes a sufficient report through and raises with the missing list."""
    ok = PrivilegeReport(True, (), 3, "a", "d")
    assert require(ok) is ok
    gap = Missing(SchemaUsage("app"), "not granted")
    with pytest.raises(InsufficientPrivileges) as info:
        require(PrivilegeReport(False, (gap,), 3, "a", "d"))
    assert info.value.missing == [gap]
    assert "USAGE on schema app: not granted" in str(info.value)


def test_custom_check_strips_semicolons() -> None:
    """A trailing semicolon in custom SQL does not break the batched SELECT."""
    query = CustomCheck("x", " SELECT %s ;\n", (1,)).expression()
    assert query == Query("(SELECT %s)", (1,))


# -- facts parsing and sizing -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("0", None),
        (None, None),
        ("-1", None),
        ("1500", 1500),
        ("1s", 1000),
        ("5min", 300_000),
        ("2h", 7_200_000),
        ("1d", 86_400_000),
        ("250ms", 250),
        ("1500us", 2),
    ],
)
def test_parse_duration_ms(text: str | None, ms: int | None) -> None:
    """current_setting() time values become milliseconds; off is None."""
    assert parse_duration_ms(text) == ms


def test_parse_duration_rejects_garbage() -> None:
    """Text that is not a time value is a ValueError."""
    with pytest.raises(ValueError):
        parse_duration_ms("soon")


ROW: tuple[Any, ...] = (160004, "shop", "app", False, 100, 3, 2, None, None)
ROW += ("1min", "0", "0", False, True, 7, 4, "UTF8", "UTC")


def facts(**changes: Any) -> ServerFacts:
    """Parsed facts of a 16.4 server with max_connections=100, reserves 3 + 2."""
    return dataclasses.replace(parse_facts(ROW), **changes)


def test_parse_facts() -> None:
    """The facts row parses into typed fields; to_dict is plain data."""
    f = parse_facts(ROW)
    assert f.version == ServerVersion(160004)
    assert f.idle_session_timeout_ms == 60_000
    assert f.statement_timeout_ms is None
    assert f.available_connections == 95
    assert f.to_dict()["version"] == "16.4" and f.to_dict()["version_num"] == 160004
    with pytest.raises(ValueError, match="18 columns"):
        parse_facts(ROW[:-1])


def test_sizing_connection_math() -> None:
    """max_size * pools is compared with max_connections minus the reserves."""
    assert sizing_warnings(facts(), 19, 10.0, pools=5, keepalive=30) == []
    (w,) = sizing_warnings(facts(), 24, 10.0, pools=4, keepalive=30)
    assert w.startswith("max_size=24 x 4 pool(s) = 96 connections exceed the 95")
    # Superusers may use superuser_reserved_connections (not CONNECTION LIMIT).
    su = facts(superuser=True, role_connection_limit=1)
    assert sizing_warnings(su, 24, 10.0, pools=4, keepalive=30) == []
    (w,) = sizing_warnings(facts(database_connection_limit=10), 11, 10.0, keepalive=30)
    assert "CONNECTION LIMIT 10 of database 'shop'" in w


@pytest.mark.parametrize(
    ("max_idle", "keepalive", "min_size", "warns"),
    [
        (30.0, None, 0, False),  # extras retire after 30 s, none are kept
        (60.0, None, 0, True),  # 60 s idle reaches the 60 s timeout
        (None, None, 0, True),  # never retired, never pinged
        (600.0, 30.0, 5, False),  # pings every 30 s keep everyone alive
        (30.0, None, 1, True),  # the min_size connection sits forever
        (None, 59.0, 1, False),
    ],
)
def test_sizing_idle_session_timeout(
    max_idle: float | None, keepalive: float | None, min_size: int, warns: bool
) -> None:
    """Connections quiet for idle_session_timeout or longer are flagged."""
    got = sizing_warnings(facts(), 5, max_idle, min_size=min_size, keepalive=keepalive)
    assert bool(got) is warns
    assert sizing_warnings(facts(idle_session_timeout_ms=None), 5, None) == []
