"""`pgharbor check` says whether the role can write (the third wall), on a real server."""

from __future__ import annotations

import uuid

from pgharbor import Database, DatabaseManager
from pgharbor.testing import PostgresServer, TempDatabase


def _check(pg_database: TempDatabase, user: str, app_name: str) -> tuple[bool | None, list[str]]:
    db = Database(
        pg_database.conninfo(user=user, password="pw"),
        min_size=1,
        max_size=1,
        kwargs={"application_name": app_name},
    )
    with DatabaseManager({"db": db}) as manager:
        report = manager.check(timeout=10)
    (check,) = report.databases
    return check.can_write, check.write_access


def test_check_reports_whether_the_role_can_write(
    pg_server: PostgresServer, pg_database: TempDatabase, app_name: str
) -> None:
    """A role with SELECT only reads as read-only; one with INSERT on a table,
    CREATE on a schema, or superuser, is reported with what it can change."""
    suffix = uuid.uuid4().hex[:8]
    reader, writer = f"reader_{suffix}", f"writer_{suffix}"
    pg_server.create_role(reader, password="pw")
    pg_server.create_role(writer, password="pw")
    try:
        pg_server.execute(
            f"REVOKE CREATE ON SCHEMA public FROM PUBLIC;"
            f" CREATE TABLE items (id int); CREATE TABLE logs (id int);"
            f" GRANT SELECT ON items, logs TO {reader}; GRANT SELECT, INSERT ON logs TO {writer};"
            f" GRANT CREATE ON SCHEMA public TO {writer}",
            dbname=pg_database.name,
        )
        can_write, access = _check(pg_database, reader, app_name)
        assert can_write is False and access == []
        can_write, access = _check(pg_database, writer, app_name)
        assert can_write is True
        assert "can write 1 table(s): public.logs" in access
        assert "can create objects in schema(s): public" in access
        can_write, access = _check(pg_database, "postgres", app_name)
        assert can_write is True and access[0].startswith("superuser")
    finally:
        pg_server.drop_database(pg_database.name, force=True)
        pg_server.execute(f"DROP ROLE {reader}; DROP ROLE {writer}")
