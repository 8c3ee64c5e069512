"""Database errors a driver switch does not break, against real servers: the
same pgharbor classes with every driver, the driver's own classes kept
(source of the generated sync tests)."""

from __future__ import annotations

import pickle
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import pgharbor
from pgharbor._acompat import asleep
from pgharbor._async.database import AsyncDatabase
from pgharbor.errors import (
    CheckViolation,
    ConnectionFailed,
    ConnectionLost,
    DatabaseError,
    DatabaseUnavailable,
    DataError,
    DeadlockDetected,
    ForeignKeyViolation,
    HarborError,
    IntegrityError,
    LockNotAvailable,
    NotNullViolation,
    ProgrammingError,
    QueryCanceled,
    SerializationFailure,
    TransactionRollback,
    UniqueViolation,
)
from pgharbor.testing import PostgresServer, TempDatabase

from .helpers import ph

if True:  # ASYNC
    import asyncio

DbFactory = Callable[..., AsyncDatabase]


def driver_error(driver: str) -> type[BaseException]:
    """The root of the driver's own server errors."""
    if driver == "asyncpg":
        import asyncpg

        return asyncpg.PostgresError
    if driver == "psycopg2":
        import psycopg2

        return psycopg2.Error
    import psycopg

    return psycopg.Error


def constraint_of(error: Any, driver: str) -> str:
    """The violated constraint's name, read the driver's own way."""
    if driver == "asyncpg":
        return str(error.constraint_name)
    return str(error.diag.constraint_name)


def check_mapped(error: BaseException, cls: type[DatabaseError], code: str, driver: str) -> None:
    """``error`` is pgharbor's ``cls`` with ``code``, and the driver's own error too."""
    assert isinstance(error, cls) and isinstance(error, DatabaseError)
    assert error.sqlstate == code
    cause = error.__cause__
    assert cause is not None and type(cause).__module__.startswith(driver)
    assert isinstance(error, type(cause)) and isinstance(error, driver_error(driver))
    assert str(error) == str(cause)
    assert type(error).__name__ == cls.__name__ and type(error).__module__ == "pgharbor"


@pytest.fixture
async def make_db(
    pg_database: TempDatabase, app_name: str, driver: str
) -> AsyncIterator[DbFactory]:
    dbs: list[AsyncDatabase] = []

    def factory(conninfo: str | None = None, **kwargs: Any) -> AsyncDatabase:
        kwargs.setdefault("min_size", 1)
        kwargs.setdefault("max_size", 3)
        db = AsyncDatabase(
            conninfo if conninfo is not None else pg_database.conninfo(),
            driver=driver,
            application_name=app_name,
            **kwargs,
        )
        dbs.append(db)
        return db

    yield factory
    for db in dbs:
        await db.close()


SCHEMA = """
    CREATE TABLE parent (id int PRIMARY KEY);
    CREATE TABLE child (
        id int CONSTRAINT child_pk PRIMARY KEY,
        parent int CONSTRAINT child_parent REFERENCES parent,
        name text NOT NULL,
        qty int CONSTRAINT child_qty CHECK (qty >= 0)
    );
    INSERT INTO parent VALUES (1);
    INSERT INTO child VALUES (1, 1, 'a', 1);
"""


async def test_constraint_violations_raise_the_same_classes(
    make_db: DbFactory, driver: str
) -> None:
    """Unique, foreign-key, not-null and check violations raise pgharbor's
    classes with their SQLSTATE, which are also the driver's own classes
    with the driver's attributes."""
    async with make_db() as db:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                await db.execute(statement)
        insert = f"INSERT INTO child VALUES ({', '.join(ph(driver, n) for n in range(1, 5))})"
        cases: list[tuple[tuple[Any, ...], type[DatabaseError], str, str | None]] = [
            ((1, 1, "b", 1), UniqueViolation, "23505", "child_pk"),
            ((2, 9, "b", 1), ForeignKeyViolation, "23503", "child_parent"),
            ((3, 1, None, 1), NotNullViolation, "23502", None),
            ((4, 1, "b", -1), CheckViolation, "23514", "child_qty"),
        ]
        for params, cls, code, constraint in cases:
            with pytest.raises(IntegrityError) as info:
                await db.execute(insert, params)
            check_mapped(info.value, cls, code, driver)
            if constraint is not None:
                assert constraint_of(info.value, driver) == constraint
            if driver == "psycopg2":
                # psycopg2 keeps these in the C object: read from the original.
                assert info.value.pgcode == code  # type: ignore[attr-defined]
        assert await db.fetchval("SELECT count(*) FROM child") == 1


async def test_statement_errors_by_class(make_db: DbFactory, driver: str) -> None:
    """A bad value is a DataError (22xxx), an unknown table a ProgrammingError
    (42P01), an unmapped code a plain DatabaseError with its SQLSTATE."""
    async with make_db() as db:
        with pytest.raises(DataError) as data:
            await db.fetchval("SELECT 'x'::int")
        check_mapped(data.value, DataError, "22P02", driver)
        with pytest.raises(ProgrammingError) as programming:
            await db.fetch("SELECT * FROM no_such_table")
        check_mapped(programming.value, ProgrammingError, "42P01", driver)
        with pytest.raises(DatabaseError) as raised:
            await db.execute("DO $$ BEGIN RAISE EXCEPTION 'custom' USING ERRCODE = 'P0001'; END $$")
        check_mapped(raised.value, DatabaseError, "P0001", driver)


async def test_errors_inside_and_at_the_end_of_transactions(
    make_db: DbFactory, driver: str
) -> None:
    """A transaction's statements and its COMMIT (a deferred constraint) raise
    pgharbor's classes; the transaction is rolled back."""
    async with make_db() as db:
        await db.execute("CREATE TABLE d (id int NOT NULL CONSTRAINT d_id UNIQUE DEFERRABLE)")
        with pytest.raises(UniqueViolation) as inside:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO d VALUES (1)")
                await tx.execute("INSERT INTO d VALUES (1)")
        check_mapped(inside.value, UniqueViolation, "23505", driver)
        with pytest.raises(UniqueViolation) as at_commit:
            async with db.transaction() as tx:
                await tx.execute("SET CONSTRAINTS ALL DEFERRED")
                await tx.execute("INSERT INTO d VALUES (2)")
                await tx.execute("INSERT INTO d VALUES (2)")
        check_mapped(at_commit.value, UniqueViolation, "23505", driver)
        with pytest.raises(UniqueViolation):
            async with db.transaction() as tx:
                await tx.executemany("INSERT INTO d VALUES (" + ph(driver, 1) + ")", [(3,), (3,)])
        with pytest.raises(NotNullViolation):
            await db.copy_records("d", [(None,)])
        with pytest.raises(UniqueViolation):
            async with db.transaction() as tx:
                await tx.copy_records("d", [(4,), (4,)])
        assert await db.fetchval("SELECT count(*) FROM d") == 0
        assert db.stats()["in_use"] == 0


async def test_serialization_failure(make_db: DbFactory, driver: str) -> None:
    """Write skew between two serializable transactions: one gets
    SerializationFailure (40001), a TransactionRollback."""
    async with make_db() as db:
        await db.execute("CREATE TABLE oncall (doctor int, shift int)")
        with pytest.raises(TransactionRollback) as info:
            # The second commits first (its block ends first); the first then fails.
            async with (
                db.transaction("serializable") as first,
                db.transaction("serializable") as second,
            ):
                await first.fetchval("SELECT count(*) FROM oncall WHERE shift = 2")
                await second.fetchval("SELECT count(*) FROM oncall WHERE shift = 1")
                await first.execute("INSERT INTO oncall VALUES (1, 1)")
                await second.execute("INSERT INTO oncall VALUES (2, 2)")
        check_mapped(info.value, SerializationFailure, "40001", driver)
        assert await db.fetchval("SELECT count(*) FROM oncall") == 1


async def test_lock_not_available(make_db: DbFactory, driver: str) -> None:
    """NOWAIT on a row another transaction holds raises LockNotAvailable (55P03)."""
    async with make_db() as db:
        await db.execute("CREATE TABLE r (id int PRIMARY KEY)")
        await db.execute("INSERT INTO r VALUES (1)")
        async with db.transaction() as holder:
            await holder.execute("SELECT * FROM r WHERE id = 1 FOR UPDATE")
            with pytest.raises(LockNotAvailable) as info:
                async with db.transaction() as other:
                    await other.execute("SELECT * FROM r WHERE id = 1 FOR UPDATE NOWAIT")
        check_mapped(info.value, LockNotAvailable, "55P03", driver)


async def test_deadlock_detected(make_db: DbFactory, driver: str) -> None:
    """Two transactions locking rows in opposite orders: the one the server
    picks gets DeadlockDetected (40P01); the other commits."""
    async with make_db(server_settings={"deadlock_timeout": "50ms"}) as db:
        await db.execute("CREATE TABLE acct (id int PRIMARY KEY, v int)")
        await db.execute("INSERT INTO acct VALUES (1, 0), (2, 0)")
        both_locked = 0

        async def transfer(first: int, second: int) -> None:
            nonlocal both_locked
            async with db.transaction() as tx:
                await tx.execute(f"UPDATE acct SET v = v + 1 WHERE id = {first}")
                both_locked += 1
                while both_locked < 2:
                    await asleep(0.01)
                await tx.execute(f"UPDATE acct SET v = v + 1 WHERE id = {second}")

        if True:  # ASYNC
            results = await asyncio.gather(transfer(1, 2), transfer(2, 1), return_exceptions=True)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(2) as pool:
                futures = [pool.submit(transfer, 1, 2), pool.submit(transfer, 2, 1)]
                results = [f.exception() for f in futures]
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1, results
        check_mapped(errors[0], DeadlockDetected, "40P01", driver)
        assert isinstance(errors[0], TransactionRollback)


async def test_query_canceled_and_call_timeouts(make_db: DbFactory, driver: str) -> None:
    """The server's statement_timeout raises QueryCanceled (57014); a call's
    own timeout= stays a TimeoutError."""
    async with make_db(statement_timeout=0.1) as db:
        with pytest.raises(QueryCanceled) as info:
            await db.fetchval("SELECT pg_sleep(2)")
        check_mapped(info.value, QueryCanceled, "57014", driver)
    async with make_db() as db:
        with pytest.raises(TimeoutError) as timed_out:
            await db.fetchval("SELECT pg_sleep(2)", timeout=0.1)
        assert not isinstance(timed_out.value, HarborError)


async def test_connection_lost_under_a_statement(
    make_db: DbFactory, pg_server: PostgresServer, driver: str
) -> None:
    """A backend terminated under a transaction: the next statement raises
    ConnectionLost, a DatabaseUnavailable, caused by the driver's error."""
    async with make_db() as db:
        with pytest.raises(DatabaseUnavailable) as info:
            async with db.transaction() as tx:
                pid = await tx.fetchval("SELECT pg_backend_pid()")
                pg_server.execute("SELECT pg_terminate_backend(%s)", (pid,))
                await tx.fetchval("SELECT 1")
        error = info.value
        assert isinstance(error, ConnectionLost) and isinstance(error, DatabaseError)
        assert error.sqlstate is None or error.sqlstate.startswith(("08", "57P"))
        cause = error.__cause__
        assert cause is not None and isinstance(error, type(cause))
        # The pool replaced it: the database works on.
        assert await db.fetchval("SELECT 1") == 1


async def test_unavailable_database(make_db: DbFactory) -> None:
    """Nothing listening: opening, and a statement on a database opened in
    the background, raise DatabaseUnavailable."""
    db = make_db("host=127.0.0.1 port=1 dbname=x connect_timeout=2", timeout=0.5)
    with pytest.raises(DatabaseUnavailable) as opening:
        await db.open()
    assert isinstance(opening.value, ConnectionFailed)
    background = make_db("host=127.0.0.1 port=1 dbname=x connect_timeout=2", timeout=0.5)
    await background.open(wait=False)
    with pytest.raises(DatabaseUnavailable):
        await background.fetchval("SELECT 1")
    assert issubclass(pgharbor.PoolTimeout, DatabaseUnavailable)
    assert issubclass(pgharbor.CircuitOpen, DatabaseUnavailable)


async def test_raw_connections_keep_native_errors(make_db: DbFactory, driver: str) -> None:
    """On a connection from db.connection(), errors are the driver's, untouched."""
    async with make_db() as db:
        async with db.connection() as conn:
            with pytest.raises(driver_error(driver)) as info:
                if driver == "asyncpg":
                    await conn.execute("SELECT * FROM no_such_table")
                elif driver == "psycopg2":
                    with conn.cursor() as cur:
                        cur.execute("SELECT * FROM no_such_table")
                else:
                    await conn.execute("SELECT * FROM no_such_table")
        assert not isinstance(info.value, HarborError)


async def test_client_side_errors_pass_through(make_db: DbFactory, driver: str) -> None:
    """An error the driver raises before sending (wrong parameters) is not
    turned into a DatabaseError."""
    async with make_db() as db:
        with pytest.raises(Exception) as info:
            await db.fetchval(f"SELECT {ph(driver, 1)}::int, {ph(driver, 2)}::int", (1,))
        assert not isinstance(info.value, HarborError)


async def test_mapped_errors_pickle(make_db: DbFactory, driver: str) -> None:
    """A mapped error survives pickling: the same classes and SQLSTATE."""
    async with make_db() as db:
        with pytest.raises(DataError) as info:
            await db.fetchval("SELECT 1 / 0")
        clone = pickle.loads(pickle.dumps(info.value))
        assert type(clone) is type(info.value)
        assert clone.sqlstate == "22012" and str(clone) == str(info.value)
        assert isinstance(clone, driver_error(driver))
