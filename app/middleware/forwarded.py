"""Who the client is when a proxy the gateway trusts forwarded the request.

`X-Forwarded-For` is a list each proxy appends its peer to, so only its right end, written
by proxies the gateway trusts, can be believed: the client is the rightmost address that is
not a trusted proxy. A client can write anything to the left of it, and a peer that is not a
trusted proxy can write the whole header, so with no trusted proxies (the default) the
header is ignored and the client is the connection's peer.
"""

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

FORWARDED_FOR_HEADER = b"x-forwarded-for"


class TrustedProxies:
    """The networks whose `X-Forwarded-For` the gateway believes."""

    def __init__(self, networks: Sequence[IPv4Network | IPv6Network]) -> None:
        self.networks = tuple(networks)

    def client_address(self, peer: str, forwarded_for: Sequence[bytes]) -> str:
        """The client's address: the peer's, or the rightmost untrusted forwarded one.

        `forwarded_for` holds the request's `X-Forwarded-For` values in the order received.
        An entry that is not an address ends the walk at the last trusted hop, which is
        then the best-known client.
        """
        if not self.networks or not forwarded_for or not self._trusts(_address(peer)):
            return peer
        client = peer
        for entry in reversed(_entries(forwarded_for)):
            hop = _address(entry)
            if hop is None:
                return client
            client = str(hop)
            if not self._trusts(hop):
                return client
        # Every hop a trusted proxy: the leftmost is the nearest to the client there is.
        return client

    def _trusts(self, address: IPv4Address | IPv6Address | None) -> bool:
        return address is not None and any(address in network for network in self.networks)


def _entries(values: Sequence[bytes]) -> list[str]:
    """Repeated headers are one comma-separated list, in order (RFC 9110, section 5.3)."""
    return [entry.strip() for value in values for entry in value.decode("latin-1").split(",")]


def _address(text: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None
