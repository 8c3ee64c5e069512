"""``pgharbor mcp``: serve databases to an MCP client over stdio (see docs/mcp.md)."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

__all__ = ["mcp"]


def mcp(
    targets: Annotated[
        list[str] | None,
        typer.Argument(help="URLs or keyword DSNs; none: the config file's databases."),
    ] = None,
    config: Annotated[
        str | None, typer.Option("--config", "-c", help="A pgharbor TOML file.")
    ] = None,
    name: Annotated[str, typer.Option(help="The server's name, as clients show it.")] = "pgharbor",
) -> None:
    """Serve databases to an MCP client (Claude Desktop, IDEs, agents) over stdio.

    Read-only unless a database's [databases.NAME.guard] says allow_writes = true.
    """
    from ..errors import ConfigError
    from ..mcp_server import Harbor, build_server
    from .targets import env_configured, named_targets

    # stdout carries the protocol: anything else goes to stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    try:
        named = named_targets(targets or [], config) if targets or config else {}
        if not named and env_configured():
            named = named_targets([], None)
        if not named:
            raise ConfigError(
                "databases", "none given: pass URLs, --config FILE, or PGHARBOR_<NAME>__URL"
            )
        harbor = Harbor.from_targets(named)
    except ConfigError as exc:
        sys.stderr.write(f"pgharbor mcp: {exc}\n")
        raise typer.Exit(code=2) from None
    build_server(harbor, name).run("stdio")
