"""Topics (which status change is which event, filters) and the endpoint rule, no I/O."""

from __future__ import annotations

import pytest

from app.domain.endpoints import EndpointPolicy, parse_hosts
from app.domain.topics import facts, load_topics, matches, parse_filter, topics_fired

T = "urn:orders-service:SubscriptionTopic/"


@pytest.mark.parametrize(
    ("rtype", "before", "after", "expected"),
    [
        ("ServiceRequest", None, "draft", ["order-created"]),
        ("MedicationRequest", "draft", "active", ["order-activated"]),
        ("ServiceRequest", "active", "on-hold", ["order-held"]),
        ("ServiceRequest", "on-hold", "active", ["order-resumed"]),
        ("ServiceRequest", "active", "revoked", ["order-cancelled"]),
        ("MedicationRequest", "draft", "cancelled", ["order-cancelled"]),
        ("MedicationRequest", "active", "stopped", ["order-cancelled"]),
        ("NutritionOrder", "completed", "entered-in-error", ["order-cancelled"]),
        ("ServiceRequest", "active", "completed", ["order-completed"]),
        ("ServiceRequest", "draft", "draft", []),  # an edit, not an event
        ("ServiceRequest", "active", "active", []),
        ("Task", None, "requested", ["task-status-changed"]),
        ("Task", "requested", "in-progress", ["task-status-changed"]),
        ("Task", "requested", "requested", []),
        ("DetectedIssue", None, "preliminary", []),
        ("Patient", None, None, []),
    ],
)
def test_each_status_change_fires_its_topic(
    rtype: str, before: str | None, after: str | None, expected: list[str]
) -> None:
    assert [t.id for t in topics_fired(rtype, before, after)] == expected


def test_every_issue_topic_is_shipped_with_filters_its_resources_have() -> None:
    ids = {t.id for t in load_topics().values()}
    assert ids == {
        "order-created",
        "order-activated",
        "order-held",
        "order-resumed",
        "order-cancelled",
        "order-completed",
        "task-status-changed",
    }


def test_filters_parse_match_and_refuse_unknown_parameters() -> None:
    topic = load_topics()[T + "order-activated"]
    order = {
        "subject": {"reference": "Patient/p1"},
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "108252007"}]}],
        "performer": [{"reference": "Organization/lab"}],
        "requester": {"reference": "Practitioner/dr"},
    }
    known = facts("ServiceRequest", order)
    ok = [
        parse_filter(topic, "ServiceRequest?patient=p1"),
        parse_filter(topic, "?category=http://snomed.info/sct|108252007,363679005"),
        parse_filter(topic, "performer=Organization/lab&requester=Practitioner/dr"),
    ]
    assert matches(ok, "ServiceRequest", known)
    assert not matches(ok, "MedicationRequest", known)  # the first filter names a type
    assert not matches([parse_filter(topic, "patient=p2")], "ServiceRequest", known)
    for bad in ("ServiceRequest?code=1", "Task?patient=p1", "ServiceRequest?", "patient="):
        with pytest.raises(ValueError):
            parse_filter(topic, bad)


@pytest.mark.parametrize(
    ("dev", "url", "allowed"),
    [
        (True, "http://127.0.0.1:9/hook", True),
        (True, "http://localhost/hook", True),
        (True, "http://[::1]:8080/", True),
        (True, "http://10.0.0.8/hook", False),  # private, and not loopback
        (True, "https://hook.lab.example/x", True),  # allow-listed for tenant t
        (True, "https://other.example/x", False),
        (False, "http://127.0.0.1:9/hook", False),  # http never outside development
        (False, "https://127.0.0.1/hook", False),  # loopback only in development
        (False, "https://hook.lab.example/x", True),
        (False, "https://a.pharmacy.example/x", True),
        (False, "https://pharmacy.example.evil/x", False),
        (False, "https://user:pw@hook.lab.example/x", False),
        (False, "ftp://hook.lab.example/x", False),
        (False, "https://hook.lab.example:99999/x", False),
        (False, "not a url", False),
    ],
)
def test_endpoint_policy(dev: bool, url: str, allowed: bool) -> None:
    policy = EndpointPolicy(dev, parse_hosts("t=hook.lab.example,*.pharmacy.example"))
    assert (policy.problem("t", url) is None) is allowed, policy.problem("t", url)


def test_the_allow_list_is_per_tenant_with_a_star_for_all() -> None:
    hosts = parse_hosts("a=one.example; *=all.example")
    policy = EndpointPolicy(False, hosts)
    assert policy.problem("a", "https://one.example/") is None
    assert policy.problem("b", "https://one.example/") is not None
    assert policy.problem("b", "https://all.example/") is None
    with pytest.raises(ValueError):
        parse_hosts("no-equals-sign")
