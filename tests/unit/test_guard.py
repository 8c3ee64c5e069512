"""Guard: its options, its rules (pure: the parser, no server), and its settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgharbor.config import DatabaseSettings, load_settings
from pgharbor.errors import ConfigError, GuardRefused
from pgharbor.guard import Guard, statement_kind

URL = "postgresql://reader@127.0.0.1/db"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("allow_writes", "yes"),
        ("max_rows", 0),
        ("max_rows", True),
        ("max_length", None),
        ("timeout", -1),
        ("timeout", float("nan")),
        ("lock_timeout", "5"),
        ("idle_timeout", 10**9),
        ("allowed_schemas", "public"),
        ("allowed_schemas", ()),
        ("denied_functions", "pg_sleep"),
    ],
)
def test_bad_options_name_the_field(field: str, value: object) -> None:
    """A bad option raises ConfigError naming it, at construction."""
    with pytest.raises(ConfigError) as info:
        Guard(**{field: value})  # type: ignore[arg-type]
    assert info.value.field == field


def test_setup_sql_sets_the_timeouts_locally() -> None:
    """The run's setup is one BEGIN with the guard's local settings, in ms."""
    assert Guard(timeout=1.5, lock_timeout=None, idle_timeout=2).setup_sql() == (
        "BEGIN READ ONLY; SET LOCAL statement_timeout = 1500; "
        "SET LOCAL idle_in_transaction_session_timeout = 2000"
    )
    text = Guard(allow_writes=True, allowed_schemas=("app", "Order")).setup_sql()
    assert text.startswith("BEGIN READ WRITE;") and text.endswith('search_path = app, "Order"')


def test_allowed_schemas_and_extra_denied_functions() -> None:
    """Tables qualified with another schema are refused; extra names are denied."""
    guard = Guard(allowed_schemas=("app",), denied_functions=frozenset({"Expensive"}))
    assert guard.check("SELECT * FROM app.t JOIN u USING (id)").kind == "query"
    with pytest.raises(GuardRefused) as info:
        guard.check("SELECT * FROM secret.t")
    assert info.value.rule == "schema"
    with pytest.raises(GuardRefused) as info:
        guard.check("SELECT expensive()")
    assert info.value.rule == "function"


def test_kinds_and_cursors() -> None:
    """Queries run through a cursor; EXPLAIN, SHOW and writes do not."""
    writer = Guard(allow_writes=True)
    assert Guard().check("VALUES (1)").cursor
    assert not Guard().check("EXPLAIN SELECT 1").cursor
    assert Guard().check("SHOW work_mem").kind == "show"
    assert writer.check("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d").kind == "write"
    assert writer.check("EXPLAIN ANALYZE DELETE FROM t").kind == "explain"
    assert writer.check("SELECT * FROM t FOR UPDATE").kind == "query"
    with pytest.raises(GuardRefused):
        writer.check("CREATE TABLE t (x int)")


def test_statement_kind_reads_psycopg_placeholders() -> None:
    """statement_kind reads %s and %(name)s as parameters and caches by text."""
    assert statement_kind("SELECT * FROM t WHERE a = %s AND b = %(b)s AND c LIKE 'x%%'") == (
        "query"
    )
    assert statement_kind("INSERT INTO t VALUES (%s) RETURNING id") == "write"
    assert statement_kind("SELECT 1 FOR UPDATE") == "write"
    assert statement_kind("SELECT 1; SELECT 2") is None
    assert statement_kind("not sql") is None


def test_guard_setting_from_python_toml_and_environment(tmp_path: Path) -> None:
    """guard= takes a Guard or a table of its options (TOML, environment);
    anything else is a ConfigError naming the field."""
    assert DatabaseSettings(url=URL, guard=Guard(max_rows=5)).guard == Guard(max_rows=5)
    path = tmp_path / "h.toml"
    path.write_text(
        f'[databases.a]\nurl = "{URL}"\n[databases.a.guard]\nallow_writes = true\nmax_rows = 7\n'
    )
    guard = load_settings(str(path)).database("a").guard
    assert guard == Guard(allow_writes=True, max_rows=7)
    env = {
        "PGHARBOR_B__URL": URL,
        "PGHARBOR_B__GUARD__MAX_ROWS": "none",
        "PGHARBOR_B__GUARD__TIMEOUT": "2.5",
        "PGHARBOR_B__GUARD__ALLOWED_SCHEMAS": "app, public",
    }
    from_env = DatabaseSettings.from_env("b", env).guard
    assert from_env == Guard(max_rows=None, timeout=2.5, allowed_schemas=("app", "public"))
    for bad in (5, "read-only", {"nope": 1}, {"max_rows": 0}):
        with pytest.raises(ConfigError) as info:
            DatabaseSettings(url=URL, guard=bad)
        assert info.value.field.startswith("guard")
    assert DatabaseSettings(url=URL, guard=Guard()).masked()["guard"]["max_rows"] == 1000


def test_without_pglast_the_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without pglast a Guard cannot be built (never a guard without its
    parser), and the error says which extra to install."""
    import sys

    monkeypatch.setitem(sys.modules, "pglast", None)
    with pytest.raises(ImportError, match=r"pgharbor\[sql\]"):
        Guard()
