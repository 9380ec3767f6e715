"""Server ids named in bulk (`new_ids`, the audit trail's flusher): the same ULID ids as
`new_id`, unique and strictly increasing, however many and wherever their run crosses the
1,024-value block whose head is encoded once."""

from __future__ import annotations

import time

import pytest
from ulid import ULID

from app.domain.ids import _consecutive, is_valid_fhir_id, new_id, new_ids


def test_a_batch_is_valid_unique_increasing_ids_of_now() -> None:
    before = time.time()
    ids = new_ids("AuditEvent", 3000)
    after = time.time()
    assert len(set(ids)) == 3000
    assert ids == sorted(ids)
    for event_id in ids[:5] + ids[-5:]:
        prefix, value = event_id.split("-", 1)
        assert prefix == "audit" and is_valid_fhir_id(event_id)
        assert before - 0.002 <= ULID.from_str(value).timestamp <= after + 0.002
    assert new_id("AuditEvent").split("-")[0] == "audit"


@pytest.mark.parametrize("low", [0, 1000, 1023, 2047, (1 << 79) - 5])
def test_each_id_is_the_ulid_of_its_value_across_block_boundaries(low: int) -> None:
    start = (1_700_000_000_000 << 80) | low
    ids = _consecutive("audit", start, 40)
    assert ids == [f"audit-{ULID.from_int(start + i)}" for i in range(40)]


def test_two_batches_of_one_millisecond_do_not_share_ids() -> None:
    first, second = new_ids("AuditEvent", 500), new_ids("AuditEvent", 500)
    assert not set(first) & set(second)
