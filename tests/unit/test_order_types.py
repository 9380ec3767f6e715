from __future__ import annotations

import pytest

from app.domain.order_types import ORDER_TYPES, order_type_of


@pytest.mark.parametrize(
    ("name", "resource", "code"),
    [
        ("medication", "MedicationRequest", None),
        ("diet", "NutritionOrder", None),
        ("laboratory", "ServiceRequest", "108252007"),
        ("lab", "ServiceRequest", "108252007"),
        ("radiology", "ServiceRequest", "363679005"),
        ("procedure", "ServiceRequest", "387713003"),
        ("referral", "ServiceRequest", "3457005"),
        ("nursing", "ServiceRequest", "nursing"),
        ("activity", "ServiceRequest", "activity"),
    ],
)
def test_each_order_type_maps_to_its_resource_and_category(
    name: str, resource: str, code: str | None
) -> None:
    t = ORDER_TYPES[name]
    assert t.resource_type == resource
    assert t.category_code == code
    stored = {"resourceType": resource, "category": t.category()}
    back = order_type_of(stored)
    assert back is not None
    assert back.resource_type == resource
    assert back.category_code == code


def test_unknown_category_has_no_order_type() -> None:
    assert (
        order_type_of({"resourceType": "ServiceRequest", "category": [{"coding": [{"code": "x"}]}]})
        is None
    )
