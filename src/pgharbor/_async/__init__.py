"""The async source of truth: `tools/unasync.py` generates `pgharbor._sync` from it."""
