"""Subcommands of the ``pgharbor`` command besides ``check`` (see `pgharbor.cli`)."""
