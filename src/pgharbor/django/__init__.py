"""A Django database backend pooled by pgharbor: ``ENGINE: "pgharbor.django"``.

Django's PostgreSQL backend (psycopg 3), with its connections lent by a
pgharbor `Pool` per database alias instead of opened per request or pooled by
psycopg_pool (``OPTIONS={"pool": True}``). Settings, the backend classes
(operations, introspection, schema editor...) and the transaction behaviour
are Django's own; see `pgharbor.django.base.DatabaseWrapper` and
docs/django.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._sync.pool import Pool

__all__ = ["pool_of"]


def pool_of(alias: str = "default") -> Pool:
    """The pgharbor `Pool` behind the database ``alias`` (opened at its first
    connection): ``pool_of("default").stats()``, ``.health()``, ``.on(...)``.

    Raises:
        ConfigError: the alias does not use ``ENGINE: "pgharbor.django"``, or
            has pooling turned off.
    """
    from django.db import connections

    from ..errors import ConfigError
    from .base import DatabaseWrapper

    wrapper = connections[alias]
    pool = wrapper.pool if isinstance(wrapper, DatabaseWrapper) else None
    if pool is None:
        raise ConfigError(
            "alias", f"database {alias!r} is not pooled by pgharbor (ENGINE 'pgharbor.django')"
        )
    return pool
