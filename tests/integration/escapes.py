"""The escape catalogue: SQL texts an untrusted caller might send to break out
of a read-only guard, each with the outcome the guard must give.

Shared by the library tests (test_guard_escapes.py, every driver) and the MCP
tests (test_mcp.py, through the ``run_query`` tool). Outcomes:

* ``refused:<rule>`` -- `GuardRefused` with that rule, nothing sent;
* ``ok`` -- it runs and is harmless (the invariants below still hold);
* ``error`` -- it passes the parser and the *server* refuses it (the READ
  ONLY transaction, a bad statement): the second wall;
* ``timeout`` -- cancelled by the guard's timeout (1 s in the tests);
* ``refused|error`` -- either, depending on the driver (parameters inlined
  by psycopg2 are parsed, asyncpg's are not).

After every case, whatever its outcome: the table ``victim`` holds its one
row, the sequence ``seq`` never advanced, no table ``pwned`` exists, nobody
holds an advisory lock, no statement of the test is still running, and the
session the next caller gets has the server's defaults (statement_timeout,
read-only mode, role, no LISTEN, no prepared statements, no cursors).

``{p}`` in a text stands for the driver's first placeholder (``%s`` or ``$1``).
Sources: the issue's own probes; public reports on PostgreSQL MCP servers:
the archived reference server (``COMMIT; DROP ...`` inside its ``BEGIN READ
ONLY`` transaction, modelcontextprotocol/servers#1889), pgEdge's server
(``READ WRITE`` transaction forms and a leading comment reaching the simple
protocol, pgedge-postgres-mcp#196), pg-mcp-server (a leading comment hides a
write from a first-word check, ericzakariasson/pg-mcp-server#3),
postgres-mcp's restricted mode (``SELECT * FROM pg_read_file(...)``: a
function in FROM escaped a check made only on target-list calls,
crystaldba/postgres-mcp#178), the ``startsWith("SELECT")`` validators
(GHSA-65hm-pwj5-73pw, mcp-dbutils#116) and EXPLAIN ANALYZE running its
statement. See docs/untrusted-sql.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["CASES", "SETUP", "Escape"]


@dataclasses.dataclass(frozen=True)
class Escape:
    """One text of the catalogue and the outcome it must have."""

    id: str
    sql: str
    expect: str
    params: tuple[Any, ...] | None = None
    truncated: bool | None = None  # for ``ok``: whether the rows must say truncated


#: Run once (as the superuser) in the catalogue's database.
SETUP = """
CREATE TABLE victim (id int PRIMARY KEY, note text);
INSERT INTO victim VALUES (1, 'intact');
CREATE SEQUENCE seq;
CREATE FUNCTION evil_delete() RETURNS int LANGUAGE plpgsql
  AS $$BEGIN DELETE FROM victim; RETURN 1; END$$;
CREATE FUNCTION evil_session() RETURNS int LANGUAGE plpgsql AS $$BEGIN
  PERFORM set_config('statement_timeout', '0', false);
  PERFORM set_config('default_transaction_read_only', 'off', false);
  RETURN 1; END$$;
CREATE FUNCTION evil_lock() RETURNS int LANGUAGE plpgsql
  AS $$BEGIN PERFORM pg_advisory_lock(4242); RETURN 1; END$$;
CREATE FUNCTION evil_listen() RETURNS int LANGUAGE plpgsql
  AS $$BEGIN EXECUTE 'LISTEN evil'; RETURN 1; END$$;
CREATE FUNCTION evil_prepare() RETURNS int LANGUAGE plpgsql
  AS $$BEGIN EXECUTE 'PREPARE evil AS SELECT 1'; RETURN 1; END$$;
CREATE FUNCTION evil_hold() RETURNS int LANGUAGE plpgsql
  AS $$BEGIN EXECUTE 'DECLARE evil CURSOR WITH HOLD FOR SELECT 1'; RETURN 1; END$$;
CREATE FUNCTION evil_role() RETURNS int LANGUAGE plpgsql
  AS $$BEGIN EXECUTE 'SET ROLE pg_monitor'; RETURN 1; END$$;
CREATE PROCEDURE evil_proc() LANGUAGE plpgsql
  AS $$BEGIN COMMIT; DELETE FROM victim; END$$;
"""

_X = "refused|error"

CASES: list[Escape] = [
    # -- several statements in one text ---------------------------------------------------
    Escape("multi-drop", "SELECT 1; DROP TABLE victim", "refused:one-statement"),
    Escape("multi-commit-drop", "SELECT 1; COMMIT; DROP TABLE victim", "refused:one-statement"),
    Escape("commit-first", "COMMIT; DROP TABLE victim; SELECT 1", "refused:one-statement"),
    Escape("multi-newline", "SELECT 1\n;\nDELETE FROM victim", "refused:one-statement"),
    Escape("multi-set", "SELECT 1; SET statement_timeout = 0", "refused:one-statement"),
    Escape("multi-empty-tail", "SELECT 1;;", "ok"),
    Escape("leading-comment-delete", "/* a read */ DELETE FROM victim", "refused:statement-kind"),
    Escape(
        "leading-comment-commit", "-- a read\nCOMMIT; DROP TABLE victim", "refused:one-statement"
    ),
    Escape("select-then-delete", "SELECT 1; DELETE FROM victim", "refused:one-statement"),
    Escape("parenthesized-select", "(SELECT 1)", "ok"),
    Escape("parenthesized-delete", "(DELETE FROM victim)", "refused:syntax"),
    # -- transaction control --------------------------------------------------------------
    Escape("commit", "COMMIT", "refused:transaction-control"),
    Escape("end", "END", "refused:transaction-control"),
    Escape("rollback", "ROLLBACK", "refused:transaction-control"),
    Escape("abort", "ABORT", "refused:transaction-control"),
    Escape("commit-and-chain", "COMMIT AND CHAIN", "refused:transaction-control"),
    Escape("begin-read-write", "BEGIN READ WRITE", "refused:transaction-control"),
    Escape("start-transaction", "START TRANSACTION READ WRITE", "refused:transaction-control"),
    Escape(
        "begin-isolation-read-write",
        "BEGIN ISOLATION LEVEL SERIALIZABLE, READ WRITE",
        "refused:transaction-control",
    ),
    Escape("savepoint", "SAVEPOINT s", "refused:transaction-control"),
    Escape("prepare-transaction", "PREPARE TRANSACTION 'x'", "refused:transaction-control"),
    Escape("set-transaction", "SET TRANSACTION READ WRITE", "refused:session-change"),
    # -- session settings -----------------------------------------------------------------
    Escape(
        "session-characteristics",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        "refused:session-change",
    ),
    Escape(
        "set-read-only-off", "SET default_transaction_read_only = off", "refused:session-change"
    ),
    Escape("set-timeout", "SET statement_timeout = 0", "refused:session-change"),
    Escape("set-local", "SET LOCAL statement_timeout = 0", "refused:session-change"),
    Escape("set-role", "SET ROLE postgres", "refused:session-change"),
    Escape("set-session-auth", "SET SESSION AUTHORIZATION postgres", "refused:session-change"),
    Escape("reset-all", "RESET ALL", "refused:session-change"),
    Escape("discard-all", "DISCARD ALL", "refused:session-change"),
    Escape("set-config", "SELECT set_config('statement_timeout', '0', false)", "refused:function"),
    Escape(
        "set-config-qualified",
        "SELECT pg_catalog.set_config('default_transaction_read_only', 'off', false)",
        "refused:function",
    ),
    Escape(
        "set-config-quoted",
        "SELECT \"set_config\"('statement_timeout', '0', false)",
        "refused:function",
    ),
    Escape(
        "set-config-unicode-name",
        "SELECT U&\"set\\005fconfig\"('statement_timeout', '0', false)",
        "refused:function",
    ),
    Escape(
        "set-config-in-where",
        "SELECT 1 WHERE set_config('statement_timeout', '0', false) IS NOT NULL",
        "refused:function",
    ),
    Escape(
        "set-config-rows-from",
        "SELECT * FROM ROWS FROM (set_config('statement_timeout', '0', false))",
        "refused:function",
    ),
    Escape(
        "set-config-subquery",
        "SELECT (SELECT set_config('statement_timeout', '0', false))",
        "refused:function",
    ),
    Escape("set-config-in-function", "SELECT evil_session()", "ok"),
    Escape("set-role-in-function", "SELECT evil_role()", "ok"),
    # -- procedural code ------------------------------------------------------------------
    Escape("do-block", "DO $$BEGIN EXECUTE 'DROP TABLE victim'; END$$", "refused:statement-kind"),
    Escape("call", "CALL evil_proc()", "refused:statement-kind"),
    Escape("write-in-function", "SELECT evil_delete()", "error"),
    # -- writes hidden in reads -----------------------------------------------------------
    Escape(
        "cte-delete",
        "WITH gone AS (DELETE FROM victim RETURNING *) SELECT * FROM gone",
        "refused:statement-kind",
    ),
    Escape(
        "cte-insert",
        "WITH x AS (INSERT INTO victim VALUES (666) RETURNING 1) SELECT 1",
        "refused:statement-kind",
    ),
    Escape(
        "cte-nested",
        "WITH a AS (WITH b AS (UPDATE victim SET note = 'x' RETURNING 1) SELECT * FROM b) "
        "SELECT * FROM a",
        "refused:statement-kind",
    ),
    Escape("select-into", "SELECT * INTO pwned FROM victim", "refused:select-into"),
    Escape("select-into-temp", "SELECT 1 INTO TEMP pwned", "refused:select-into"),
    Escape("create-table-as", "CREATE TABLE pwned AS SELECT 1", "refused:statement-kind"),
    Escape("insert", "INSERT INTO victim VALUES (2, 'x')", "refused:statement-kind"),
    Escape("update", "UPDATE victim SET note = 'x'", "refused:statement-kind"),
    Escape("delete", "DELETE FROM victim", "refused:statement-kind"),
    Escape(
        "merge",
        "MERGE INTO victim v USING (SELECT 1 AS id) s ON v.id = s.id WHEN MATCHED THEN DELETE",
        "refused:statement-kind",
    ),
    Escape("truncate", "TRUNCATE victim", "refused:statement-kind"),
    Escape("drop", "DROP TABLE victim", "refused:statement-kind"),
    Escape("create", "CREATE TABLE pwned (x int)", "refused:statement-kind"),
    Escape("alter-system", "ALTER SYSTEM SET work_mem = '1GB'", "refused:statement-kind"),
    Escape("grant", "GRANT ALL ON victim TO PUBLIC", "refused:statement-kind"),
    Escape("create-extension", "CREATE EXTENSION dblink", "refused:statement-kind"),
    Escape("vacuum", "VACUUM victim", "refused:statement-kind"),
    Escape("checkpoint", "CHECKPOINT", "refused:statement-kind"),
    Escape("load", "LOAD 'plpgsql'", "refused:statement-kind"),
    # -- locks ----------------------------------------------------------------------------
    Escape("for-update", "SELECT * FROM victim FOR UPDATE", "refused:locking"),
    Escape(
        "for-no-key-update-skip",
        "SELECT * FROM victim FOR NO KEY UPDATE SKIP LOCKED",
        "refused:locking",
    ),
    Escape("for-share-subquery", "SELECT * FROM (SELECT 1 FOR SHARE) s", "refused:locking"),
    Escape("lock-table", "LOCK TABLE victim", "refused:statement-kind"),
    Escape("advisory-lock", "SELECT pg_advisory_lock(42)", "refused:function"),
    Escape("advisory-try-lock", "SELECT pg_try_advisory_lock(42)", "refused:function"),
    Escape("advisory-xact-lock", "VALUES (pg_advisory_xact_lock(42))", "refused:function"),
    Escape("advisory-lock-in-function", "SELECT evil_lock()", "ok"),
    # -- EXPLAIN --------------------------------------------------------------------------
    Escape(
        "explain-analyze-delete", "EXPLAIN ANALYZE DELETE FROM victim", "refused:explain-analyze"
    ),
    Escape(
        "explain-analyze-options",
        "EXPLAIN (ANALYZE, FORMAT JSON) DELETE FROM victim",
        "refused:explain-analyze",
    ),
    Escape(
        "explain-analyze-on", "EXPLAIN (ANALYZE 'on') DELETE FROM victim", "refused:explain-analyze"
    ),
    Escape("explain-delete", "EXPLAIN DELETE FROM victim", "refused:statement-kind"),
    Escape("explain-execute", "EXPLAIN EXECUTE p", "refused:statement-kind"),
    Escape("explain-create-as", "EXPLAIN CREATE TABLE pwned AS SELECT 1", "refused:statement-kind"),
    Escape("explain-select", "EXPLAIN SELECT * FROM victim", "ok"),
    Escape("explain-analyze-off", "EXPLAIN (ANALYZE false) SELECT 1", "ok"),
    # -- session objects ------------------------------------------------------------------
    Escape("prepare", "PREPARE p AS DELETE FROM victim", "refused:statement-kind"),
    Escape("execute", "EXECUTE p", "refused:statement-kind"),
    Escape("deallocate", "DEALLOCATE ALL", "refused:statement-kind"),
    Escape("listen", "LISTEN ch", "refused:statement-kind"),
    Escape("notify", "NOTIFY ch", "refused:statement-kind"),
    Escape("pg-notify", "SELECT pg_notify('ch', 'x')", "refused:function"),
    Escape("declare", "DECLARE c CURSOR WITH HOLD FOR SELECT 1", "refused:statement-kind"),
    Escape("fetch", "FETCH ALL FROM pgharbor_cursor", "refused:statement-kind"),
    Escape("listen-in-function", "SELECT evil_listen()", "ok"),
    Escape("prepare-in-function", "SELECT evil_prepare()", "ok"),
    Escape("hold-cursor-in-function", "SELECT evil_hold()", "ok"),
    # -- functions with side effects ------------------------------------------------------
    Escape("nextval", "SELECT nextval('seq')", "refused:function"),
    Escape("setval", "SELECT setval('seq', 100)", "refused:function"),
    Escape(
        "nextval-lateral",
        "SELECT * FROM victim, LATERAL (SELECT nextval('seq')) s",
        "refused:function",
    ),
    Escape("terminate", "SELECT pg_terminate_backend(pg_backend_pid())", "refused:function"),
    Escape("cancel", "SELECT pg_cancel_backend(pid) FROM pg_stat_activity", "refused:function"),
    Escape("reload-conf", "SELECT pg_reload_conf()", "refused:function"),
    Escape("lo-import", "SELECT lo_import('/etc/hostname')", "refused:function"),
    Escape("lo-export", "SELECT lo_export(0, '/tmp/pgharbor-pwned')", "refused:function"),
    Escape("lo-from-bytea", "SELECT lo_from_bytea(0, 'x')", "refused:function"),
    Escape("read-file", "SELECT pg_read_file('/etc/hostname')", "refused:function"),
    Escape(
        "read-file-attribute", "SELECT ('/etc/hostname'::text).pg_read_file", "refused:function"
    ),
    Escape("ls-dir", "SELECT pg_ls_dir('.')", "refused:function"),
    Escape(
        "read-file-from-clause", "SELECT * FROM pg_read_file('/etc/hostname')", "refused:function"
    ),
    Escape(
        "read-binary-file-from-clause",
        "SELECT * FROM pg_catalog.pg_read_binary_file('/etc/hostname')",
        "refused:function",
    ),
    Escape(
        "stat-file-from-clause", "SELECT * FROM pg_stat_file('/etc/hostname')", "refused:function"
    ),
    Escape("ls-dir-from-clause", "SELECT * FROM pg_ls_dir('.') AS f", "refused:function"),
    Escape(
        "dblink",
        "SELECT * FROM dblink('dbname=postgres', 'DROP TABLE victim') AS t(x text)",
        "refused:function",
    ),
    Escape("dblink-exec", "SELECT dblink_exec('DROP TABLE victim')", "refused:function"),
    Escape(
        "query-to-xml",
        "SELECT query_to_xml('DELETE FROM victim RETURNING 1', true, true, '')",
        "refused:function",
    ),
    Escape(
        "ts-stat", "SELECT * FROM ts_stat('DELETE FROM victim RETURNING NULL')", "refused:function"
    ),
    Escape("sleep-past-timeout", "SELECT pg_sleep(5)", "timeout"),
    Escape(
        "recursive-forever",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
        "timeout",
    ),
    # -- COPY -----------------------------------------------------------------------------
    Escape(
        "copy-to-program",
        "COPY victim TO PROGRAM 'touch /tmp/pgharbor-pwned'",
        "refused:statement-kind",
    ),
    Escape("copy-from-program", "COPY victim FROM PROGRAM 'echo 2'", "refused:statement-kind"),
    Escape("copy-to-file", "COPY (SELECT 1) TO '/tmp/pgharbor-pwned'", "refused:statement-kind"),
    Escape("copy-to-stdout", "COPY victim TO STDOUT", "refused:statement-kind"),
    # -- lexical tricks -------------------------------------------------------------------
    Escape("block-comment", "SELECT 1 /* ; COMMIT; DROP TABLE victim */", "ok"),
    Escape("nested-comment", "/* /* */ COMMIT; DROP TABLE victim; */ SELECT 1", "ok"),
    Escape("line-comment", "SELECT 1 -- ; DROP TABLE victim", "ok"),
    Escape("dollar-quote", "SELECT $$;COMMIT;DROP TABLE victim;$$", "ok"),
    Escape("tagged-dollar-quote", "SELECT $a$ $$ ; DROP TABLE victim; $a$", "ok"),
    Escape("escape-string", "SELECT E'\\'; DROP TABLE victim; --'", "ok"),
    Escape("unicode-string", "SELECT U&'\\0027; DROP TABLE victim; --'", "ok"),
    Escape("quoted-identifier", 'SELECT 1 AS "; COMMIT; DROP TABLE victim; --"', "ok"),
    Escape("string-continuation", "SELECT 'a'\n'; DROP TABLE victim'", "ok"),
    Escape("mixed-case-keywords", "sElEcT/**/1", "ok"),
    Escape("byte-order-mark", "\ufeffSELECT 1; DROP TABLE victim", "refused:syntax"),
    Escape("unterminated-quote", "SELECT '; DROP TABLE victim", "refused:syntax"),
    Escape("unterminated-comment", "SELECT 1 /* ; DROP TABLE victim", "refused:syntax"),
    Escape("backslash-semicolon", "SELECT 1 \\; DROP TABLE victim", "refused:syntax"),
    Escape(
        "param-newline-in-comment",
        "SELECT 1 -- {p}\n",
        _X,
        params=("\n; COMMIT; DROP TABLE victim; --",),
    ),
    Escape("param-value", "SELECT {p}::text", "ok", params=("'; COMMIT; DROP TABLE victim; --",)),
    Escape("empty", "", "refused:text"),
    Escape("only-semicolons", ";;;", "refused:text"),
    Escape("only-comment", "-- nothing", "refused:text"),
    # -- size -----------------------------------------------------------------------------
    Escape("huge-result", "SELECT generate_series(1, 1000000000) AS g", "ok", truncated=True),
    Escape(
        "huge-cross-join",
        "SELECT a.oid FROM pg_class a, pg_class b, pg_class c, pg_class d",
        "ok",
        truncated=True,
    ),
    Escape("long-text", "SELECT 1" + " " * 200_000, "refused:text"),
    Escape("nul-byte", "SELECT 1\x00; DROP TABLE victim", "refused:text"),
    Escape("lone-surrogate", "SELECT '\ud800'; DROP TABLE victim", "refused:text"),
    Escape("deep-nesting", "SELECT " + "(" * 20_000 + "1" + ")" * 20_000, _X),
    # -- plain reads stay possible --------------------------------------------------------
    Escape("select", "SELECT * FROM victim", "ok", truncated=False),
    Escape("table", "TABLE victim", "ok"),
    Escape("values", "VALUES (1), (2)", "ok"),
    Escape("show", "SHOW statement_timeout", "ok"),
    Escape("show-all", "SHOW ALL", "ok"),
    Escape("catalog-read", "SELECT count(*) FROM pg_stat_activity", "ok"),
    Escape("union", "SELECT id FROM victim UNION ALL SELECT 2", "ok"),
]
