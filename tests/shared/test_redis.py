"""The one Redis client: its connections pack commands with hiredis, byte for byte as
redis-py's own packer does, for every kind of URL of a single node."""

import pytest
from redis.asyncio.connection import (
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.exceptions import DataError

from app.settings import Settings
from app.shared.redis import connect_redis
from tests.fixtures.redis import SHARED_REDIS_URL

COMMANDS = [
    (b"EVALSHA", b"0" * 40, 2, "gw:rl:c:1:second", "gw:if:c:1", 1, b"1", "", 1_000_000),
    ("SET", "k", "é", "PX", 1500),
    ("SET", "k", 0.1),
    ("SET", "k", memoryview(b"bytes")),
    # A command of two words is two arguments on the wire.
    ("CONFIG GET", "maxmemory"),
]


@pytest.mark.parametrize(
    ("url", "plain"),
    [
        ("redis://127.0.0.1:6379/0", Connection),
        ("rediss://127.0.0.1:6380/0", SSLConnection),
        ("unix:///tmp/redis.sock", UnixDomainSocketConnection),
    ],
)
async def test_commands_are_packed_as_redis_py_packs_them(url: str, plain: type) -> None:
    shared = connect_redis(Settings(redis_url=url))
    assert shared is not None
    try:
        pool = shared.client.connection_pool
        connection = pool.make_connection()
        assert isinstance(connection, plain) and type(connection) is not plain
        reference = plain(**pool.connection_kwargs)
        for command in COMMANDS:
            assert b"".join(connection.pack_command(*command)) == b"".join(
                reference.pack_command(*command)
            )
        with pytest.raises(DataError):
            connection.pack_command("SET", "k", True)
    finally:
        await shared.close()


async def test_a_packed_command_is_answered() -> None:
    shared = connect_redis(Settings(redis_url=SHARED_REDIS_URL))
    assert shared is not None
    try:
        replies = await shared.pipeliner.execute([("PING",), (b"ECHO", "é")])
        assert replies == [True, "é".encode()]
    finally:
        await shared.close()
