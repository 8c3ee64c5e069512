"""The test app's models."""

from __future__ import annotations

from django.db import models


class Item(models.Model):  # type: ignore[misc]
    name = models.CharField(max_length=100)
    data = models.JSONField(default=dict)
    created = models.DateTimeField(auto_now_add=True)
