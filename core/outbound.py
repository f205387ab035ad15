"""URLs a user chooses that a server behind the portal will fetch (an Open Notebook link source):
checked so nobody reads the portal's own network back through them.

A URL passes when it is http(s) without credentials and every address its host resolves to is a
public one (``ipaddress``'s ``is_global``: not loopback, private, link-local, the cloud metadata
address, carrier-grade NAT, multicast or reserved), unless ``portal.outbound_allow`` names the
host or a network holding the address. What the fetching server does later (resolving the name
again, following a redirect) is out of the portal's sight: an egress policy on that server is the
complete answer to DNS rebinding.
"""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from .errors import PortalError


class OutboundPolicy:
    """``portal.outbound_allow``: host names and networks (CIDR) an admin lets users point at."""

    def __init__(self, allowed: list[str], resolve=socket.getaddrinfo):
        self.hosts = {entry.lower().rstrip(".") for entry in allowed if not is_network(entry)}
        self.networks = [ipaddress.ip_network(entry, strict=False) for entry in allowed if is_network(entry)]
        self.resolve = resolve

    def check(self, url: str, what: str = "url") -> str:
        """Return ``url`` when a user may have a server fetch it; raises 400 naming ``what``
        and why (not http(s), credentials, no host, unresolvable, or an address not public)."""
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise _refused(what, "is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _refused(what, "must be an http or https URL with a host")
        if parts.username is not None or parts.password is not None:
            raise _refused(what, "may not carry credentials")
        host = parts.hostname.lower().rstrip(".")
        if host in self.hosts:
            return url
        try:
            answers = self.resolve(host, port, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            raise _refused(what, f"names a host that does not resolve ({host})") from None
        addresses = {answer[4][0].split("%", 1)[0] for answer in answers}
        if not addresses:
            raise _refused(what, f"names a host that does not resolve ({host})")
        for address in sorted(addresses):
            ip = ipaddress.ip_address(address)
            ip = getattr(ip, "ipv4_mapped", None) or ip
            if not ip.is_global and not any(ip in network for network in self.networks):
                raise _refused(what, f"points inside the portal's network ({host} is {ip}); an admin "
                                     "can allow it in portal.outbound_allow")
        return url


def is_network(entry: str) -> bool:
    """Return True when ``entry`` is an IP address or network (CIDR)."""
    try:
        ipaddress.ip_network(entry, strict=False)
        return True
    except ValueError:
        return False


def _refused(what: str, why: str) -> PortalError:
    return PortalError(f"`{what}` {why}.", status=400, code="url_not_allowed")
