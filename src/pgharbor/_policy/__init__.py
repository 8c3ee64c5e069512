"""Pure policy: no I/O, no sleeping, no clock reads. Every decision takes ``now``."""
