"""Choosing one instance of a service for a call.

Three strategies, named by `Service.balancer`:
- `round_robin`: each instance in turn;
- `weighted_round_robin`: nginx's smooth weighted round robin, which spreads the heavier
  instances' turns out instead of sending them in bursts (weights 3:1 -> a a b a, a a b a);
- `least_outstanding`: the power of two random choices over in-flight calls, which avoids
  both the herd that plain least-loaded causes and random's blindness to a slow instance.
"""

import itertools
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Protocol, TypeVar

BALANCERS = ("round_robin", "weighted_round_robin", "least_outstanding")


class BalancedInstance(Protocol):
    """What a balancer reads of an instance (the store's `InstanceConfig` has it)."""

    @property
    def url(self) -> str: ...

    @property
    def weight(self) -> int: ...


InstanceT = TypeVar("InstanceT", bound=BalancedInstance)


class Balancer(Protocol):
    def pick(self, instances: Sequence[InstanceT]) -> InstanceT:
        """One of `instances`, which is never empty."""
        ...

    def track(self, instance: BalancedInstance) -> AbstractContextManager[None]:
        """Wraps a call to `instance`, for balancers that count what is in flight."""
        ...


class RoundRobin:
    """Each instance in turn."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def pick(self, instances: Sequence[InstanceT]) -> InstanceT:
        return instances[next(self._counter) % len(instances)]

    def track(self, instance: BalancedInstance) -> AbstractContextManager[None]:
        return nullcontext()


class WeightedRoundRobin:
    """Smooth weighted round robin: each instance gets `weight` turns in every cycle."""

    def __init__(self) -> None:
        self._current: dict[str, int] = {}

    def pick(self, instances: Sequence[InstanceT]) -> InstanceT:
        total = 0
        best: InstanceT | None = None
        for instance in instances:
            weight = max(instance.weight, 1)
            current = self._current.get(instance.url, 0) + weight
            self._current[instance.url] = current
            total += weight
            if best is None or current > self._current[best.url]:
                best = instance
        assert best is not None
        self._current[best.url] -= total
        if len(self._current) > len(instances):
            # Forget instances that left, so one coming back starts from zero.
            present = {instance.url for instance in instances}
            self._current = {url: v for url, v in self._current.items() if url in present}
        return best

    def track(self, instance: BalancedInstance) -> AbstractContextManager[None]:
        return nullcontext()


class LeastOutstanding:
    """Of two instances drawn at random, the one with fewer calls in flight."""

    def __init__(self, *, chooser: random.Random | None = None) -> None:
        self._random = chooser or random.Random()
        self.outstanding: Counter[str] = Counter()

    def pick(self, instances: Sequence[InstanceT]) -> InstanceT:
        if len(instances) == 1:
            return instances[0]
        first, second = self._random.sample(range(len(instances)), 2)
        a, b = instances[first], instances[second]
        return b if self.outstanding[b.url] < self.outstanding[a.url] else a

    @contextmanager
    def track(self, instance: BalancedInstance) -> Iterator[None]:
        self.outstanding[instance.url] += 1
        try:
            yield
        finally:
            self.outstanding[instance.url] -= 1
            if self.outstanding[instance.url] <= 0:
                del self.outstanding[instance.url]


def create_balancer(name: str) -> RoundRobin | WeightedRoundRobin | LeastOutstanding:
    """The balancer named by a service's configuration; unknown names fall back to round robin."""
    if name == "weighted_round_robin":
        return WeightedRoundRobin()
    if name == "least_outstanding":
        return LeastOutstanding()
    return RoundRobin()
