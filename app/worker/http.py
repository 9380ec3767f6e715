"""The rest-hook POST, with the outgoing-call rules (docs/events.md, "Safety"):

- a connect timeout and a total read timeout (the subscription's, at most 30 s);
- redirects are never followed (a 3xx is a failure: the endpoint must be the real one);
- the response body is never read or logged, only its status code;
- the subscription's headers are sent as given, and never logged.
"""

from __future__ import annotations

import logging

import requests

from app.services.delivery import Outcome

log = logging.getLogger("orders.worker")
CONNECT_TIMEOUT = 3.0


class HttpSender:
    def __init__(self) -> None:
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies or .netrc credentials from the environment

    def __call__(self, url: str, body: bytes, headers: list[str], timeout: float) -> Outcome:
        sent = {"Content-Type": "application/fhir+json"}
        for h in headers:
            name, _, value = h.partition(":")
            sent[name.strip()] = value.strip()
        try:
            resp = self.session.post(
                url,
                data=body,
                headers=sent,
                timeout=(min(CONNECT_TIMEOUT, timeout), timeout),
                allow_redirects=False,
                stream=True,  # the body is not downloaded
            )
        except requests.RequestException as exc:
            return Outcome(False, error=type(exc).__name__)
        status = resp.status_code
        resp.close()
        return Outcome(200 <= status < 300, status=status)

    def close(self) -> None:
        self.session.close()
