"""The public surface: sorted, complete, importable, and shown under pgharbor."""

from __future__ import annotations

import pgharbor
import pgharbor.testing


def test_all_is_sorted_and_resolves() -> None:
    """__all__ is sorted and every name in it resolves."""
    for module in (pgharbor, pgharbor.testing):
        names = list(module.__all__)
        assert names == sorted(names), f"{module.__name__}.__all__ is not sorted"
        for name in module.__all__:
            assert getattr(module, name) is not None


def test_lazy_table_matches_all() -> None:
    """Every lazily imported name is exported, and every export is importable."""
    homes = set(pgharbor._HOMES)
    assert homes == set(pgharbor.__all__) - {"__version__"}


def test_errors_show_the_public_module() -> None:
    """Error classes present themselves as pgharbor.X in tracebacks."""
    assert pgharbor.PoolTimeout.__module__ == "pgharbor"
    assert issubclass(pgharbor.ConfigError, ValueError)
    assert issubclass(pgharbor.PoolTimeout, TimeoutError)


def test_pool_classes_are_the_shells() -> None:
    """pgharbor.Pool is the generated sync shell; AsyncPool the async source."""
    assert pgharbor.Pool.__module__ == "pgharbor._sync.pool"
    assert pgharbor.AsyncPool.__module__ == "pgharbor._async.pool"
