"""Households (hộ gia đình): the schema and the checks of its batches.

Adding a dataset is adding a file like this one and registering it in ``sapnhap/datasets/__init__.py``
(see docs/architecture.md, "A dataset in one file").
"""

from __future__ import annotations

from sapnhap.datasets.schema import Column, Dataset

HOUSEHOLDS = Dataset(
    name="households",
    title_vi="Hộ gia đình",
    natural_key=("household_code",),
    record_date="registered_date",
    columns=(
        Column("household_code", "text", required=True, description="Mã hộ"),
        Column("head_citizen_id", "citizen_id", pii=True, description="CCCD chủ hộ"),
        Column("old_commune_code", "code5", description="Mã xã cũ"),
        Column("address_detail", "text", description="Thôn/xóm/tổ dân phố, đường phố"),
        Column("registered_date", "date"),
        Column("updated_at", "timestamp"),
    ),
)

DATASET = HOUSEHOLDS


def transformed_checks(generic: list[dict]) -> list[dict]:
    """The transformed suite of households: the generic checks (sapnhap.quality.suites), then its own.

    The head's citizen ID (warns only).
    """
    # Imported here: the quality package imports this registry (a cycle at import time), and
    # reading a schema should not load Great Expectations.
    from sapnhap.quality.checks import citizen_id_checks

    return [*generic, *citizen_id_checks("head_citizen_id", severity="warn", with_birth=False)]
