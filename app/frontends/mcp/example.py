"""An MCP client for the gateway's `/mcp`, with the official SDK: the tools the credential
may use, a quotes call and the caller's usage.

With `make run` going (it links the OAuth client partner-acme to a demonstration partner):

    acme=$(.venv/bin/python -m backends token --client partner-acme)
    .venv/bin/python -m app.frontends.mcp.example --token "$acme"
    .venv/bin/python -m app.frontends.mcp.example --api-key sbk_...   # or a partner API key
"""

import argparse
import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


@asynccontextmanager
async def connect(
    url: str, headers: dict[str, str], *, mode: str = "auto"
) -> AsyncIterator[Client]:
    """An MCP client on `url` (the gateway's `/mcp`), every request carrying `headers`;
    `mode` as the SDK's `Client` takes it ("legacy": the initialize handshake)."""
    async with (
        create_mcp_http_client(headers=headers) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


async def run_example(
    url: str, headers: dict[str, str], *, symbols: str = "AAPL,MSFT", out: Callable[[str], None]
) -> None:
    """List the tools, then call `quotes` and `usage`, writing what comes back to `out`."""
    async with connect(url, headers) as client:
        listed = await client.list_tools()
        out("tools:")
        for tool in listed.tools:
            out(f"  {tool.name}: {tool.title}")
        quotes = await client.call_tool("quotes", {"symbols": symbols})
        if quotes.is_error:
            out(f"quotes failed: {json.dumps(quotes.structured_content)}")
        else:
            for quote in (quotes.structured_content or {}).get("quotes", []):
                out(f"{quote['symbol']}: {quote['price']} ({quote['change_pct']:+.2f}%)")
        usage = await client.call_tool("usage", {})
        out(f"usage: {json.dumps(usage.structured_content)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000/mcp")
    credential = parser.add_mutually_exclusive_group(required=True)
    credential.add_argument("--token", help="a partner's client-credentials access token")
    credential.add_argument("--api-key", help="a partner API key, sbk_<prefix>_<secret>")
    parser.add_argument("--symbols", default="AAPL,MSFT")
    options = parser.parse_args()
    headers = (
        {"Authorization": f"Bearer {options.token}"}
        if options.token
        else {"X-API-Key": options.api_key}
    )
    asyncio.run(run_example(options.url, headers, symbols=options.symbols, out=print))


if __name__ == "__main__":
    main()
