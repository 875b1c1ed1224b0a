"""The response cache: one component (`app.cache.cache.ResponseCache`) for every cached route,
the BFF's and the config-driven pass-through routes'. Memory first (a byte budget, LRU), then
Redis shared by every process when `REDIS_URL` is set; RFC 9111 semantics as a shared cache;
`Cache-Status` (RFC 9211) on every answer; one upstream fetch per key; content codings
(`codings`) shared with the compression layer."""
