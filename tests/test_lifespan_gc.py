"""While the gateway serves, the cyclic collector's youngest generation is collected every
`GC_YOUNG_THRESHOLD` allocations instead of Python's 700 (several passes per request); the
process's own setting comes back when the lifespan ends."""

import gc

from app.main import GC_YOUNG_THRESHOLD
from app.settings import Settings
from tests.fixtures.gateway import running_gateway


async def test_the_lifespan_raises_the_young_threshold_and_restores_it(settings: Settings) -> None:
    before = gc.get_threshold()
    assert before[0] != GC_YOUNG_THRESHOLD
    async with running_gateway(settings) as gateway:
        assert (await gateway.client.get("/healthz")).status_code == 200
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
    assert gc.get_threshold() == before
