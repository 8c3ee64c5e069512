"""The Prometheus and OpenTelemetry sinks against real pools and servers."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pgharbor import AsyncDatabase, AsyncPool, Database, DatabaseManager, Pool
from pgharbor.errors import PoolTimeout
from pgharbor.metrics import PoolInfo
from pgharbor.metrics.otel import OpenTelemetrySink
from pgharbor.metrics.prometheus import METRICS, PrometheusSink
from pgharbor.testing import PostgresServer


def samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition, by (name, labels)."""
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """The one sample ``name`` whose labels include ``labels``."""
    found = [
        v
        for (n, ls), v in samples(registry).items()
        if n == name and set(labels.items()) <= set(ls)
    ]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_prometheus_exports_the_otel_named_series(pg_server: PostgresServer, app_name: str) -> None:
    """Counts, limits, pending requests, timeouts and the three connection
    histograms, labelled by pool and endpoint, from a real pool."""
    registry = CollectorRegistry()
    sink = PrometheusSink(registry)
    with Pool(
        pg_server.conninfo(),
        name="prom",
        min_size=1,
        max_size=2,
        metrics=sink,
        kwargs={"application_name": app_name},
    ) as pool:
        with pool.connection() as a, pool.connection() as b:
            a.execute("SELECT 1")
            b.execute("SELECT 1")
            with pytest.raises(PoolTimeout):
                pool.acquire(timeout=0.05)
            assert value(registry, "db_client_connection_count", state="used") == 2
            assert value(registry, "db_client_connection_count", state="idle") == 0
        assert value(registry, "db_client_connection_count", state="idle") == 2
        assert value(registry, "db_client_connection_max", pool_name="prom") == 2
        assert value(registry, "db_client_connection_idle_min") == 1
        assert value(registry, "db_client_connection_pending_requests") == 0
        assert value(registry, "db_client_connection_timeouts_total") == 1
        assert value(registry, "db_client_connection_create_time_seconds_count") == 2
        assert value(registry, "db_client_connection_wait_time_seconds_count") == 2
        assert value(registry, "db_client_connection_use_time_seconds_count") == 2
        assert value(registry, "db_client_connection_use_time_seconds_sum") > 0
        endpoint = f"{pg_server.host}:{pg_server.port}"
        assert value(registry, "pgharbor_acquires_total", endpoint=endpoint) == 2
        pool.drain()
    # A closed pool leaves the exposition.
    assert not [k for k in samples(registry) if k[0].startswith("db_client")]


def test_prometheus_labels_databases_and_counts_queries(
    pg_server: PostgresServer, app_name: str
) -> None:
    """A Database's pools carry the database label; statements are counted by outcome."""
    registry = CollectorRegistry()
    sink = PrometheusSink(registry, labels={"service": "api"})
    with Database(
        pg_server.conninfo(), name="orders", min_size=1, metrics=sink, application_name=app_name
    ) as db:
        db.fetchval("SELECT 1")
        with pytest.raises(Exception, match="division by zero"):
            db.fetchval("SELECT 1/0")
        assert value(registry, "pgharbor_queries_total", outcome="ok", database="orders") == 1
        assert value(registry, "pgharbor_queries_total", outcome="error", service="api") == 1
        assert value(registry, "pgharbor_query_duration_seconds_count") == 2
        assert value(registry, "pgharbor_breaker_open") == 0


def test_every_documented_series_is_exported(pg_server: PostgresServer, app_name: str) -> None:
    """METRICS (the documented list) matches what a busy database exports."""
    registry = CollectorRegistry()
    sink = PrometheusSink(registry)
    with Database(pg_server.conninfo(), min_size=1, metrics=sink, application_name=app_name) as db:
        db.fetchval("SELECT 1")
        for pool in db.pools():
            pool.observation.set_role("primary")  # what the topology does for a node
            pool.observation.alert("raised", "no_idle")
            pool.observation.resized(3, 1, "demand", "what an autoscaled pool reports")
        db.drain()
        names = {n for n, _ in samples(registry)}
    documented = set(METRICS)
    exported = names | {
        n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for n in names
    }
    assert documented - exported == set(), "documented but not exported"


def test_prometheus_serves_metrics_over_http(pg_server: PostgresServer, app_name: str) -> None:
    """serve() exposes /metrics on a free port; close() stops it."""
    registry = CollectorRegistry()
    sink = PrometheusSink(registry)
    with (
        Pool(
            pg_server.conninfo(),
            name="http",
            min_size=1,
            metrics=sink,
            kwargs={"application_name": app_name},
        ),
        sink.serve(port=0) as server,
    ):
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
    assert 'db_client_connection_count{endpoint="' in body and 'pool_name="http"' in body


def test_prometheus_sink_without_a_registry_and_bad_buckets() -> None:
    """registry=False registers nowhere; bad bucket bounds fail at construction."""
    sink = PrometheusSink(False)
    assert sink.registry is None and list(sink.collect()) == []
    with pytest.raises(ValueError, match="increasing"):
        PrometheusSink(False, buckets=(1.0, 0.1))
    with pytest.raises(ValueError, match="registry"):
        sink.serve()


def _otel_points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    out: dict[str, list[Any]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


async def test_opentelemetry_records_db_client_connection_instruments(
    pg_server: PostgresServer, app_name: str
) -> None:
    """The semantic-convention instruments, with pool name and state attributes."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    sink = OpenTelemetrySink(provider.get_meter("test"))
    try:
        async with AsyncDatabase(
            pg_server.conninfo(), name="otel", min_size=2, metrics=sink, application_name=app_name
        ) as db:
            async with db.pool.connection() as conn:
                await conn.execute("SELECT 1")
                points = _otel_points(reader)
            await db.fetchval("SELECT 1")
            after = _otel_points(reader)
    finally:
        provider.shutdown()
    counts = {
        p.attributes["db.client.connection.state"]: p.value
        for p in points["db.client.connection.count"]
    }
    assert counts == {"idle": 1, "used": 1}
    (max_point,) = points["db.client.connection.max"]
    assert max_point.value == 5
    assert max_point.attributes["db.client.connection.pool.name"] == "otel"
    assert max_point.attributes["db.namespace"] == "otel"
    assert [p.value for p in points["db.client.connection.idle.min"]] == [2]
    assert [p.value for p in points["db.client.connection.pending_requests"]] == [0]
    assert [p.value for p in points["db.client.connection.timeouts"]] == [0]
    assert sum(p.count for p in points["db.client.connection.create_time"]) == 2
    assert sum(p.count for p in after["db.client.connection.wait_time"]) == 2
    assert sum(p.count for p in after["db.client.connection.use_time"]) == 2
    (duration,) = after["db.client.operation.duration"]
    assert duration.count == 1 and duration.attributes["db.system.name"] == "postgresql"


def test_a_custom_sink_sees_pool_info_and_events(pg_server: PostgresServer, app_name: str) -> None:
    """Anything with observe() is a sink; it gets the labels and a stats reader."""
    from pgharbor.metrics import PoolObserver

    seen: dict[str, Any] = {}

    class Recorder(PoolObserver):
        def acquired(self, conn: Any, wait: float) -> None:
            seen["acquired"] = seen.get("acquired", 0) + 1

        def closed(self) -> None:
            seen["closed"] = True

    class Sink:
        def observe(self, pool: PoolInfo) -> PoolObserver:
            seen["info"] = pool
            return Recorder()

    never_opened = AsyncPool(pg_server.conninfo(), name="custom", metrics=[Sink()], min_size=1)
    assert "info" not in seen  # sinks meet a pool when it opens
    del never_opened
    with (
        Pool(
            pg_server.conninfo(),
            name="custom2",
            metrics=Sink(),
            min_size=1,
            kwargs={"application_name": app_name},
        ) as pool,
        pool.connection(),
    ):
        pass
    info = seen["info"]
    assert info.name == "custom2" and info.labels["pool_name"] == "custom2"
    assert info.stats()["size"] == 0 and "password" not in info.target  # closed by now
    assert seen["acquired"] == 1 and seen["closed"] is True


def test_a_manager_from_config_takes_a_sink(
    pg_server: PostgresServer, app_name: str, tmp_path: Path
) -> None:
    """DatabaseManager.from_config(..., metrics=sink) observes every database's pool."""
    config = tmp_path / "pgharbor.toml"
    lines = []
    for name in ("source", "target"):
        lines += [
            f"[databases.{name}]",
            f'url = "{pg_server.url()}"',
            "min_size = 1",
            f'application_name = "{app_name}"',
        ]
    config.write_text("\n".join(lines) + "\n")
    registry = CollectorRegistry()
    with DatabaseManager.from_config(str(config), metrics=PrometheusSink(registry)) as mgr:
        mgr["source"].fetchval("SELECT 1")
        assert value(registry, "pgharbor_queries_total", database="source", outcome="ok") == 1
        assert value(registry, "db_client_connection_max", database="target") == 5
