"""DNS discovery: A and SRV records, from a small DNS server on a free UDP port."""

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from typing import cast

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from app.discovery.dns import DnsDiscovery
from app.traffic.service_policy import DnsDiscoveryPolicy
from backends.launcher import Platform
from tests.fixtures.upstream_caller import upstream_caller

Zone = dict[tuple[str, str], list[str]]


class _DnsProtocol(asyncio.DatagramProtocol):
    def __init__(self, zone: Callable[[], Zone]) -> None:
        self.zone = zone
        self.transport: asyncio.DatagramTransport | None = None
        self.queries: list[tuple[str, str]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name, kind = question.name.to_text(), dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, kind))
        records = self.zone().get((name, kind))
        if records is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            response.answer.append(dns.rrset.from_text_list(name, 30, "IN", kind, records))
            if kind == "SRV":
                for record in records:
                    target = record.split()[-1]
                    glue = self.zone().get((target, "A"))
                    if glue:
                        response.additional.append(
                            dns.rrset.from_text_list(target, 30, "IN", "A", glue)
                        )
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


class TinyDnsServer:
    def __init__(self, protocol: _DnsProtocol, port: int) -> None:
        self.protocol = protocol
        self.port = port


@pytest.fixture
async def dns_server() -> AsyncIterator[tuple[TinyDnsServer, Zone]]:
    zone: Zone = {}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _DnsProtocol(lambda: zone), sock=sock
    )
    try:
        yield TinyDnsServer(protocol, sock.getsockname()[1]), zone
    finally:
        transport.close()


async def test_a_records_become_instances_on_the_configured_port(
    dns_server: tuple[TinyDnsServer, Zone],
) -> None:
    server, zone = dns_server
    zone[("news.internal.", "A")] = ["10.1.0.1", "10.1.0.2"]
    discovery = DnsDiscovery(nameservers=["127.0.0.1"], port=server.port)
    policy = DnsDiscoveryPolicy(name="news.internal", record="A", port=8080)
    found = await discovery.refresh("news", policy)
    assert sorted(i.url for i in found) == ["http://10.1.0.1:8080", "http://10.1.0.2:8080"]
    assert {i.source for i in found} == {"dns"}


async def test_srv_records_use_the_lowest_priority_their_ports_and_weights(
    dns_server: tuple[TinyDnsServer, Zone],
) -> None:
    server, zone = dns_server
    zone[("_http._tcp.md.internal.", "SRV")] = [
        "10 3 9001 md-1.internal.",
        "10 1 9002 md-2.internal.",
        "20 1 9003 md-backup.internal.",
    ]
    zone[("md-1.internal.", "A")] = ["10.2.0.1"]
    zone[("md-2.internal.", "A")] = ["10.2.0.2"]
    zone[("md-backup.internal.", "A")] = ["10.2.0.3"]
    discovery = DnsDiscovery(nameservers=["127.0.0.1"], port=server.port)
    policy = DnsDiscoveryPolicy(name="_http._tcp.md.internal", record="SRV")
    found = await discovery.refresh("market-data", policy)
    assert [(i.url, i.weight) for i in found] == [
        ("http://10.2.0.1:9001", 3),
        ("http://10.2.0.2:9002", 1),
    ]


async def test_a_failed_lookup_keeps_the_last_answer(
    dns_server: tuple[TinyDnsServer, Zone],
) -> None:
    server, zone = dns_server
    zone[("bots.internal.", "A")] = ["10.3.0.1"]
    discovery = DnsDiscovery(nameservers=["127.0.0.1"], port=server.port)
    policy = DnsDiscoveryPolicy(name="bots.internal", record="A", port=80)
    await discovery.refresh("bots", policy)
    del zone[("bots.internal.", "A")]
    assert [i.url for i in await discovery.refresh("bots", policy)] == ["http://10.3.0.1:80"]
    assert discovery.instances("bots")[0].url == "http://10.3.0.1:80"


async def test_calls_reach_an_instance_found_through_srv(
    dns_server: tuple[TinyDnsServer, Zone], platform: Platform, database_url: str
) -> None:
    server, zone = dns_server
    news = platform.process("news")
    news.reset_stats()
    port = int(news.url.rsplit(":", 1)[1])
    zone[("_http._tcp.news.test.", "SRV")] = [f"0 1 {port} news-1.test."]
    zone[("news-1.test.", "A")] = ["127.0.0.1"]
    policy = {"dns": {"name": "_http._tcp.news.test", "record": "SRV"}}
    # The configured instance is a closed port: only DNS knows where news answers.
    async with upstream_caller(
        database_url, {"news": ["http://127.0.0.1:9"]}, policies={"news": policy}
    ) as caller:
        registry = caller.registry
        registry.dns = DnsDiscovery(nameservers=["127.0.0.1"], port=server.port)
        await registry.refresh()
        assert news.url in [i.url for i in registry.instances("news")]
        for limit in ("1", "2", "3"):
            response = await caller.request("news", "GET", "/news", params={"limit": limit})
            assert response.status == 200
    assert ("_http._tcp.news.test.", "SRV") in server.protocol.queries
    requests = news.stats()["requests"]
    assert isinstance(requests, dict)
    assert requests["GET /news"] >= 2
