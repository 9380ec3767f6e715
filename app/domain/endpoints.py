"""Which URLs the server may call back (subscription endpoints), as a pure rule.

Outgoing calls are a server-side request forgery risk: a subscriber must not make the
server call into the private network. So: `https` only outside development mode; plain
`http` only to loopback in development mode (tests, a local receiver); and the host must be
in the tenant's allow-list (`SUBSCRIPTION_ENDPOINT_HOSTS`, see app/settings.py). Loopback is
allowed without a list in development mode only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_allowed(host: str, patterns: frozenset[str]) -> bool:
    host = host.lower()
    return any(p == host or (p.startswith("*.") and host.endswith(p[1:])) for p in patterns)


@dataclass(frozen=True)
class EndpointPolicy:
    dev_mode: bool
    #: tenant → host patterns (`hook.lab.example`, `*.pharmacy.example`); "*" applies to all.
    hosts: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def problem(self, tenant_id: str, url: str) -> str | None:
        """Why `url` may not be called for `tenant_id`, or None when it may."""
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
            _ = parts.port  # raises ValueError on a bad port
        except ValueError:
            return "the endpoint is not a valid URL"
        if parts.scheme not in ("http", "https") or not host:
            return "the endpoint must be an absolute http(s) URL"
        if parts.username or parts.password:
            return "the endpoint must not carry credentials; use a channel header"
        loopback = is_loopback(host)
        if parts.scheme == "http" and not (self.dev_mode and loopback):
            return "the endpoint must use https (plain http only to loopback in development mode)"
        if self.dev_mode and loopback:
            return None
        allowed = self.hosts.get(tenant_id, frozenset()) | self.hosts.get("*", frozenset())
        if not _host_allowed(host, allowed):
            return f"host {host} is not in this tenant's allow-list of endpoint hosts"
        return None


def parse_hosts(spec: str) -> dict[str, frozenset[str]]:
    """`tenant-a=hook.lab.example,*.pharmacy.example;*=hooks.example.org` → mapping."""
    out: dict[str, frozenset[str]] = {}
    for part in spec.split(";"):
        if not part.strip():
            continue
        tenant, sep, hosts = part.partition("=")
        if not sep or not tenant.strip():
            raise ValueError(f"expected tenant=host,host in {part!r}")
        names = frozenset(h.strip().lower() for h in hosts.split(",") if h.strip())
        out[tenant.strip()] = out.get(tenant.strip(), frozenset()) | names
    return out
