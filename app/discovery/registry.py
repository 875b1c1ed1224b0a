"""Where each service answers, read from the config snapshot."""

from app.store.snapshot import ConfigStore, InstanceConfig, ServiceConfig
from app.traffic.balancer import RoundRobin
from app.upstreams.errors import UpstreamUnavailable


class ServiceRegistry:
    """Resolves a service name to its configuration and to one instance for a call."""

    def __init__(self, config: ConfigStore) -> None:
        self._config = config
        self._balancers: dict[str, RoundRobin] = {}

    def service(self, name: str) -> ServiceConfig:
        service = self._config.current.services.get(name)
        if service is None:
            raise UpstreamUnavailable(f"No service named {name!r} is registered.", service=name)
        return service

    def instances(self, name: str) -> tuple[InstanceConfig, ...]:
        return tuple(i for i in self.service(name).instances if i.enabled)

    def pick(self, name: str) -> InstanceConfig:
        instances = self.instances(name)
        if not instances:
            raise UpstreamUnavailable(f"Service {name!r} has no enabled instance.", service=name)
        balancer = self._balancers.get(name)
        if balancer is None:
            balancer = self._balancers[name] = RoundRobin()
        return balancer.pick(instances)
