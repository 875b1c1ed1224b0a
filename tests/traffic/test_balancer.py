"""Balancers: exact round robin, smooth weighted 3:1, power of two choices away from load."""

import asyncio
import random
from collections import Counter

from app.store.snapshot import InstanceConfig
from app.traffic.balancer import LeastOutstanding, RoundRobin, WeightedRoundRobin, create_balancer
from backends.launcher import Platform
from tests.fixtures.upstream_caller import upstream_caller

A = InstanceConfig(1, "http://a", weight=3)
B = InstanceConfig(2, "http://b", weight=1)


def test_round_robin_alternates_exactly() -> None:
    balancer = RoundRobin()
    picks = [balancer.pick([A, B]).url for _ in range(6)]
    assert picks == ["http://a", "http://b"] * 3


def test_smooth_weighted_round_robin_interleaves_three_to_one() -> None:
    balancer = WeightedRoundRobin()
    picks = [balancer.pick([A, B]).url for _ in range(8)]
    # nginx's smooth order for 3:1 spreads b out instead of sending a a a in a burst.
    assert picks == ["http://a", "http://a", "http://b", "http://a"] * 2


def test_weighted_round_robin_follows_a_changed_instance_set() -> None:
    balancer = WeightedRoundRobin()
    c = InstanceConfig(3, "http://c", weight=2)
    for _ in range(5):
        balancer.pick([A, B])
    counts = Counter(balancer.pick([B, c]).url for _ in range(30))
    assert counts == {"http://c": 20, "http://b": 10}


def test_power_of_two_choices_prefers_the_instance_with_fewer_calls_in_flight() -> None:
    balancer = LeastOutstanding(chooser=random.Random(7))
    with balancer.track(A), balancer.track(A):
        picks = Counter(balancer.pick([A, B]).url for _ in range(50))
    assert picks == {"http://b": 50}
    assert balancer.outstanding == {}


def test_unknown_balancer_names_fall_back_to_round_robin() -> None:
    assert isinstance(create_balancer("least_outstanding"), LeastOutstanding)
    assert isinstance(create_balancer("weighted_round_robin"), WeightedRoundRobin)
    assert isinstance(create_balancer("fastest"), RoundRobin)


def _quote_counts(platform: Platform) -> list[int]:
    counts = []
    for backend in platform.instances("market-data"):
        requests = backend.stats()["requests"]
        assert isinstance(requests, dict)
        counts.append(int(requests.get("GET /quotes", 0)))
    return counts


async def test_round_robin_alternates_between_real_instances(
    platform: Platform, database_url: str
) -> None:
    platform.reset_stats()
    urls = platform.urls["market-data"]
    async with upstream_caller(database_url, {"market-data": urls}) as caller:
        seen = []
        for _ in range(6):
            await caller.request("market-data", "GET", "/quotes", params={"symbols": "AAPL"})
            seen.append(_quote_counts(platform))
    assert seen == [[1, 0], [1, 1], [2, 1], [2, 2], [3, 2], [3, 3]]


async def test_weighted_round_robin_sends_three_to_one_to_real_instances(
    platform: Platform, database_url: str
) -> None:
    platform.reset_stats()
    urls = platform.urls["market-data"]
    async with upstream_caller(
        database_url,
        {"market-data": urls},
        balancers={"market-data": "weighted_round_robin"},
        weights={urls[0]: 3, urls[1]: 1},
    ) as caller:
        for _ in range(40):
            await caller.request("market-data", "GET", "/quotes", params={"symbols": "MSFT"})
    assert _quote_counts(platform) == [30, 10]


async def test_least_outstanding_steers_load_away_from_a_slow_instance(
    platform: Platform, database_url: str
) -> None:
    platform.reset_stats()
    slow = platform.process("market-data", 0)
    slow.set_faults(latency_ms=150, paths=["/quotes"])
    async with upstream_caller(
        database_url,
        {"market-data": platform.urls["market-data"]},
        balancers={"market-data": "least_outstanding"},
    ) as caller:

        async def worker(symbol: str) -> None:
            for _ in range(8):
                await caller.request(
                    "market-data", "GET", "/quotes", params={"symbols": symbol}, collapse=False
                )

        await asyncio.gather(*(worker(s) for s in ("AAPL", "MSFT", "NVDA", "TSLA")))
    slow_count, fast_count = _quote_counts(platform)
    assert slow_count + fast_count == 32
    # Round robin would give each 16; with 4 callers, the slow one mostly has calls in flight.
    assert slow_count * 3 <= fast_count
