"""pgharbor.sqlalchemy: SQLAlchemy Core and ORM over pgharbor pools, against a
real server, for every driver SQLAlchemy and pgharbor share (sync: psycopg,
psycopg2; asyncio: psycopg, asyncpg)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from pgharbor import AsyncPool, ConfigError, Pool, PoolTimeout
from pgharbor.sqlalchemy import create_async_engine, create_engine, pool_of
from pgharbor.testing import PostgresServer, TempDatabase

SYNC_DRIVERS = ["psycopg", "psycopg2"]
ASYNC_DRIVERS = ["psycopg", "asyncpg"]


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "item"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


def _url(db: TempDatabase, driver: str) -> str:
    return db.url().replace("postgresql://", f"postgresql+{driver}://", 1)


@pytest.fixture
def make_engine(pg_database: TempDatabase, app_name: str) -> Iterator[Callable[..., Engine]]:
    """Sync engines tagged with the test's application_name, disposed after."""
    engines: list[Engine] = []

    def factory(driver: str = "psycopg", **settings: Any) -> Engine:
        settings.setdefault("min_size", 1)
        settings.setdefault("max_size", 2)
        settings.setdefault("timeout", 5.0)
        settings.setdefault("connect_args", {"application_name": app_name})
        engine = create_engine(_url(pg_database, driver), **settings)
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        engine.dispose()


@pytest.fixture
async def make_async_engine(
    pg_database: TempDatabase, app_name: str
) -> AsyncIterator[Callable[..., AsyncEngine]]:
    """Asyncio engines tagged with the test's application_name, disposed after."""
    engines: list[AsyncEngine] = []

    def factory(driver: str = "psycopg", **settings: Any) -> AsyncEngine:
        settings.setdefault("min_size", 1)
        settings.setdefault("max_size", 2)
        settings.setdefault("timeout", 5.0)
        settings.setdefault("connect_args", {"application_name": app_name})
        engine = create_async_engine(_url(pg_database, driver), **settings)
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        await engine.dispose()


def _wait_gone(pg_server: PostgresServer, pid: int, timeout: float = 5.0) -> None:
    """Wait until the backend ``pid`` has exited."""
    deadline = time.monotonic() + timeout
    while pg_server.execute(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}")[0][0]:
        assert time.monotonic() < deadline, f"backend {pid} still there after {timeout} s"
        time.sleep(0.01)


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM t")).scalar_one())


# -- Core, sync --------------------------------------------------------------


@pytest.mark.parametrize("driver", SYNC_DRIVERS)
def test_begin_rolls_back_on_error_and_commits_otherwise(
    make_engine: Callable[..., Engine], driver: str
) -> None:
    """A failing engine.begin() block leaves nothing written; a good one commits."""
    engine = make_engine(driver)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x int)"))
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        raise RuntimeError("boom")
    assert _count(engine) == 0
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO t VALUES (2)"))
    assert _count(engine) == 1
    # Without commit(), a connect() block's work is rolled back at close.
    with engine.connect() as conn:
        conn.execute(sa.text("INSERT INTO t VALUES (3)"))
    assert _count(engine) == 1
    assert pool_of(engine).stats()["in_use"] == 0


@pytest.mark.parametrize("driver", SYNC_DRIVERS)
def test_checkouts_beyond_max_size_do_not_leak(
    make_engine: Callable[..., Engine], driver: str
) -> None:
    """Closing an engine connection gives it back: 3x max_size checkouts in a row
    with a 1 s timeout all succeed, and nothing stays lent out."""
    engine = make_engine(driver, max_size=2, timeout=1.0)
    for _ in range(6):
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    stats = pool_of(engine).stats()
    assert stats["in_use"] == 0 and stats["size"] <= 2
    assert stats["acquired"] == 6


def test_pool_exhaustion_raises_pgharbors_timeout(
    make_engine: Callable[..., Engine],
) -> None:
    """With every connection held, a checkout fails with pgharbor's PoolTimeout."""
    engine = make_engine(max_size=1, timeout=0.2)
    with engine.connect(), pytest.raises(PoolTimeout):
        engine.connect()


def test_isolation_level_holds_on_every_checkout(
    make_engine: Callable[..., Engine],
) -> None:
    """The engine's isolation_level applies on every checkout (pgharbor's reset
    at return does not lose it), and one connection's AUTOCOMMIT does not leak
    to the next borrower."""
    engine = make_engine(isolation_level="SERIALIZABLE", max_size=1)
    show = sa.text("SHOW transaction_isolation")
    for _ in range(3):
        with engine.connect() as conn:
            assert conn.execute(show).scalar_one() == "serializable"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        assert conn.execute(show).scalar_one() == "read committed"
    with engine.begin() as conn:
        assert conn.execute(show).scalar_one() == "serializable"
        assert conn.execute(sa.text("SELECT now() = statement_timestamp()")).scalar_one() in (
            True,
            False,
        )
        assert conn.connection.dbapi_connection is not None
        assert conn.connection.dbapi_connection.autocommit is False


def test_dispose_closes_the_pgharbor_pool(
    make_engine: Callable[..., Engine], pg_server: PostgresServer, app_name: str
) -> None:
    """engine.dispose() closes the pgharbor pool (no backend left); the engine
    then works on a new pool."""
    engine = make_engine(min_size=2)
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    first = pool_of(engine)
    assert isinstance(first, Pool)
    assert len(pg_server.backends(app_name)) == 2
    engine.dispose()
    assert "closed" in repr(first)
    assert pg_server.backends(app_name) == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    assert pool_of(engine) is not first


def test_dead_idle_connection_is_never_lent(
    make_engine: Callable[..., Engine], pg_server: PostgresServer
) -> None:
    """A backend killed while its connection sits idle in the pool: no statement
    fails (pgharbor's checkout check catches it, unsent); invalidate() on a
    connection replaces it."""
    engine = make_engine(min_size=2, max_size=2)
    with engine.connect() as a, engine.connect() as b:
        pid_a = a.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        b.execute(sa.text("SELECT 1"))
    pg_server.execute(f"SELECT pg_terminate_backend({pid_a})")
    _wait_gone(pg_server, pid_a)  # its FATAL is then on the client's socket
    with engine.connect() as a, engine.connect() as b:
        pids = {c.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() for c in (a, b)}
    assert pid_a not in pids and len(pids) == 2
    with engine.connect() as conn:
        conn.invalidate()
    assert pool_of(engine).stats()["in_use"] == 0


def test_disconnect_mid_use_invalidates_one_connection(
    make_engine: Callable[..., Engine], pg_server: PostgresServer
) -> None:
    """A connection killed while checked out: SQLAlchemy raises a disconnect
    error and invalidates it; the other, healthy connection is kept (not
    closed by SQLAlchemy's pool-wide invalidation) and the pool lends nothing
    dead."""
    engine = make_engine(min_size=2, max_size=2)
    with engine.connect() as a, engine.connect() as b:
        pid_b = b.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        b.close()
        pid_a = a.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        pg_server.execute(f"SELECT pg_terminate_backend({pid_a})")
        with pytest.raises(sa_exc.OperationalError) as info:
            a.execute(sa.text("SELECT 1"))
        assert info.value.connection_invalidated
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() == pid_b
    assert pool_of(engine).stats()["in_use"] == 0


@pytest.mark.parametrize("driver", SYNC_DRIVERS)
def test_server_restart_between_sessions_is_invisible(
    make_engine: Callable[..., Engine], pg_server: PostgresServer, driver: str
) -> None:
    """pg_server.restart() between two ORM sessions: the second one works, on
    new connections (the dead ones are caught at checkout, unsent)."""
    engine = make_engine(driver, min_size=2, max_size=2)
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        session.add(Item(id=1, name="before"))
    pg_server.restart()
    with Session(engine) as session, session.begin():
        session.add(Item(id=2, name="after"))
    with Session(engine) as session:
        assert sorted(session.scalars(sa.select(Item.name))) == ["after", "before"]
    assert pool_of(engine).stats()["connections_lost"] >= 1


def test_detached_connection_frees_its_slot_once_closed(
    make_engine: Callable[..., Engine],
) -> None:
    """A detached DB-API connection leaves the pool's hands; once the user closes
    it, pgharbor gets its slot back."""
    engine = make_engine(max_size=1, timeout=1.0)
    raw = engine.raw_connection()
    raw.detach()
    raw.close()
    with engine.connect() as conn:  # would time out if the slot were lost
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    assert pool_of(engine).stats()["in_use"] == 0


def test_threads_share_the_pool(make_engine: Callable[..., Engine]) -> None:
    """Eight threads, 3 connections: every transaction commits, none leaks."""
    engine = make_engine(max_size=3, timeout=10.0)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x int)"))
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                with engine.begin() as conn:
                    conn.execute(sa.text("INSERT INTO t VALUES (:x)"), {"x": n * 100 + i})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _count(engine) == 80
    stats = pool_of(engine).stats()
    assert stats["in_use"] == 0 and stats["size"] <= 3


# -- ORM, sync ---------------------------------------------------------------


@pytest.mark.parametrize("driver", SYNC_DRIVERS)
def test_orm_session_commit_and_rollback(make_engine: Callable[..., Engine], driver: str) -> None:
    """Session.commit() persists, Session.rollback() and a failing session.begin()
    block discard."""
    engine = make_engine(driver)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Item(id=1, name="kept"))
        session.commit()
        session.add(Item(id=2, name="rolled back"))
        session.flush()  # sent to the server, inside the transaction
        session.rollback()
    with pytest.raises(RuntimeError), Session(engine) as session, session.begin():
        session.add(Item(id=3, name="failed"))
        session.flush()
        raise RuntimeError("boom")
    with Session(engine) as session:
        assert list(session.scalars(sa.select(Item.name))) == ["kept"]
    assert pool_of(engine).stats()["in_use"] == 0


# -- asyncio -----------------------------------------------------------------


@pytest.mark.parametrize("driver", ASYNC_DRIVERS)
async def test_async_begin_rolls_back_and_session_commits(
    make_async_engine: Callable[..., AsyncEngine], driver: str
) -> None:
    """Async engine: a failing begin() block leaves nothing; AsyncSession commit
    persists and rollback discards; nothing stays lent out."""
    engine = make_async_engine(driver)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await conn.execute(sa.insert(Item).values(id=1, name="failed"))
            raise RuntimeError("boom")
    async with AsyncSession(engine) as session:
        session.add(Item(id=2, name="kept"))
        await session.commit()
        session.add(Item(id=3, name="rolled back"))
        await session.flush()
        await session.rollback()
    async with AsyncSession(engine) as session:
        assert list(await session.scalars(sa.select(Item.name))) == ["kept"]
    harbor = pool_of(engine)
    assert isinstance(harbor, AsyncPool)
    assert harbor.stats()["in_use"] == 0


@pytest.mark.parametrize("driver", ASYNC_DRIVERS)
async def test_async_tasks_share_the_pool_without_leaks(
    make_async_engine: Callable[..., AsyncEngine], driver: str
) -> None:
    """Twenty tasks over 2 connections with a 1 s timeout: all finish, none leaks."""
    engine = make_async_engine(driver, max_size=2, timeout=5.0)

    async def one(i: int) -> int:
        async with engine.connect() as conn:
            return int((await conn.execute(sa.text("SELECT :i").bindparams(i=i))).scalar_one())

    assert await asyncio.gather(*(one(i) for i in range(20))) == list(range(20))
    stats = pool_of(engine).stats()
    assert stats["in_use"] == 0 and stats["size"] <= 2


@pytest.mark.parametrize("driver", ASYNC_DRIVERS)
async def test_async_server_restart_between_sessions_is_invisible(
    make_async_engine: Callable[..., AsyncEngine], pg_server: PostgresServer, driver: str
) -> None:
    """Async: pg_server.restart() between two sessions goes unnoticed."""
    engine = make_async_engine(driver, min_size=2, max_size=2)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.execute(sa.insert(Item).values(id=1, name="before"))
    await asyncio.to_thread(pg_server.restart)
    async with AsyncSession(engine) as session, session.begin():
        session.add(Item(id=2, name="after"))
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(Item))).scalar() == 2


async def test_async_dispose_closes_the_pool(
    make_async_engine: Callable[..., AsyncEngine], pg_server: PostgresServer, app_name: str
) -> None:
    """AsyncEngine.dispose() closes the pgharbor pool: no backend is left."""
    engine = make_async_engine("asyncpg", min_size=2)
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))
    assert len(pg_server.backends(app_name)) == 2
    await engine.dispose()
    assert pg_server.backends(app_name) == []


# -- configuration -----------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"pool_size": 5}, "pool_size"),
        ({"max_overflow": 5}, "max_overflow"),
        ({"pool_timeout": 5}, "pool_timeout"),
        ({"pool_recycle": 5}, "pool_recycle"),
        ({"poolclass": object}, "poolclass"),
        ({"max_size": 0}, "max_size"),
        ({"connect_args": {"sslmdoe": "disable"}}, "sslmdoe"),
    ],
)
def test_bad_settings_fail_at_once(settings: dict[str, Any], field: str) -> None:
    """SQLAlchemy's own pool settings and invalid pgharbor settings raise
    ConfigError naming the field, before anything connects."""
    with pytest.raises(ConfigError) as info:
        create_engine("postgresql+psycopg://u@127.0.0.1:1/db", **settings)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("url", "asynchronous"),
    [
        ("postgresql+asyncpg://u@127.0.0.1:1/db", False),
        ("postgresql+psycopg2://u@127.0.0.1:1/db", True),
        ("postgresql+pg8000://u@127.0.0.1:1/db", False),
        ("mysql://u@127.0.0.1:1/db", False),
        ("not a url", False),
    ],
)
def test_unsupported_urls_are_refused(url: str, asynchronous: bool) -> None:
    """A driver of the wrong flavour, another driver or database: ConfigError on url."""
    build = create_async_engine if asynchronous else create_engine
    with pytest.raises(ConfigError) as info:
        build(url)
    assert info.value.field == "url"


def test_the_engine_url_carries_no_password() -> None:
    """The password goes to pgharbor (which masks it), not into engine.url."""
    engine = create_engine("postgresql://alice:s3cret@127.0.0.1:1/db?sslmode=disable")
    try:
        assert "s3cret" not in engine.url.render_as_string(hide_password=False)
        assert "s3cret" not in repr(pool_of(engine))
        assert pool_of(engine).target == "127.0.0.1:1/db as alice"
    finally:
        engine.dispose()


def test_pool_of_refuses_other_engines() -> None:
    """pool_of() on an engine SQLAlchemy pools itself raises ConfigError."""
    engine = sa.create_engine("postgresql+psycopg://u@127.0.0.1:1/db")
    with pytest.raises(ConfigError):
        pool_of(engine)


def test_pre_ping_and_reset_pass_through(make_engine: Callable[..., Engine]) -> None:
    """pool_pre_ping is accepted (SQLAlchemy's pool pings at checkout), reset=
    goes to pgharbor's pool (with "session", a SET does not reach the next
    borrower)."""
    engine = make_engine(pool_pre_ping=True, reset="session", max_size=1)
    with engine.connect() as conn:
        conn.execute(sa.text("SET application_name = 'changed'"))
        conn.commit()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SHOW application_name")).scalar_one() != "changed"
    assert pool_of(engine).stats()["acquired"] == 2


def test_async_engine_disposed_moves_to_the_next_event_loop(
    pg_database: TempDatabase, app_name: str
) -> None:
    """An async engine disposed before its event loop ends works in the next
    loop (asyncio.run twice), on a new pgharbor pool."""
    engine = create_async_engine(
        _url(pg_database, "asyncpg"), min_size=1, connect_args={"application_name": app_name}
    )
    pools = []

    async def use() -> int:
        try:
            async with engine.connect() as conn:
                pools.append(pool_of(engine))
                return int((await conn.execute(sa.text("SELECT 1"))).scalar_one())
        finally:
            await engine.dispose()

    assert asyncio.run(use()) == 1
    assert asyncio.run(use()) == 1
    assert pools[0] is not pools[1]


@pytest.mark.replica
def test_replica_reads_through_a_routing_session(
    pg_primary_replica: tuple[PostgresServer, PostgresServer], app_name: str
) -> None:
    """The documented read/write split: a second engine on the replica, chosen
    by a session's get_bind; writes reach the primary, reads the replica."""
    primary, replica = pg_primary_replica
    args = {"min_size": 1, "max_size": 2, "connect_args": {"application_name": app_name}}
    writer = create_engine(_url_of(primary, "psycopg"), **args)
    reader = create_engine(_url_of(replica, "psycopg"), **args)

    class RoutingSession(Session):
        def get_bind(self, mapper: Any = None, clause: Any = None, **kw: Any) -> Any:
            if self._flushing or isinstance(clause, sa.Update | sa.Delete | sa.Insert):
                return writer
            return reader

    try:
        Base.metadata.create_all(writer)
        with RoutingSession() as session:
            session.add(Item(id=1, name="replicated"))
            session.commit()
            deadline = time.monotonic() + 10
            while _names(session) != ["replicated"]:  # replication lag
                assert time.monotonic() < deadline, "not replicated in 10 s"
                time.sleep(0.05)
            assert session.scalar(sa.text("SELECT pg_is_in_recovery()")) is True
        assert pool_of(reader).stats()["acquired"] >= 1
        assert pool_of(writer).stats()["acquired"] >= 1
    finally:
        Base.metadata.drop_all(writer)
        writer.dispose()
        reader.dispose()


def _names(session: Session) -> list[str]:
    """The item names the session reads (none while the table is not replayed)."""
    try:
        return list(session.scalars(sa.select(Item.name)))
    except sa_exc.ProgrammingError:
        return []
    finally:
        session.rollback()


def _url_of(server: PostgresServer, driver: str) -> str:
    return server.url().replace("postgresql://", f"postgresql+{driver}://", 1)
