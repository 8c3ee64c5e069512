"""Settings models behind `pgharbor.config` (import them from there)."""
