"""Load rows in chunks with a rich progress bar, then read them back by keyset.

    python examples/batch_progress.py [URL]

It creates a table ``example_events`` and drops it at the end. Without a
URL, a throwaway PostgreSQL server is started (``pgharbor.testing``).
"""

from __future__ import annotations

import contextlib
import sys

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

import pgharbor

ROWS = 300_000


def main() -> None:
    with contextlib.ExitStack() as stack:
        if len(sys.argv) > 1:
            url = sys.argv[1]
        else:
            from pgharbor.testing import PostgresServer

            url = stack.enter_context(PostgresServer()).conninfo()
        db = stack.enter_context(pgharbor.Database(url, application_name="batch-example"))
        db.execute("CREATE TABLE example_events (id int PRIMARY KEY, payload text)")
        stack.callback(db.execute, "DROP TABLE example_events")
        rows = [(i, f"event {i}") for i in range(ROWS)]

        columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn())
        with Progress(*columns, TimeRemainingColumn()) as bar:
            task = bar.add_task("loading events", total=len(rows))
            copied = db.copy_records(
                "example_events",
                rows,
                chunk_size=10_000,
                atomic=False,  # each chunk commits: a failure keeps what is in
                progress=lambda p: bar.update(task, completed=p.done),
            )

            read = bar.add_task("reading by keyset", total=copied)
            for page in db.paginate(
                "SELECT id, payload FROM example_events", key="id", page_size=5000
            ):
                bar.advance(read, len(page))
        print(f"{copied} rows copied and read back")


if __name__ == "__main__":
    main()
