"""Django settings for pgharbor.django's test project (read from the
environment that tests/integration/test_django.py sets)."""

from __future__ import annotations

import os
from typing import Any

SECRET_KEY = "not-a-secret"
USE_TZ = True
TIME_ZONE = "Europe/Paris"
INSTALLED_APPS = ["harborapp"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def _database(port: str, **extra: Any) -> dict[str, Any]:
    return {
        "ENGINE": os.environ.get("PGH_ENGINE", "pgharbor.django"),
        "NAME": "harbor",
        "USER": "postgres",
        "HOST": os.environ["PGH_HOST"],
        "PORT": port,
        "CONN_MAX_AGE": 0,
        "OPTIONS": {
            "application_name": os.environ["PGH_APP"],
            "pool": {"min_size": 1, "max_size": 3, "timeout": 2.0},
        },
        **extra,
    }


DATABASES = {"default": _database(os.environ["PGH_PORT"])}
if os.environ.get("PGH_REPLICA_PORT"):
    DATABASES["replica"] = _database(os.environ["PGH_REPLICA_PORT"], TEST={"MIRROR": "default"})
    DATABASE_ROUTERS = ["harborapp.routers.ReadFromReplica"]
