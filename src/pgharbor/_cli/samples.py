"""Two small sample databases that differ, for ``pgharbor diff`` and
``pgharbor schema`` run without a target: a shop's schema as ``source`` and
the same schema a few migrations later as ``target``, read by a role that
may only connect (the catalogue shows it everything all the same)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console

__all__ = ["CHANGES", "SOURCE", "embedded_schema_targets"]

SOURCE = """
CREATE TYPE status AS ENUM ('new', 'paid');
CREATE TABLE customers (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  email text NOT NULL UNIQUE,
  name text
);
CREATE TABLE orders (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES customers ON DELETE CASCADE,
  status status NOT NULL DEFAULT 'new',
  total numeric(10,2) NOT NULL DEFAULT 0
);
CREATE INDEX ON orders (customer_id);
CREATE VIEW open_orders AS SELECT id, customer_id, total FROM orders WHERE status = 'new';
CREATE FUNCTION order_total(customer bigint) RETURNS numeric LANGUAGE sql STABLE
  AS 'SELECT coalesce(sum(total), 0) FROM public.orders WHERE customer_id = customer';
COMMENT ON TABLE orders IS 'one row per order';
"""

#: What "a few migrations later" did to the target (a new enum value must be
#: committed before it is used, hence two scripts).
CHANGES = (
    "ALTER TYPE status ADD VALUE 'refunded'",
    """
ALTER TABLE customers ADD COLUMN phone text;
DROP INDEX orders_customer_id_idx;
CREATE INDEX orders_by_customer ON orders (customer_id, status);
ALTER TABLE orders DROP CONSTRAINT orders_customer_id_fkey,
  ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id)
  REFERENCES customers ON DELETE RESTRICT;
CREATE OR REPLACE FUNCTION order_total(customer bigint) RETURNS numeric LANGUAGE sql STABLE
  AS 'SELECT coalesce(sum(total), 0) FROM public.orders WHERE customer_id = customer
      AND status <> ''refunded''';
CREATE TABLE refunds (order_id bigint PRIMARY KEY REFERENCES orders, amount numeric(10,2));
""",
)


@contextlib.contextmanager
def embedded_schema_targets(console: Console) -> Iterator[dict[str, str]]:
    """Start a throwaway server with the ``source`` and ``target`` sample
    databases; conninfo strings for a role that may only connect."""
    from ..testing import PostgresServer

    console.print("[dim]no target given: starting a temporary PostgreSQL server...[/dim]")
    with PostgresServer() as server:
        console.print(
            f"[dim]temporary server: PostgreSQL {server.version.major} with two sample "
            "databases, 'source' and 'target' (a few migrations apart)[/dim]"
        )
        server.create_role("pgharbor_reader", password="reader-demo")
        targets = {}
        for name, scripts in (("source", (SOURCE,)), ("target", (SOURCE, *CHANGES))):
            server.create_database(name)
            for script in scripts:
                server.execute(script, dbname=name)
            targets[name] = server.conninfo(dbname=name, user="pgharbor_reader")
        yield targets
