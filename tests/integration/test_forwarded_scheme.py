"""Behind a TLS-terminating proxy on the same host, links say `https` under both servers
(issue 13): gunicorn believes `X-Forwarded-Proto` and kin from `FORWARDED_ALLOW_IPS`
(loopback by default), and granian's workers apply the same rule
(app/web/granian_server.py). Without `PUBLIC_BASE_URL`, `fullUrl`, `Location` and paging
links come from the request."""

from __future__ import annotations

import contextlib
import json

from tests.served import Served, get

CASES = [
    ({}, "http"),
    ({"X-Forwarded-Proto": "https"}, "https"),
    ({"X-Forwarded-SSL": "on"}, "https"),
    ({"X-Forwarded-Proto": "http"}, "http"),
]


def test_a_local_proxys_scheme_headers_decide_the_links_scheme(served: Served) -> None:
    token = served.token("CLINICIAN", tenant="t1")
    seen = []
    for forwarded, _scheme in CASES:  # one server for every case: each start takes seconds
        headers = {"Authorization": f"Bearer {token}", "X-Tenant-ID": "t1", **forwarded}
        with contextlib.closing(served.connection()) as conn:
            conn.request("GET", "/fhir/R4/ServiceRequest?_count=1", headers=headers)
            resp = conn.getresponse()
            assert resp.status == 200
            links = {link["relation"]: link["url"] for link in json.loads(resp.read())["link"]}
        seen.append(links["self"].split(":", 1)[0])
    assert seen == [scheme for _forwarded, scheme in CASES]

    contradictory = {"X-Forwarded-Proto": "https", "X-Forwarded-SSL": "off"}
    with contextlib.closing(served.connection()) as conn:
        assert get(conn, "/healthz", contradictory).status == 400
