"""Instances found in DNS: A records (every address, one configured port) or SRV records.

A service opts in through its policy's `dns` section. SRV answers are read as RFC 2782 says:
only the lowest priority present is used, the record's weight becomes the instance weight,
and each target is resolved to its addresses (from the answer's additional section when the
server sent them). Lookups run in the background; a failed lookup keeps the last answer.
"""

import logging
import time

import dns.asyncresolver
import dns.exception
import dns.message
import dns.rdatatype
import dns.resolver

from app.store.snapshot import InstanceConfig
from app.traffic.service_policy import DnsDiscoveryPolicy

logger = logging.getLogger("gateway.discovery")


class DnsDiscovery:
    def __init__(self, *, nameservers: list[str], port: int, lifetime_s: float = 2.0) -> None:
        self._resolver = dns.asyncresolver.Resolver(configure=not nameservers)
        if nameservers:
            self._resolver.nameservers = list(nameservers)
        self._resolver.port = port
        self._resolver.lifetime = lifetime_s
        self._resolver.timeout = lifetime_s
        self._instances: dict[str, tuple[InstanceConfig, ...]] = {}
        self._resolved_at: dict[str, float] = {}

    def instances(self, service: str) -> tuple[InstanceConfig, ...]:
        return self._instances.get(service, ())

    def due(self, service: str, policy: DnsDiscoveryPolicy) -> bool:
        last = self._resolved_at.get(service)
        return last is None or time.monotonic() - last >= policy.refresh_ms / 1000

    async def refresh(self, service: str, policy: DnsDiscoveryPolicy) -> tuple[InstanceConfig, ...]:
        """Look the service up now; on failure keep (and return) the previous answer."""
        self._resolved_at[service] = time.monotonic()
        try:
            found = await self.resolve(policy)
        except dns.exception.DNSException as exc:
            logger.warning("DNS lookup of %s for %s failed: %s", policy.name, service, exc)
            return self.instances(service)
        self._instances[service] = found
        return found

    def forget(self, service: str) -> None:
        self._instances.pop(service, None)
        self._resolved_at.pop(service, None)

    async def resolve(self, policy: DnsDiscoveryPolicy) -> tuple[InstanceConfig, ...]:
        if policy.record == "A":
            answer = await self._resolver.resolve(policy.name, "A")
            return tuple(
                InstanceConfig(0, f"{policy.scheme}://{record.address}:{policy.port}", source="dns")
                for record in answer
            )
        answer = await self._resolver.resolve(policy.name, "SRV")
        records = list(answer)
        if not records:
            return ()
        best = min(record.priority for record in records)
        found: list[InstanceConfig] = []
        for record in sorted(records, key=lambda r: (r.target.to_text(), r.port)):
            if record.priority != best:
                continue
            target = record.target.to_text()
            for address in await self._addresses(target, answer.response):
                found.append(
                    InstanceConfig(
                        0,
                        f"{policy.scheme}://{address}:{record.port}",
                        weight=max(record.weight, 1),
                        source="dns",
                    )
                )
        return tuple(found)

    async def _addresses(self, target: str, response: dns.message.Message) -> list[str]:
        glued = [
            record.address
            for rrset in response.additional
            if rrset.rdtype == dns.rdatatype.A and rrset.name.to_text() == target
            for record in rrset
        ]
        if glued:
            return glued
        try:
            answer = await self._resolver.resolve(target, "A")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            logger.warning("SRV target %s has no address", target)
            return []
        return [record.address for record in answer]
