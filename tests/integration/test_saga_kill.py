"""A saga whose process is killed (SIGKILL) in the middle, recovered on
restart from its log: compensated, or resumed without applying a step twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgharbor import DatabaseManager, SagaError
from pgharbor.testing import PostgresServer, TempDatabase

# Shared by the killed process and the one that recovers: the same saga.
STEPS = textwrap.dedent(
    '''
    import os, time
    import pgharbor

    BLOCK_AT = os.environ.get("SAGA_BLOCK_AT")


    def block(step):
        """Stop inside the step's open transaction until killed."""
        if BLOCK_AT == step:
            print(f"blocked in {step}", flush=True)
            time.sleep(120)


    def debit(tx, ctx):
        tx.execute("UPDATE accounts SET balance = balance - %s WHERE id = 1", (ctx.data["amount"],))
        block("debit")
        return {"debited": ctx.data["amount"]}


    def refund(tx, ctx):
        tx.execute("UPDATE accounts SET balance = balance + %s WHERE id = 1",
                   (ctx.result["debited"],))


    def credit(tx, ctx):
        new_id = tx.fetchval("INSERT INTO credits (amount) VALUES (%s) RETURNING id",
                             (ctx.data["amount"],))
        block("credit")
        return {"id": new_id}


    def take_back(tx, ctx):
        tx.execute("DELETE FROM credits WHERE id = %s", (ctx.result["id"],))


    def fee(tx, ctx):
        tx.execute("UPDATE accounts SET balance = balance - 1 WHERE id = 1")
        block("fee")


    def refund_fee(tx, ctx):
        tx.execute("UPDATE accounts SET balance = balance + 1 WHERE id = 1")


    def manager(bank, ledger, driver, app):
        opts = dict(driver=driver, min_size=1, max_size=2, kwargs={"application_name": app})
        return pgharbor.DatabaseManager({
            "bank": pgharbor.Database(bank, name="bank", **opts),
            "ledger": pgharbor.Database(ledger, name="ledger", **opts),
        })


    def saga(mgr):
        s = pgharbor.Saga(mgr, "transfer", log="ledger",
                          backoff=pgharbor.Backoff(initial=0.01, max_delay=0.05))
        s.step("debit", "bank", debit, refund)
        s.step("credit", "ledger", credit, take_back)
        s.step("fee", "bank", fee, refund_fee)
        return s
    '''
)

CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
import saga_steps
bank, ledger, driver, app = sys.argv[2:]
with saga_steps.manager(bank, ledger, driver, app) as mgr:
    saga_steps.saga(mgr).run({"amount": 30}, key="transfer-1")
print("finished", flush=True)
"""


@pytest.fixture
def setup(
    pg_server: PostgresServer, pg_database: TempDatabase, tmp_path: Path
) -> Iterator[tuple[str, str, Path]]:
    ledger = f"t_{uuid.uuid4().hex[:12]}"
    pg_server.create_database(ledger)
    pg_server.execute(
        "CREATE TABLE accounts (id int PRIMARY KEY, balance int);"
        " INSERT INTO accounts VALUES (1, 100)",
        dbname=pg_database.name,
    )
    pg_server.execute("CREATE TABLE credits (id serial PRIMARY KEY, amount int)", dbname=ledger)
    (tmp_path / "saga_steps.py").write_text(STEPS)
    yield pg_database.conninfo(), pg_server.conninfo(dbname=ledger), tmp_path
    pg_server.drop_database(ledger)


def kill_in(step: str, bank: str, ledger: str, where: Path, driver: str, app: str) -> None:
    """Start a process running the saga; SIGKILL it once it is inside ``step``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(where), bank, ledger, driver, app],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SAGA_BLOCK_AT": step},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == f"blocked in {step}", proc.stderr.read() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def steps_module(where: Path) -> object:
    sys.path.insert(0, str(where))
    try:
        import saga_steps  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(where))
    sys.modules.pop("saga_steps", None)
    return saga_steps


def state(mgr: DatabaseManager) -> tuple[int, int, str]:
    """Balance, number of credits, the saga's state in the log."""
    return (
        mgr["bank"].fetchval("SELECT balance FROM accounts WHERE id = 1"),
        mgr["ledger"].fetchval("SELECT count(*) FROM credits"),
        mgr["ledger"].fetchval("SELECT state FROM pgharbor_sagas"),
    )


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_killed_saga_is_compensated_on_restart(
    setup: tuple[str, str, Path], app_name: str, driver: str
) -> None:
    """Killed inside step 2: recover('compensate') undoes step 1; step 2 never
    applied (its transaction died with the process) and never will."""
    bank, ledger, where = setup
    kill_in("credit", bank, ledger, where, driver, app_name)
    steps = steps_module(where)
    with steps.manager(bank, ledger, driver, app_name) as mgr:  # type: ignore[attr-defined]
        assert state(mgr) == (70, 0, "running")
        saga = steps.saga(mgr)  # type: ignore[attr-defined]
        assert saga.recover("compensate") == {"transfer-1": "compensated"}
        assert state(mgr) == (100, 0, "compensated")
        with pytest.raises(SagaError, match="compensated"):
            saga.run({"amount": 30}, key="transfer-1")
        assert saga.recover() == {}


@pytest.mark.parametrize(("driver", "step"), [("psycopg", "credit"), ("psycopg2", "fee")])
def test_killed_saga_is_resumed_without_repeating_a_step(
    setup: tuple[str, str, Path], app_name: str, driver: str, step: str
) -> None:
    """Killed inside step 2 or 3: recover('resume') runs what is left; the
    steps that committed before the kill are not applied again."""
    bank, ledger, where = setup
    kill_in(step, bank, ledger, where, driver, app_name)
    steps = steps_module(where)
    with steps.manager(bank, ledger, driver, app_name) as mgr:  # type: ignore[attr-defined]
        assert state(mgr) == ((70, 0, "running") if step == "credit" else (70, 1, "running"))
        assert steps.saga(mgr).recover("resume") == {"transfer-1": "done"}  # type: ignore[attr-defined]
        assert state(mgr) == (69, 1, "done")
        markers = mgr["ledger"].fetchval("SELECT count(*) FROM pgharbor_saga_steps")
        assert markers == 1  # credit; debit and fee are marked in the bank
        assert mgr["bank"].fetchval("SELECT count(*) FROM pgharbor_saga_steps") == 2
