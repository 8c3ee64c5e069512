"""pgharbor.django under Django's own test runner (run by
tests/integration/test_django.py against a real server)."""

from __future__ import annotations

import threading
import time
import unittest
from typing import Any, ClassVar

from django.db import OperationalError, ProgrammingError, connection, connections, transaction
from django.test import TransactionTestCase
from harborapp.models import Item

from pgharbor.django import pool_of

HAS_REPLICA = "replica" in connections.settings


class PooledTests(TransactionTestCase):  # type: ignore[misc]
    """The primary alias: models, migrations, transactions, threads."""

    def tearDown(self) -> None:
        connection.close()

    def test_migrated_models_round_trip(self) -> None:
        """The migration ran; a row with JSON and a timestamp comes back as written."""
        item = Item.objects.create(name="a", data={"k": [1, 2]})
        got = Item.objects.get(pk=item.pk)
        self.assertEqual(got.data, {"k": [1, 2]})  # JSON decoded once, by Django
        self.assertEqual(got.created, item.created)
        self.assertEqual(str(got.created.tzinfo), "UTC")

    def test_atomic_rolls_back_on_error(self) -> None:
        """A failing transaction.atomic() block leaves nothing; a failing inner
        savepoint only undoes its own part."""
        with self.assertRaises(RuntimeError), transaction.atomic():
            Item.objects.create(name="gone")
            raise RuntimeError("boom")
        self.assertFalse(Item.objects.exists())
        with transaction.atomic():
            Item.objects.create(name="outer")
            try:
                with transaction.atomic():
                    Item.objects.create(name="inner")
                    raise RuntimeError("boom")
            except RuntimeError:
                pass
        self.assertEqual(list(Item.objects.values_list("name", flat=True)), ["outer"])

    def test_close_gives_the_connection_back(self) -> None:
        """connection.close() returns the connection to the pool; the next query
        borrows one again; autocommit is Django's between transactions."""
        pool = pool_of("default")
        connection.ensure_connection()
        self.assertEqual(pool.stats()["in_use"], 1)
        with transaction.atomic():
            self.assertFalse(connection.connection.autocommit)
        self.assertTrue(connection.connection.autocommit)
        connection.close()
        self.assertEqual(pool.stats()["in_use"], 0)
        self.assertEqual(Item.objects.count(), 0)
        self.assertEqual(pool.stats()["in_use"], 1)

    def test_closed_mid_transaction_is_rolled_back(self) -> None:
        """A connection Django closes inside atomic() goes back rolled back."""
        pool = pool_of("default")
        with self.assertLogs("pgharbor.pool", "WARNING"):
            try:
                with transaction.atomic():
                    Item.objects.create(name="lost")
                    connection.close()
            except Exception:
                pass
        connection.close()
        self.assertFalse(Item.objects.exists())
        self.assertEqual(pool.stats()["in_use"], 1)

    def test_threads_share_the_pool(self) -> None:
        """Eight threads over at most 3 connections: every transaction commits,
        nothing stays lent out."""
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(5):
                    with transaction.atomic():
                        Item.objects.create(name=f"{n}-{i}")
                    connection.close()  # what the end of a request does
            except BaseException as exc:
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(Item.objects.count(), 40)
        stats = pool_of("default").stats()
        self.assertLessEqual(stats["size"], 3)
        self.assertEqual(stats["in_use"], 1)  # this thread's, for the count

    def test_exhausted_pool_raises_operational_error(self) -> None:
        """With every connection held by other threads, a query fails with
        Django's OperationalError after the pool's timeout (pgharbor's
        PoolTimeout as its cause)."""
        hold = threading.Event()
        done = threading.Event()

        def holder() -> None:
            connection.ensure_connection()
            hold.set()
            done.wait(10)
            connection.close()

        threads = []
        for _ in range(3):
            hold.clear()
            t = threading.Thread(target=holder)
            t.start()
            threads.append(t)
            hold.wait(5)
        try:
            started = time.monotonic()
            with self.assertRaises(OperationalError) as ctx:
                Item.objects.count()
            self.assertGreaterEqual(time.monotonic() - started, 1.5)
            self.assertEqual(type(ctx.exception.__cause__).__name__, "PoolTimeout")
        finally:
            done.set()
            for t in threads:
                t.join()
        self.assertEqual(Item.objects.count(), 0)


@unittest.skipUnless(HAS_REPLICA, "no replica configured")
class ReplicaTests(TransactionTestCase):  # type: ignore[misc]
    """A second alias on a streaming replica, chosen by a database router."""

    databases: ClassVar[Any] = {"default", "replica"}

    def tearDown(self) -> None:
        for alias in ("default", "replica"):
            connections[alias].close()

    def test_router_reads_from_the_replica(self) -> None:
        """Writes go to the primary; reads, routed to the replica alias, see them
        once replayed, on a server in recovery, through its own pgharbor pool."""
        Item.objects.create(name="replicated")
        deadline = time.monotonic() + 10
        while not self._replicated():
            self.assertLess(time.monotonic(), deadline, "not replicated in 10 s")
            time.sleep(0.05)
        with connections["replica"].cursor() as cur:
            cur.execute("SELECT pg_is_in_recovery()")
            self.assertEqual(cur.fetchone(), (True,))
        self.assertGreater(pool_of("replica").stats()["acquired"], 0)
        self.assertIsNot(pool_of("replica"), pool_of("default"))

    def _replicated(self) -> bool:
        try:
            return bool(Item.objects.filter(name="replicated").exists())
        except (OperationalError, ProgrammingError):
            return False  # the test database or its table is not replayed yet
