"""A schema with every kind of object a snapshot reads, and known changes to it.

`build` creates it in a database (as ``postgres``); `alter` applies
`CHANGES`, whose exact `pgharbor.diff` output is `expected_diff`. Names
that need quoting (mixed case, spaces, reserved words, non-ASCII) are
part of it on purpose.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from pgharbor.testing import PostgresServer

# {reader} is a role the test creates (roles are cluster-wide);
# {ext} an extension the server has (citext, else vector).
SOURCE = """
CREATE SCHEMA app;
COMMENT ON SCHEMA app IS 'the application';
CREATE SCHEMA "Mixed Case";
CREATE EXTENSION {ext} SCHEMA app;

CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN app.positive AS integer NOT NULL DEFAULT 1
  CONSTRAINT positive_check CHECK (VALUE > 0);
CREATE TYPE app.pair AS (a integer, b text COLLATE "C");
CREATE TYPE app.floatrange AS RANGE (subtype = float8);
COMMENT ON TYPE app.mood IS 'how they feel';

CREATE SEQUENCE app.ticket_seq AS integer START 100 INCREMENT 5 CACHE 10;

CREATE TABLE app.customers (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  email text NOT NULL UNIQUE,
  name text COLLATE "C" CHECK (char_length(name) < 200),
  mood app.mood DEFAULT 'ok',
  score app.positive,
  created timestamptz NOT NULL DEFAULT now(),
  email_lower text GENERATED ALWAYS AS (lower(email)) STORED
);
CREATE INDEX ON app.customers (lower(name));
CREATE INDEX customers_recent ON app.customers USING brin (created)
  WHERE created > '2020-01-01';
COMMENT ON TABLE app.customers IS 'who buys';
COMMENT ON COLUMN app.customers.email IS 'unique per customer';
ALTER TABLE app.customers ENABLE ROW LEVEL SECURITY;
GRANT SELECT ON app.customers TO {reader};
GRANT UPDATE (name) ON app.customers TO {reader};

CREATE TABLE app.orders (
  id serial,
  customer_id bigint NOT NULL REFERENCES app.customers ON DELETE CASCADE ON UPDATE RESTRICT,
  placed date NOT NULL,
  total numeric(10,2) DEFAULT 0,
  ticket integer DEFAULT nextval('app.ticket_seq'),
  PRIMARY KEY (id, placed)
) PARTITION BY RANGE (placed);
CREATE TABLE app.orders_2024 PARTITION OF app.orders
  FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE app.orders_default PARTITION OF app.orders DEFAULT;
CREATE INDEX ON app.orders (customer_id);

CREATE TABLE app.events (id int, during tstzrange, EXCLUDE USING gist (during WITH &&));
CREATE UNLOGGED TABLE app.cache (k text PRIMARY KEY, v jsonb) WITH (fillfactor = 70);
CREATE TABLE app.base (id int, note text);
CREATE TABLE app.child (extra int) INHERITS (app.base);
CREATE TABLE "Mixed Case"."Order" (
  "user" text, "select" int, café text, "Ünï Code" int,
  CONSTRAINT "Order pk" PRIMARY KEY ("select")
);

CREATE VIEW app.customer_names AS SELECT id, name FROM app.customers;
CREATE VIEW app.happy WITH (security_barrier) AS
  SELECT id, email FROM app.customers WHERE mood = 'happy';
CREATE MATERIALIZED VIEW app.order_totals AS
  SELECT customer_id, sum(total) AS total FROM app.orders GROUP BY customer_id;
CREATE UNIQUE INDEX ON app.order_totals (customer_id);

CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql
  AS $$ BEGIN NEW.created := now(); RETURN NEW; END $$;
CREATE FUNCTION app.add(a int, b int DEFAULT 1) RETURNS int
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS 'SELECT a + b';
CREATE FUNCTION app.add(a text, b text) RETURNS text LANGUAGE sql STABLE AS 'SELECT a || b';
CREATE PROCEDURE app.archive(before date) LANGUAGE plpgsql SECURITY DEFINER
  SET search_path = app AS $$ BEGIN DELETE FROM app.orders WHERE placed < before; END $$;
CREATE AGGREGATE app.total(numeric) (sfunc = numeric_add, stype = numeric);
CREATE TRIGGER customers_touch BEFORE UPDATE ON app.customers
  FOR EACH ROW EXECUTE FUNCTION app.touch();
COMMENT ON FUNCTION app.touch() IS 'stamps the row';
"""

#: Known changes, each producing exactly the differences `expected_diff` lists.
CHANGES = """
ALTER TABLE app.customers ADD COLUMN phone text;
ALTER TABLE app.customers ALTER COLUMN created DROP DEFAULT;
ALTER TABLE app.customers ALTER COLUMN name SET NOT NULL;
DROP INDEX app.customers_lower_idx;
ALTER TABLE app.customers DISABLE TRIGGER customers_touch;
COMMENT ON TABLE app.customers IS 'customers';
REVOKE SELECT ON app.customers FROM {reader};
ALTER TABLE app.orders DROP CONSTRAINT orders_customer_id_fkey;
ALTER TABLE app.orders ADD CONSTRAINT orders_customer_id_fkey
  FOREIGN KEY (customer_id) REFERENCES app.customers ON DELETE RESTRICT ON UPDATE RESTRICT;
ALTER INDEX app.orders_customer_id_idx RENAME TO orders_customer_id_idx1;
ALTER TABLE app.customers RENAME CONSTRAINT customers_name_check TO customers_name_check1;
CREATE OR REPLACE FUNCTION app.add(a int, b int DEFAULT 1) RETURNS int
  LANGUAGE sql VOLATILE STRICT PARALLEL SAFE AS 'SELECT a + b';
ALTER TYPE app.mood ADD VALUE 'ecstatic';
ALTER SEQUENCE app.ticket_seq INCREMENT 10;
DROP VIEW app.happy;
CREATE TABLE app.notes (id int);
ALTER TABLE "Mixed Case"."Order" ADD COLUMN "Ñandú" int;
"""


def pick_extension(server: PostgresServer) -> str:
    """An extension this server can install: citext, else vector."""
    rows = server.execute(
        "SELECT name FROM pg_available_extensions WHERE name IN ('citext', 'vector') ORDER BY name"
    )
    if not rows:
        raise RuntimeError("neither citext nor vector is available")
    return str(rows[0][0])


def _run(server: PostgresServer, dbname: str, text: str, **names: str) -> None:
    idents = {k: sql.Identifier(v) for k, v in names.items()}
    server.execute(sql.SQL(text).format(**idents), dbname=dbname)


def build(server: PostgresServer, dbname: str, reader: str, ext: str) -> None:
    """Create the sample schema in *dbname*."""
    _run(server, dbname, SOURCE, reader=reader, ext=ext)


def alter(server: PostgresServer, dbname: str, reader: str) -> None:
    """Apply `CHANGES` to a database `build` made."""
    _run(server, dbname, CHANGES, reader=reader)


def expected_diff(
    reader: str, server_version: int, ignore_default_names: bool = False
) -> list[dict[str, Any]]:
    """What ``diff(before, after)`` reports for `CHANGES`, as ``to_dict()``s,
    in order, on a server of ``server_version_num`` *server_version*."""

    def d(
        change: str,
        kind: str,
        schema: str | None,
        name: str,
        table: str | None = None,
        changes: list[tuple[str, Any, Any]] = (),  # type: ignore[assignment]
        detail: str | None = None,
    ) -> dict[str, Any]:
        return {
            "change": change,
            "kind": kind,
            "schema": schema,
            "name": name,
            "table": table,
            "changes": [{"attribute": a, "source": s, "target": t} for a, s, t in changes],
            "detail": detail,
        }

    fk = "FOREIGN KEY (customer_id) REFERENCES app.customers(id) ON UPDATE RESTRICT ON DELETE {}"
    fk_changes = [
        ("definition", fk.format("CASCADE"), fk.format("RESTRICT")),
        ("on_delete", "cascade", "restrict"),
    ]
    owner_may = ["DELETE", "INSERT", "REFERENCES", "SELECT", "TRIGGER", "TRUNCATE", "UPDATE"]
    if server_version >= 170000:
        owner_may.insert(2, "MAINTAIN")
    grants = [{"grantee": "postgres", "privilege": p, "grantable": False} for p in owner_may]
    reader_select = {"grantee": reader, "privilege": "SELECT", "grantable": False}
    name_check = "CHECK ((char_length(name) < 200))"
    # PostgreSQL 16 stopped qualifying columns of a view's only table.
    q = "customers." if server_version < 160000 else ""
    happy = (
        f" SELECT {q}id,\n    {q}email\n   FROM app.customers\n  WHERE {q}mood = 'happy'::app.mood;"
    )
    renamed = not ignore_default_names  # default-named objects renamed: listed as such
    out = [
        d("added", "column", "Mixed Case", '"Ñandú"', '"Mixed Case"."Order"', detail="integer"),
        d(
            "changed",
            "function",
            "app",
            "app.add(a integer, b integer)",
            changes=[("volatility", "immutable", "volatile")],
        ),
        d(
            "changed",
            "table",
            "app",
            "app.customers",
            changes=[
                ("grants", sorted([*grants, reader_select], key=_grant_key), grants),
                ("comment", "who buys", "customers"),
            ],
        ),
        d("changed", "column", "app", "created", "app.customers", [("default", "now()", None)]),
        d("changed", "column", "app", "name", "app.customers", [("not_null", False, True)]),
        d("added", "column", "app", "phone", "app.customers", detail="text"),
        *(
            [
                d(
                    "removed",
                    "constraint",
                    "app",
                    "customers_name_check",
                    "app.customers",
                    detail=name_check,
                ),
                d(
                    "added",
                    "constraint",
                    "app",
                    "customers_name_check1",
                    "app.customers",
                    detail=name_check,
                ),
            ]
            if renamed
            else []
        ),
        d(
            "removed",
            "index",
            "app",
            "customers_lower_idx",
            "app.customers",
            detail="CREATE INDEX customers_lower_idx ON app.customers USING btree (lower(name))",
        ),
        d(
            "changed",
            "trigger",
            "app",
            "customers_touch",
            "app.customers",
            [("enabled", "origin", "disabled")],
        ),
        d("removed", "view", "app", "app.happy", detail=happy),
        d(
            "changed",
            "type",
            "app",
            "app.mood",
            changes=[("labels", ["sad", "ok", "happy"], ["sad", "ok", "happy", "ecstatic"])],
        ),
        d("added", "table", "app", "app.notes"),
        d("changed", "constraint", "app", "orders_customer_id_fkey", "app.orders", fk_changes),
        *(
            [
                d(
                    "removed",
                    "index",
                    "app",
                    "orders_customer_id_idx",
                    "app.orders",
                    detail=f"CREATE INDEX orders_customer_id_idx ON ONLY app.orders {BTREE}",
                ),
                d(
                    "added",
                    "index",
                    "app",
                    "orders_customer_id_idx1",
                    "app.orders",
                    detail=f"CREATE INDEX orders_customer_id_idx1 ON ONLY app.orders {BTREE}",
                ),
            ]
            if renamed
            else []
        ),
        d("changed", "constraint", "app", "orders_customer_id_fkey", "app.orders_2024", fk_changes),
        d(
            "changed",
            "constraint",
            "app",
            "orders_customer_id_fkey",
            "app.orders_default",
            fk_changes,
        ),
        d("changed", "sequence", "app", "app.ticket_seq", changes=[("increment", 5, 10)]),
    ]
    return out


BTREE = "USING btree (customer_id)"


def _grant_key(g: dict[str, Any]) -> tuple[str, str, bool]:
    return (g["grantee"], g["privilege"], g["grantable"])
