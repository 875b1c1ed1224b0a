"""A frontend for AI agents: the partner API as Model Context Protocol tools at `/mcp`
(`server.py`), generated from its OpenAPI document (`tools.py`), each call made in process
through the gateway's own app (`gateway_call.py`); `example.py` is a client to try it."""
