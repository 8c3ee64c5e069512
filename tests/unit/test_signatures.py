"""The typed keyword arguments match what the constructors take, and a
misspelt setting fails at once, naming the class and the setting meant."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from pgharbor import AsyncDatabase, AsyncPool, ConfigError, Database, DatabaseSettings, Pool
from pgharbor._typing import (
    DATABASE_HOOKS,
    AsyncDatabaseHooks,
    AsyncDatabaseKwargs,
    AsyncPoolKwargs,
    DatabaseHooks,
    DatabaseKwargs,
    DatabaseStats,
    PoolKwargs,
    PoolStats,
    QueryStats,
)


def keys(typed_dict: Any) -> set[str]:
    return set(typed_dict.__annotations__)


def keyword_params(cls: type) -> set[str]:
    params = inspect.signature(vars(cls)["__init__"]).parameters.values()
    return {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


@pytest.mark.parametrize(("cls", "kwargs"), [(AsyncPool, AsyncPoolKwargs), (Pool, PoolKwargs)])
def test_pool_kwargs_are_the_pool_keywords(cls: type, kwargs: Any) -> None:
    """The pools' TypedDict lists every keyword of __init__ but driver (the
    overloads' own parameter)."""
    assert keys(kwargs) == keyword_params(cls) - {"driver"}


@pytest.mark.parametrize("kwargs", [AsyncDatabaseKwargs, DatabaseKwargs])
def test_database_kwargs_are_the_settings_and_the_hooks(kwargs: Any) -> None:
    """The databases' TypedDict is DatabaseSettings' fields (but driver) plus
    the pool arguments that are not settings."""
    fields = set(DatabaseSettings.model_fields)
    assert keys(kwargs) == (fields - {"driver"}) | DATABASE_HOOKS
    pool_only = keyword_params(AsyncPool) - fields - {"name"}
    assert pool_only == DATABASE_HOOKS


@pytest.mark.parametrize("hooks", [AsyncDatabaseHooks, DatabaseHooks])
def test_hooks_beside_settings(hooks: Any) -> None:
    """With settings=, only the hooks, a password callable and a RetryPolicy."""
    assert keys(hooks) == DATABASE_HOOKS | {"password", "retry"}


def test_stats_typed_dicts_match_the_stats() -> None:
    """PoolStats has exactly the keys stats() returns (an autoscaled pool's
    too); DatabaseStats adds the statement counters."""
    autoscale = {k for k in keys(PoolStats) if k.startswith("autoscale_")}
    pool = AsyncPool("host=127.0.0.1 port=1")
    assert set(pool.stats()) == keys(PoolStats) - autoscale
    scaled = AsyncPool("host=127.0.0.1 port=1", min_size=1, max_size=4, autoscale=True)
    assert set(scaled.stats()) == keys(PoolStats)
    assert keys(DatabaseStats) == keys(PoolStats) | keys(QueryStats)
    db = Database("host=127.0.0.1 port=1 dbname=x")
    assert set(db.stats()) == keys(DatabaseStats) - autoscale


@pytest.mark.parametrize("cls", [AsyncDatabase, Database])
def test_misspelt_setting_names_the_class_and_the_setting_meant(cls: Any) -> None:
    """max_sise=3 is a ConfigError naming the class and suggesting max_size."""
    with pytest.raises(ConfigError) as info:
        cls("host=127.0.0.1 port=1", max_sise=3)
    assert info.value.field == "max_sise"
    assert str(info.value) == (
        f"max_sise: unknown setting of {cls.__name__} (did you mean 'max_size'?)"
    )
    with pytest.raises(ConfigError, match=f"^statement_timout: unknown setting of {cls.__name__}"):
        cls(settings=DatabaseSettings(), statement_timout=3)
    with pytest.raises(ConfigError, match=f"^zzz: unknown setting of {cls.__name__}$"):
        cls("host=127.0.0.1 port=1", zzz=1)


def test_hooks_still_reach_the_pool() -> None:
    """A pool argument that is not a setting (labels) goes to the pools."""
    db = Database("host=127.0.0.1 port=1 dbname=x", labels={"team": "a"})
    assert db.pool.observation.labels == {"team": "a"}
