"""Command-line handling shared by the test peer servers (transport and port on loopback)."""

from __future__ import annotations

import argparse
from typing import Any


def parse_args(description: str) -> argparse.Namespace:
    """Reads `--transport` and `--port`; the host is always loopback so tests never listen elsewhere."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--transport", choices=["streamable-http", "sse"], default="streamable-http")
    parser.add_argument("--port", type=int, required=True)
    return parser.parse_args()


def run(server: Any, args: argparse.Namespace) -> None:
    """Serves `/mcp` (streamable HTTP, both protocol generations) or `/sse` + `/messages/` (HTTP+SSE)."""
    server.run(transport=args.transport, host="127.0.0.1", port=args.port)
