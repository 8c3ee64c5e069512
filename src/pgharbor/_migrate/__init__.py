"""Migrations, the pure part: reading files and planning (no I/O on the server).

The shell that applies them is `pgharbor._async.migrations` (and the
generated `pgharbor._sync.migrations`).
"""
