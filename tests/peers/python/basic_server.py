"""A small but complete MCP server (mcp 2.3 `MCPServer`) for Switchboard's integration tests.

Run it as `python basic_server.py --transport streamable-http --port P` (serves `/mcp`, both the
session-based 2025-11-25 protocol and the stateless 2026-07-28 one) or `--transport sse` (serves
the 2024-11-05 HTTP+SSE transport at `/sse` and `/messages/`). It offers:

- tools `add`, `echo`, `weather` (structured output) and `slow` (reports progress);
- resources `note://hello` and the template `greeting://{name}`;
- the prompt `summarize` with arguments, and completions for its `style` argument.
"""

from __future__ import annotations

import anyio
from pydantic import BaseModel, Field

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import Completion, PromptReference

from _common import parse_args, run

server = MCPServer(
    "switchboard-basic",
    version="1.0.0",
    instructions="A test server: arithmetic, echo, weather, a slow task, notes and a prompt.",
)

STYLES = ["brief", "detailed", "bullet-points"]


@server.tool(description="Adds two integers and returns the sum as text.", structured_output=False)
def add(a: int, b: int) -> str:
    return str(a + b)


@server.tool(description="Returns the given text unchanged.", structured_output=False)
def echo(text: str) -> str:
    return text


class Weather(BaseModel):
    """The structured result of the `weather` tool."""

    city: str
    temperature_c: float = Field(description="Temperature in degrees Celsius")
    conditions: str


@server.tool(description="Reports (made-up, deterministic) weather for a city as structured output.")
def weather(city: str) -> Weather:
    return Weather(city=city, temperature_c=float(len(city) * 3 % 35), conditions="sunny")


@server.tool(
    description="Works for `steps` steps of `delay_ms` each, reporting progress after every step.",
    structured_output=False,
)
async def slow(ctx: Context, steps: int = 5, delay_ms: int = 100) -> str:
    for step in range(1, steps + 1):
        await anyio.sleep(delay_ms / 1000)
        await ctx.report_progress(step, steps, f"step {step} of {steps}")
    return f"done after {steps} steps"


@server.resource("note://hello", name="hello", description="A fixed note.", mime_type="text/plain")
def hello_note() -> str:
    return "Hello from the basic server"


@server.resource("greeting://{name}", name="greeting", description="Greets whoever is named.", mime_type="text/plain")
def greeting(name: str) -> str:
    return f"Hello, {name}!"


@server.prompt(description="Asks the model to summarize a text in a given style.")
def summarize(text: str, style: str = "brief") -> str:
    return f"Summarize the following text in a {style} style:\n\n{text}"


@server.completion()
async def complete(ref, argument, context):  # noqa: ANN001 - the SDK passes its own types
    if isinstance(ref, PromptReference) and ref.name == "summarize" and argument.name == "style":
        values = [s for s in STYLES if s.startswith(argument.value)]
        return Completion(values=values, total=len(values), has_more=False)
    return None


if __name__ == "__main__":
    run(server, parse_args(__doc__.splitlines()[0]))
