"""Configuration, read from the environment in exactly one place (DESIGN §2)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from app.domain.endpoints import EndpointPolicy, parse_hosts

DEV_ISSUER = "urn:orders-service:dev"
DEV_AUDIENCE = "orders-service"
DEV_MODE_ENV = "ORDERS_DEV_MODE"
DEV_MODE_WARNING = (
    "DEVELOPMENT MODE: no OIDC_* is set, so tokens are verified against a local signing key "
    "in the instance folder. Anyone who can read that key can mint ADMIN tokens for any "
    "tenant. Never expose this server to real users or real patient data."
)
#: Who may scrape /metrics without a token: loopback (a sidecar or node agent).
DEFAULT_METRICS_NETWORKS = "127.0.0.0/8,::1/128"
#: Proxies whose `X-Forwarded-Proto` (and kin) set the request's scheme: gunicorn's default.
DEFAULT_FORWARDED_ALLOW_IPS = "127.0.0.1,::1"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigurationError(RuntimeError):
    """Raised at start-up when the environment describes an impossible set-up."""


@dataclass(frozen=True)
class Settings:
    instance_path: Path
    database_url: str
    redis_url: str | None = None
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_client_id: str | None = None
    public_base_url: str | None = None
    #: An RxNav-compatible REST base (RxNav-in-a-Box) for codes the knowledge base lacks.
    terminology_url: str | None = None
    #: Host names (and `host:port`) a request may name; with no PUBLIC_BASE_URL, links are
    #: built from the request host, so outside development mode one of them is required.
    trusted_hosts: tuple[str, ...] = ()
    #: ORDERS_DEV_MODE=1 (or `serve --dev`): the operator knowingly runs development mode.
    dev_mode_opt_in: bool = False
    #: On SIGTERM, serve this long with `Connection: close` and /readyz 503 before stopping.
    shutdown_drain_seconds: float = 5.0
    max_body_bytes: int = 1024 * 1024
    #: /metrics (docs/operations.md): a bearer token, and networks allowed without one.
    metrics_token: str | None = None
    metrics_networks: tuple[Network, ...] = field(
        default_factory=lambda: parse_networks(DEFAULT_METRICS_NETWORKS)
    )
    #: `FORWARDED_ALLOW_IPS`, the variable gunicorn reads itself: the addresses (or CIDRs;
    #: `*` = any) whose scheme headers granian's workers believe (app/web/granian_server.py).
    forwarded_allow: tuple[Network, ...] = field(
        default_factory=lambda: parse_forwarded_allow(DEFAULT_FORWARDED_ALLOW_IPS)
    )
    #: The access audit trail; off only to measure its cost (`make bench`), never in use.
    audit_enabled: bool = True
    audit_flush_seconds: float = 1.0
    #: `SUBSCRIPTION_ENDPOINT_HOSTS`: per-tenant allow-list of subscription endpoint hosts,
    #: `tenant-a=hook.lab.example,*.pharmacy.example;*=hooks.example.org` (app/domain/endpoints.py).
    subscription_endpoint_hosts: str = ""
    # Extra knobs for tests; never read from the environment.
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def dev_mode(self) -> bool:
        """Development tokens are used only when no OIDC setting is present at all."""
        return not (self.oidc_issuer or self.oidc_audience or self.oidc_jwks_url)

    @property
    def issuer(self) -> str:
        return self.oidc_issuer or DEV_ISSUER

    @property
    def audience(self) -> str:
        return self.oidc_audience or DEV_AUDIENCE

    @classmethod
    def from_env(cls, instance_path: Path | str | None = None) -> Settings:
        env = os.environ
        inst = Path(instance_path or env.get("ORDERS_INSTANCE_PATH") or Path.cwd() / "instance")
        db_url = env.get("DATABASE_URL") or f"sqlite:///{inst / 'orders.sqlite3'}"
        settings = cls(
            instance_path=inst,
            database_url=db_url,
            redis_url=env.get("REDIS_URL") or None,
            oidc_issuer=env.get("OIDC_ISSUER") or None,
            oidc_audience=env.get("OIDC_AUDIENCE") or None,
            oidc_jwks_url=env.get("OIDC_JWKS_URL") or None,
            oidc_client_id=env.get("OIDC_CLIENT_ID") or None,
            public_base_url=(env.get("PUBLIC_BASE_URL") or "").rstrip("/") or None,
            terminology_url=(env.get("TERMINOLOGY_URL") or "").rstrip("/") or None,
            trusted_hosts=tuple(
                h.strip() for h in (env.get("TRUSTED_HOSTS") or "").split(",") if h.strip()
            ),
            shutdown_drain_seconds=_seconds(env.get("SHUTDOWN_DRAIN_SECONDS"), 5.0),
            dev_mode_opt_in=(env.get(DEV_MODE_ENV) or "").strip().lower() in ("1", "true", "yes"),
            metrics_token=env.get("METRICS_TOKEN") or None,
            metrics_networks=parse_networks(
                env.get("METRICS_ALLOW_NETWORKS", DEFAULT_METRICS_NETWORKS)
            ),
            forwarded_allow=parse_forwarded_allow(
                env.get("FORWARDED_ALLOW_IPS", DEFAULT_FORWARDED_ALLOW_IPS)
            ),
            audit_enabled=_flag(env.get("AUDIT_TRAIL", "on"), "AUDIT_TRAIL"),
            audit_flush_seconds=_flush_seconds(env.get("AUDIT_FLUSH_SECONDS", "1")),
            subscription_endpoint_hosts=env.get("SUBSCRIPTION_ENDPOINT_HOSTS") or "",
        )
        settings.check()
        return settings

    def check(self) -> None:
        oidc = [self.oidc_issuer, self.oidc_audience, self.oidc_jwks_url]
        if any(oidc) and not all(oidc):
            raise ConfigurationError(
                "OIDC_ISSUER, OIDC_AUDIENCE and OIDC_JWKS_URL must be set together "
                "(or all left unset for development mode)"
            )
        if not self.dev_mode and not (self.public_base_url or self.trusted_hosts):
            # fullUrl, Location and paging links would follow any Host a client sends, so a
            # client following `next` could be sent (with its token) elsewhere (issue 11).
            raise ConfigurationError(
                "outside development mode set PUBLIC_BASE_URL (the absolute base of links) or "
                "TRUSTED_HOSTS (comma-separated host names requests may use)"
            )
        try:
            parse_hosts(self.subscription_endpoint_hosts)
        except ValueError as exc:
            raise ConfigurationError(f"SUBSCRIPTION_ENDPOINT_HOSTS: {exc}") from exc

    def check_dev_mode_opt_in(self) -> None:
        """Development mode must be asked for (`serve --dev` or ORDERS_DEV_MODE=1): a server
        started without OIDC_* by mistake must not come up trusting a local key file."""
        if self.dev_mode and not self.dev_mode_opt_in:
            raise ConfigurationError(
                "no OIDC_ISSUER/OIDC_AUDIENCE/OIDC_JWKS_URL is set, which is development mode "
                f"(tokens signed by a local key file); refusing to serve. Configure OIDC, or "
                f"pass --dev (or set {DEV_MODE_ENV}=1) to run development mode on purpose"
            )

    @cached_property
    def endpoint_policy(self) -> EndpointPolicy:
        return EndpointPolicy(self.dev_mode, parse_hosts(self.subscription_endpoint_hosts))


def _seconds(value: str | None, default: float) -> float:
    if value is None or not value.strip():
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigurationError(f"expected a number of seconds, got {value!r}") from None
    if not 0 <= seconds <= 300:
        raise ConfigurationError(f"seconds must be between 0 and 300, got {value!r}")
    return seconds


def parse_networks(text: str) -> tuple[Network, ...]:
    """`METRICS_ALLOW_NETWORKS`: comma-separated CIDRs or addresses; empty = token only."""
    try:
        return tuple(ipaddress.ip_network(p.strip()) for p in text.split(",") if p.strip())
    except ValueError as exc:
        raise ConfigurationError(f"METRICS_ALLOW_NETWORKS: {exc}") from exc


def parse_forwarded_allow(text: str) -> tuple[Network, ...]:
    """`FORWARDED_ALLOW_IPS` as gunicorn reads it: comma-separated addresses or CIDRs, `*`
    for any address."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if "*" in parts:
        return (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
    try:
        return tuple(ipaddress.ip_network(p) for p in parts)
    except ValueError as exc:
        raise ConfigurationError(f"FORWARDED_ALLOW_IPS: {exc}") from exc


def _flag(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("on", "true", "1", "yes"):
        return True
    if lowered in ("off", "false", "0", "no"):
        return False
    raise ConfigurationError(f"{name} must be on or off, not {value!r}")


def _flush_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError as exc:
        raise ConfigurationError(f"AUDIT_FLUSH_SECONDS must be a number: {value!r}") from exc
    if not 0.05 <= seconds <= 60:
        raise ConfigurationError("AUDIT_FLUSH_SECONDS must be between 0.05 and 60")
    return seconds
