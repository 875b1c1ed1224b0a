"""Choosing one instance of a service for a call."""

import itertools
from collections.abc import Sequence

from app.store.snapshot import InstanceConfig


class RoundRobin:
    """Each instance in turn."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def pick(self, instances: Sequence[InstanceConfig]) -> InstanceConfig:
        return instances[next(self._counter) % len(instances)]
