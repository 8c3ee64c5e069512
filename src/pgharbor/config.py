"""Settings for one database (`DatabaseSettings`) and for a set of named ones.

`HarborSettings` holds the named databases and a profile; `load_settings`
builds it from, lowest precedence first: defaults (and the profile's), a TOML
file, a ``.env`` file, environment variables, keyword arguments::

    from pgharbor.config import load_settings
    from pgharbor import Pool

    settings = load_settings("pgharbor.toml")
    with Pool(**settings.pool_kwargs("source")) as pool:
        ...

Every invalid value raises `pgharbor.ConfigError` at construction, naming
the field (``databases.source.max_size``) and the rule; no message, ``repr``
or dump ever contains a password. The full reference is ``docs/config.md``.
"""

from __future__ import annotations

from ._config.database import (
    AutoscaleSettings,
    BreakerSettings,
    DatabaseSettings,
    RetrySettings,
)
from ._config.harbor import PROFILES, EnvSource, HarborSettings, load_settings

__all__ = [
    "PROFILES",
    "AutoscaleSettings",
    "BreakerSettings",
    "DatabaseSettings",
    "EnvSource",
    "HarborSettings",
    "RetrySettings",
    "load_settings",
]
