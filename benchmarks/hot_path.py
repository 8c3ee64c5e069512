"""The pool's own cost per acquire + release, without a server.

A fake driver answers every call at once, so what is measured is the pool's
Python: checkout, the checkout check, bookkeeping, hand-offs, return. Two
scenarios per flavour:

- ``idle``: one worker, connections idle between uses (the checkout path);
- ``queued``: 16 workers on 5 connections, each use yielding once (async) or
  not at all (sync), so nearly every acquire waits and is handed a returned
  connection (the hand-off path).

It prints CPU microseconds per acquire + release (process time / operations,
median of rounds). ``--ops N --only SCENARIO`` runs one scenario once, for
``valgrind --tool=callgrind`` (instructions are repeatable where time is not):
run it at two values of N and divide the difference in instructions by the
difference in operations, which removes Python's start-up.

Before/after comparisons run this file against two checkouts (``PYTHONPATH``)
taking turns; see benchmarks/README.md. Older pools, which took only driver
names, get the fake through their module's ``get_(async_)driver``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import pgharbor
from pgharbor.drivers.base import ConnStatus

_IDLE = ConnStatus.IDLE


class FakeConn:
    """A connection that is always idle and healthy."""

    __slots__ = ("autocommit", "deferrable", "isolation_level", "read_only")

    def __init__(self) -> None:
        self.autocommit = True
        self.isolation_level = self.read_only = self.deferrable = None


def _always() -> bool:
    return True


class _Common:
    name: ClassVar[str] = "fake"

    def status(self, conn: Any) -> ConnStatus:
        return _IDLE

    def watch(self, conn: Any) -> Callable[[], bool]:
        return _always

    def pristine(self, conn: Any) -> bool:
        return True

    def reusable(self, conn: Any) -> bool:
        return True

    def terminate(self, conn: Any) -> None:
        pass

    def server_version(self, conn: Any) -> int:
        return 150000

    def backend_pid(self, conn: Any) -> int:
        return 1

    def parameter(self, conn: Any, name: str) -> str | None:
        return None

    def is_error_disconnect(self, exc: BaseException) -> bool:
        return False

    def sever(self, conn: Any) -> bool:
        return True


class FakeAsyncDriver(_Common):
    async def connect(self, params: dict[str, Any], timeout: float) -> Any:
        return FakeConn()

    async def ping(self, conn: Any, timeout: float) -> None:
        pass

    async def rollback(self, conn: Any, timeout: float) -> None:
        pass

    async def close(self, conn: Any, timeout: float) -> None:
        pass

    async def restore(self, conn: Any) -> None:
        pass

    async def run_script(self, conn: Any, sql: str, timeout: float) -> None:
        pass

    async def discard(self, conn: Any, timeout: float) -> None:
        pass


class FakeDriver(_Common):
    def connect(self, params: dict[str, Any], timeout: float) -> Any:
        return FakeConn()

    def ping(self, conn: Any, timeout: float) -> None:
        pass

    def rollback(self, conn: Any, timeout: float) -> None:
        pass

    def close(self, conn: Any, timeout: float) -> None:
        pass

    def restore(self, conn: Any) -> None:
        pass

    def run_script(self, conn: Any, sql: str, timeout: float) -> None:
        pass

    def discard(self, conn: Any, timeout: float) -> None:
        pass


def _pool(flavour: str, size: int) -> Any:
    """A pool over the fake driver (patched in for pools that take only names)."""
    cls: Any = pgharbor.AsyncPool if flavour == "async" else pgharbor.Pool
    driver: Any = FakeAsyncDriver() if flavour == "async" else FakeDriver()
    kwargs: dict[str, Any] = {"min_size": size, "max_size": size, "check_window": 3600.0}
    try:
        return cls("host=127.0.0.1 dbname=fake", driver=driver, **kwargs)
    except pgharbor.ConfigError:
        pass  # a pool that takes only driver names
    module = sys.modules[cls.__module__]
    name = "get_async_driver" if flavour == "async" else "get_driver"
    setattr(module, name, lambda *a, **k: driver)
    return cls("host=127.0.0.1 dbname=fake", **kwargs)


async def _async_run(scenario: str, ops: int) -> float:
    workers, size = (1, 5) if scenario == "idle" else (16, 5)
    pool = _pool("async", size)
    async with pool:
        per = ops // workers

        async def work() -> None:
            for _ in range(per):
                async with pool.connection():
                    if scenario == "queued":
                        await asyncio.sleep(0)

        cpu = time.process_time()
        await asyncio.gather(*(work() for _ in range(workers)))
        return (time.process_time() - cpu) / (per * workers) * 1e6


def _sync_run(scenario: str, ops: int) -> float:
    workers, size = (1, 5) if scenario == "idle" else (16, 5)
    with _pool("sync", size) as pool:
        per = ops // workers

        def work() -> None:
            for _ in range(per):
                with pool.connection():
                    pass

        threads = [threading.Thread(target=work) for _ in range(workers)]
        cpu = time.process_time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return (time.process_time() - cpu) / (per * workers) * 1e6


def run(flavour: str, scenario: str, ops: int) -> float:
    """CPU microseconds per acquire + release."""
    if flavour == "async":
        return asyncio.run(_async_run(scenario, ops))
    return _sync_run(scenario, ops)


CASES = [("async", "idle"), ("async", "queued"), ("sync", "idle"), ("sync", "queued")]


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``python -m benchmarks.hot_path [--rounds N] [--ops N] [--only F/S]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=50_000)
    parser.add_argument("--only", help="one case, e.g. async/queued (one round)")
    args = parser.parse_args(argv)
    if args.only:
        flavour, scenario = args.only.split("/")
        print(f"{args.only}: {run(flavour, scenario, args.ops):.2f} us")
        return
    results: dict[tuple[str, str], list[float]] = {case: [] for case in CASES}
    for _ in range(args.rounds):
        for case in CASES:
            results[case].append(run(*case, args.ops))
    print(f"pgharbor {pgharbor.__file__}")
    for (flavour, scenario), values in results.items():
        print(
            f"{flavour}/{scenario}: {statistics.median(values):.2f} us CPU per acquire+release "
            f"(rounds: {', '.join(f'{v:.2f}' for v in values)})"
        )


if __name__ == "__main__":
    main()
