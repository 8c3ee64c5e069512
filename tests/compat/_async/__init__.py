"""Drop-in tests written once, async; `tools/unasync.py` generates `_sync`."""
