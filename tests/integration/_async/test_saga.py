"""AsyncSaga over two real databases, every driver (source of the generated
sync tests for Saga)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pgharbor._async.database import AsyncDatabase, AsyncTransaction
from pgharbor._async.manager import AsyncDatabaseManager
from pgharbor._async.saga import AsyncSaga
from pgharbor._policy.backoff import Backoff
from pgharbor._saga import SagaContext
from pgharbor.errors import ConfigError, SagaCompensationFailed, SagaError, SagaFailed
from pgharbor.facts import to_dollar
from pgharbor.testing import PostgresServer, TempDatabase

FAST = Backoff(initial=0.01, max_delay=0.05)


@pytest.fixture
async def mgr(
    pg_server: PostgresServer, pg_database: TempDatabase, app_name: str, driver: str
) -> AsyncIterator[AsyncDatabaseManager]:
    """A bank (accounts) and a ledger (credits): two databases on one server."""
    other = f"t_{uuid.uuid4().hex[:12]}"
    pg_server.create_database(other)
    pg_server.execute(
        "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL CHECK (balance >= 0));"
        " INSERT INTO accounts VALUES (1, 100), (2, 5)",
        dbname=pg_database.name,
    )
    pg_server.execute(
        "CREATE TABLE credits (id serial PRIMARY KEY, account int, amount int);"
        " CREATE TABLE undone (n serial, step text)",
        dbname=other,
    )
    opts: dict[str, Any] = {
        "driver": driver,
        "min_size": 1,
        "max_size": 2,
        "kwargs": {"application_name": app_name},
    }
    manager = AsyncDatabaseManager(
        {
            "bank": AsyncDatabase(pg_database.conninfo(), name="bank", **opts),
            "ledger": AsyncDatabase(pg_server.conninfo(dbname=other), name="ledger", **opts),
        }
    )
    async with manager:
        yield manager
    pg_server.drop_database(other)


def sql(tx: AsyncTransaction, text: str) -> str:
    """``%s`` placeholders in the driver's style (asyncpg numbers them)."""
    return to_dollar(text) if type(tx.conn).__module__.startswith("asyncpg") else text


async def debit(tx: AsyncTransaction, ctx: SagaContext) -> dict[str, int]:
    d = ctx.data
    balance = await tx.fetchval(
        sql(tx, "UPDATE accounts SET balance = balance - %s WHERE id = %s RETURNING balance"),
        (d["amount"], d["account"]),
    )
    return {"balance": balance}


async def refund(tx: AsyncTransaction, ctx: SagaContext) -> None:
    d = ctx.data
    await tx.execute(
        sql(tx, "UPDATE accounts SET balance = balance + %s WHERE id = %s"),
        (d["amount"], d["account"]),
    )


async def credit(tx: AsyncTransaction, ctx: SagaContext) -> dict[str, int]:
    d = ctx.data
    assert ctx.results["debit"]["balance"] >= 0  # earlier results are visible
    new_id = await tx.fetchval(
        sql(tx, "INSERT INTO credits (account, amount) VALUES (%s, %s) RETURNING id"),
        (d["account"], d["amount"]),
    )
    return {"id": new_id}


async def take_back(tx: AsyncTransaction, ctx: SagaContext) -> None:
    await tx.execute(sql(tx, "DELETE FROM credits WHERE id = %s"), (ctx.result["id"],))
    await tx.execute(sql(tx, "INSERT INTO undone (step) VALUES (%s)"), (ctx.step,))


async def fail(tx: AsyncTransaction, ctx: SagaContext) -> None:
    raise RuntimeError("the notification service said no")


def transfer(mgr: AsyncDatabaseManager, log: str | None = "ledger", **kw: Any) -> AsyncSaga:
    saga = AsyncSaga(mgr, "transfer", log=log, backoff=FAST, **kw)
    saga.step("debit", "bank", debit, refund)
    saga.step("credit", "ledger", credit, take_back)
    return saga


async def balance(mgr: AsyncDatabaseManager, account: int = 1) -> int:
    p = "$1" if mgr["bank"].driver == "asyncpg" else "%s"
    value = await mgr["bank"].fetchval(f"SELECT balance FROM accounts WHERE id = {p}", (account,))
    return int(value)


async def credits(mgr: AsyncDatabaseManager) -> int:
    return int(await mgr["ledger"].fetchval("SELECT count(*) FROM credits"))


async def test_run_applies_each_step_once_per_key(mgr: AsyncDatabaseManager) -> None:
    """A saga runs its steps in order across databases; run again with the
    same key, it applies nothing twice and returns the same results."""
    saga = transfer(mgr)
    result = await saga.run({"account": 1, "amount": 30}, key="t-1")
    assert result.results == {"debit": {"balance": 70}, "credit": {"id": 1}}
    again = await saga.run({"account": 1, "amount": 30}, key="t-1")
    assert again.results == result.results
    assert await balance(mgr) == 70 and await credits(mgr) == 1
    state = await mgr["ledger"].fetchval("SELECT state FROM pgharbor_sagas")
    assert state == "done"


async def test_failure_compensates_in_reverse(mgr: AsyncDatabaseManager) -> None:
    """A failing step compensates the completed ones, newest first; the key
    cannot be run again; the failed step's marker is a tombstone."""
    saga = transfer(mgr).step("notify", "ledger", fail)
    with pytest.raises(SagaFailed, match="step 'notify' failed") as info:
        await saga.run({"account": 1, "amount": 30}, key="t-2")
    assert info.value.step == "notify" and info.value.key == "t-2"
    assert isinstance(info.value.__cause__, RuntimeError)
    assert await balance(mgr) == 100 and await credits(mgr) == 0
    assert await mgr["ledger"].fetchval("SELECT string_agg(step, ',') FROM undone") == "credit"
    markers = await mgr["ledger"].fetch("SELECT step, state FROM pgharbor_saga_steps ORDER BY step")
    assert [tuple(r) for r in markers] == [("credit", "compensated"), ("notify", "cancelled")]
    assert await mgr["ledger"].fetchval("SELECT state FROM pgharbor_sagas") == "compensated"
    with pytest.raises(SagaError, match="compensated"):
        await saga.run({"account": 1, "amount": 30}, key="t-2")


async def test_a_refused_first_step_changes_nothing(mgr: AsyncDatabaseManager) -> None:
    """A business error (a CHECK) in the first step is not retried; nothing
    is left behind."""
    saga = transfer(mgr)
    with pytest.raises(SagaFailed, match="step 'debit' failed"):
        await saga.run({"account": 2, "amount": 50}, key="t-3")
    assert await balance(mgr, 2) == 5 and await credits(mgr) == 0


async def test_compensations_are_retried_with_backoff(mgr: AsyncDatabaseManager) -> None:
    """A compensation that fails is retried until it succeeds; one that keeps
    failing leaves the saga failed, and compensate(key) finishes it later."""
    calls = 0

    async def flaky_refund(tx: AsyncTransaction, ctx: SagaContext) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("bank unreachable")
        await refund(tx, ctx)

    saga = AsyncSaga(mgr, "flaky", log="ledger", backoff=FAST, compensation_attempts=3)
    saga.step("debit", "bank", debit, flaky_refund).step("notify", "ledger", fail)
    with pytest.raises(SagaFailed):
        await saga.run({"account": 1, "amount": 10}, key="f-1")
    assert calls == 3 and await balance(mgr) == 100

    calls = -10  # fails more often than the attempts allow
    with pytest.raises(SagaCompensationFailed, match="'debit' failed 3 times") as info:
        await saga.run({"account": 1, "amount": 10}, key="f-2")
    assert info.value.step == "debit"
    assert await balance(mgr) == 90
    p = "$1" if mgr["ledger"].driver == "asyncpg" else "%s"
    state = await mgr["ledger"].fetchval(
        f"SELECT state FROM pgharbor_sagas WHERE key = {p}", ("f-2",)
    )
    assert state == "failed"
    calls = 10  # the bank is back
    await saga.compensate("f-2")
    assert await balance(mgr) == 100


async def test_transient_errors_retry_the_step_once(mgr: AsyncDatabaseManager) -> None:
    """An action failing with a retryable error (serialization failure) runs
    again; its effect is applied once."""
    tries = 0

    class Serialization(Exception):
        sqlstate = "40001"

    async def shaky_credit(tx: AsyncTransaction, ctx: SagaContext) -> dict[str, int]:
        nonlocal tries
        tries += 1
        result = await credit(tx, ctx)
        if tries == 1:
            raise Serialization("could not serialize access")
        return result

    saga = AsyncSaga(mgr, "shaky", backoff=FAST)
    saga.step("debit", "bank", debit, refund).step("credit", "ledger", shaky_credit, take_back)
    await saga.run({"account": 1, "amount": 1}, key="s-1")
    assert tries == 2 and await credits(mgr) == 1 and await balance(mgr) == 99


async def test_without_a_log(mgr: AsyncDatabaseManager) -> None:
    """Without a log, keys still make runs idempotent and compensate(key)
    undoes a finished saga; recover needs a log."""
    saga = transfer(mgr, log=None)
    await saga.run({"account": 1, "amount": 5}, key="n-1")
    await saga.run({"account": 1, "amount": 5}, key="n-1")
    assert await balance(mgr) == 95
    await saga.compensate("n-1", {"account": 1, "amount": 5})
    assert await balance(mgr) == 100 and await credits(mgr) == 0
    with pytest.raises(SagaError, match="no log"):
        await saga.recover()


async def test_bad_definitions_fail_at_once(mgr: AsyncDatabaseManager) -> None:
    """Unknown databases, duplicate steps, bad numbers and empty sagas raise
    ConfigError naming the problem."""
    with pytest.raises(ConfigError, match="no database named 'nope'"):
        AsyncSaga(mgr, "x", log="nope")
    saga = AsyncSaga(mgr, "x")
    with pytest.raises(ConfigError, match="no database named 'nope'"):
        saga.step("a", "nope", debit)
    saga.step("a", "bank", debit)
    with pytest.raises(ConfigError, match="exists already"):
        saga.step("a", "bank", debit)
    with pytest.raises(ConfigError, match="compensation_attempts"):
        AsyncSaga(mgr, "x", compensation_attempts=0)
    with pytest.raises(ConfigError, match="at least one step"):
        await AsyncSaga(mgr, "empty").run()
    with pytest.raises(TypeError, match="JSON"):
        await saga.run({"when": object()})
