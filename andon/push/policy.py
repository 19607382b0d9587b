"""Which webhook URLs andon will call: safe by default against server-side request
forgery.

A webhook URL comes from a client, and andon calls it from inside the operator's
network. So by default it must be HTTPS, and every address its host resolves to must be
public: loopback, private, link-local (cloud metadata at 169.254.169.254 among them),
shared, multicast, reserved and unspecified addresses are refused, IPv4 inside IPv6
included. The operator allows more with `--push-allow`: CIDRs (`10.0.0.0/8`), addresses,
or host names; a URL whose host is allowed may also be plain HTTP.

The check runs when a config is stored (a refused URL answers InvalidParams and nothing
is stored) and again before every delivery, on the addresses the request then connects
to (DNS may have changed since): the request goes to the address checked, never to a
second lookup.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

RESOLVE_WAIT = 5.0
"""Seconds a config's check waits for DNS before leaving the host to delivery's check."""
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class RefusedURL(ValueError):
    """A webhook URL the policy does not allow; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a delivery goes: the URL as given, and the checked address to connect to."""

    url: httpx.URL
    address: str


@dataclass(frozen=True)
class PushPolicy:
    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def allowing(cls, entries: Iterable[str]) -> PushPolicy:
        """From `--push-allow` entries (each may hold several, comma-separated)."""
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in (e.strip() for text in entries for e in text.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    def _host_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def _address_allowed(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.networks):
            return True
        return address.is_global and not address.is_multicast

    def parse(self, url: str) -> httpx.URL:
        """The URL, if its form is acceptable (scheme, host, no credentials)."""
        import httpx  # here, not at start: a server without webhooks never needs it

        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise RefusedURL(f"not a URL: {exc}") from None
        if parsed.scheme not in ("https", "http") or not parsed.host:
            raise RefusedURL("the webhook URL must be an absolute https:// URL")
        if parsed.userinfo:
            raise RefusedURL("the webhook URL must not hold credentials (use authentication)")
        if parsed.scheme == "http" and not self._plain_http_allowed(parsed.host):
            raise RefusedURL(
                f"the webhook URL must be https:// ({parsed.host} is not in --push-allow)"
            )
        return parsed

    def _plain_http_allowed(self, host: str) -> bool:
        if self._host_allowed(host):
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def _check_address(self, host: str, address: str) -> None:
        if self._host_allowed(host):
            return
        checked = ipaddress.ip_address(address.split("%")[0])
        if not self._address_allowed(checked):
            raise RefusedURL(
                f"{host} resolves to {address}, a loopback, private, link-local or otherwise "
                "non-public address; an operator may allow it with --push-allow"
            )

    async def check(self, url: str) -> httpx.URL:
        """Refuse the URL if its form or any address its host resolves to is not
        allowed. A host that does not resolve now is accepted: delivery checks again."""
        parsed = self.parse(url)
        try:
            async with asyncio.timeout(RESOLVE_WAIT):
                addresses = await _resolve(parsed.host, parsed.port or _default_port(parsed))
        except (OSError, TimeoutError):
            return parsed
        for address in addresses:
            self._check_address(parsed.host, address)
        return parsed

    async def target(self, url: str) -> Target:
        """Where to send a delivery now: the first address of the host, every one of
        them checked (a refused one refuses the URL). OSError if it does not resolve."""
        parsed = self.parse(url)
        addresses = await _resolve(parsed.host, parsed.port or _default_port(parsed))
        for address in addresses:
            self._check_address(parsed.host, address)
        return Target(parsed, addresses[0])


def _default_port(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


async def _resolve(host: str, port: int) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    found = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not found:
        raise OSError(f"{host} has no address")
    return found
