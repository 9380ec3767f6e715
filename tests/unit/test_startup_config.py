"""Issue 11, items 11 and 12: what the server refuses to start with.

11: outside development mode, links must not follow the request's Host: PUBLIC_BASE_URL or
    TRUSTED_HOSTS is required, and with TRUSTED_HOSTS another Host is refused.
12: development mode (no OIDC_*) is only served when asked for (`serve --dev` or
    ORDERS_DEV_MODE=1), with a loud warning; `orders-service dev` (`make run`) asks for it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from app import cli, create_app
from app.settings import DEV_MODE_ENV, ConfigurationError, Settings

OIDC = {
    "OIDC_ISSUER": "https://idp.example/realms/x",
    "OIDC_AUDIENCE": "orders-service",
    "OIDC_JWKS_URL": "https://idp.example/realms/x/protocol/openid-connect/certs",
}
ENV = (
    *OIDC,
    "PUBLIC_BASE_URL",
    "TRUSTED_HOSTS",
    DEV_MODE_ENV,
    "DATABASE_URL",
    "REDIS_URL",
    "OIDC_CLIENT_ID",
    "FORWARDED_ALLOW_IPS",
)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ORDERS_INSTANCE_PATH", str(tmp_path))
    return monkeypatch


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    calls: list[tuple[str, int]] = []
    for server in ("_run_granian", "_run_gunicorn"):  # whichever `serve` runs, nothing starts
        monkeypatch.setattr(cli, server, lambda host, port, *_: calls.append((host, port)))
    return calls


# ---------------------------------------------------------------- item 11
def test_oidc_without_public_base_url_or_trusted_hosts_refuses_to_start(
    env: pytest.MonkeyPatch,
) -> None:
    for name, value in OIDC.items():
        env.setenv(name, value)
    with pytest.raises(ConfigurationError, match="PUBLIC_BASE_URL"):
        Settings.from_env()


@pytest.mark.parametrize(
    ("name", "value"),
    [("PUBLIC_BASE_URL", "https://orders.example"), ("TRUSTED_HOSTS", "orders.example")],
)
def test_either_setting_is_enough(env: pytest.MonkeyPatch, name: str, value: str) -> None:
    for key, oidc_value in OIDC.items():
        env.setenv(key, oidc_value)
    env.setenv(name, value)
    assert Settings.from_env().dev_mode is False


def test_serve_refuses_oidc_without_a_link_base(
    env: pytest.MonkeyPatch, served: list[tuple[str, int]]
) -> None:
    for key, value in OIDC.items():
        env.setenv(key, value)
    result = CliRunner().invoke(cli.main, ["serve"])
    assert result.exit_code != 0
    assert "PUBLIC_BASE_URL" in result.output
    assert served == []


def test_trusted_hosts_refuse_another_host(tmp_path: Path) -> None:
    settings = Settings(
        instance_path=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'x.db'}",
        trusted_hosts=("orders.example", "orders.example:8443"),
        **{k.lower(): v for k, v in OIDC.items()},
    )
    app = create_app(settings)
    client = app.test_client()
    ok = client.get("/fhir/R4/metadata", headers={"Host": "orders.example"})
    assert ok.status_code == 200
    for path in ("/fhir/R4/metadata", "/fhir/R4/Patient", "/api/v1/orders"):
        bad = client.get(path, headers={"Host": "attacker.example"})
        assert bad.status_code == 400, (path, bad.status_code)
        assert bad.is_json, path  # in the face's error shape, not HTML


def test_development_mode_keeps_the_request_host(tmp_path: Path) -> None:
    settings = Settings(instance_path=tmp_path, database_url=f"sqlite:///{tmp_path / 'x.db'}")
    settings.check()
    app = create_app(settings)
    assert app.test_client().get("/fhir/R4/metadata", headers={"Host": "a.test"}).status_code == 200


# ---------------------------------------------------------------- item 12
def test_serve_refuses_development_mode_without_opt_in(
    env: pytest.MonkeyPatch, served: list[tuple[str, int]]
) -> None:
    result = CliRunner().invoke(cli.main, ["serve"])
    assert result.exit_code != 0
    assert "--dev" in result.output and DEV_MODE_ENV in result.output
    assert served == []


def test_serve_dev_flag_runs_with_a_loud_warning(
    env: pytest.MonkeyPatch, served: list[tuple[str, int]]
) -> None:
    result = CliRunner().invoke(cli.main, ["serve", "--dev", "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert served == [("127.0.0.1", 8123)]
    assert "DEVELOPMENT MODE" in result.output
    assert "ADMIN tokens for any" in result.output


def test_serve_runs_granian_unless_gunicorn_is_asked_for(
    env: pytest.MonkeyPatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """granian is the default (docs/decisions.md); both get the drain seconds."""
    env.setenv("SHUTDOWN_DRAIN_SECONDS", "7")
    ran: list[tuple[str, float]] = []
    for server in ("granian", "gunicorn"):
        monkeypatch.setattr(
            cli, f"_run_{server}", lambda *args, s=server: ran.append((s, args[-1]))
        )
    for args in (["serve", "--dev"], ["serve", "--dev", "--server", "gunicorn"]):
        result = CliRunner().invoke(cli.main, args)
        assert result.exit_code == 0, result.output
    assert ran == [("granian", 7.0), ("gunicorn", 7.0)]


def test_dev_mode_env_variable_is_the_same_opt_in(
    env: pytest.MonkeyPatch, served: list[tuple[str, int]]
) -> None:
    env.setenv(DEV_MODE_ENV, "1")
    result = CliRunner().invoke(cli.main, ["serve"])
    assert result.exit_code == 0, result.output
    assert served and "DEVELOPMENT MODE" in result.output


def test_wsgi_entry_point_refuses_development_mode_without_opt_in(
    env: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigurationError, match=DEV_MODE_ENV):
        create_app()


def test_development_app_logs_the_warning(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    env.setenv(DEV_MODE_ENV, "1")
    with caplog.at_level(logging.WARNING, logger="app"):
        app = create_app()
    app.extensions["orders"].close()
    assert any("DEVELOPMENT MODE" in r.getMessage() for r in caplog.records)


def test_make_run_still_works(env: pytest.MonkeyPatch, served: list[tuple[str, int]]) -> None:
    """`make run` is `orders-service dev`: it opts in itself (migrates, seeds, serves)."""
    result = CliRunner().invoke(cli.main, ["dev", "--port", "8124"])
    assert result.exit_code == 0, result.output
    assert served == [("127.0.0.1", 8124)]
    assert "export TOKEN=" in result.output


def test_forwarded_allow_ips_reads_as_gunicorn_reads_it(env: pytest.MonkeyPatch) -> None:
    """`FORWARDED_ALLOW_IPS`: loopback by default, addresses or CIDRs, `*` for any; a typo
    stops the start instead of silently trusting nobody (or everybody)."""
    default = Settings.from_env().forwarded_allow
    assert [str(n) for n in default] == ["127.0.0.1/32", "::1/128"]
    env.setenv("FORWARDED_ALLOW_IPS", "10.0.0.0/8, 192.168.1.7")
    assert [str(n) for n in Settings.from_env().forwarded_allow] == [
        "10.0.0.0/8",
        "192.168.1.7/32",
    ]
    env.setenv("FORWARDED_ALLOW_IPS", "*")
    assert [str(n) for n in Settings.from_env().forwarded_allow] == ["0.0.0.0/0", "::/0"]
    env.setenv("FORWARDED_ALLOW_IPS", "10.0.0.300")
    with pytest.raises(ConfigurationError, match="FORWARDED_ALLOW_IPS"):
        Settings.from_env()
