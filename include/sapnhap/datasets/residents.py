"""Residents (nhân khẩu): the schema and the checks of its batches.

Adding a dataset is adding a file like this one and registering it in ``sapnhap/datasets/__init__.py``
(see docs/architecture.md, "A dataset in one file").
"""

from __future__ import annotations

from sapnhap.datasets.schema import Column, Dataset

GENDERS = ("nam", "nu")

RESIDENTS = Dataset(
    name="residents",
    title_vi="Nhân khẩu",
    natural_key=("citizen_id",),
    record_date="registered_date",
    columns=(
        Column("citizen_id", "citizen_id", required=True, pii=True, description="Số CCCD 12 số"),
        Column("full_name", "text", required=True, pii=True, description="Họ và tên"),
        Column("birth_date", "date", required=True, description="Ngày sinh"),
        Column("gender", "text", required=True, description="Giới tính: nam/nu"),
        Column("household_code", "text", description="Mã hộ"),
        Column("relation_to_head", "text", description="Quan hệ với chủ hộ"),
        Column("old_commune_code", "code5", description="Mã xã cũ nơi thường trú"),
        Column("address_detail", "text", description="Thôn/xóm/tổ dân phố, đường phố"),
        Column("registered_date", "date", description="Ngày đăng ký thường trú"),
        Column("updated_at", "timestamp"),
    ),
)

DATASET = RESIDENTS


def transformed_checks(generic: list[dict]) -> list[dict]:
    """The transformed suite of residents: the generic checks (sapnhap.quality.suites), then its own.

    Gender in the canonical set; the citizen ID agrees with gender and birth date (blocking).
    """
    # Imported here: the quality package imports this registry (a cycle at import time), and
    # reading a schema should not load Great Expectations.
    from sapnhap.quality.checks import citizen_id_checks, expectation

    return [
        *generic,
        expectation(
            "expect_column_values_to_be_in_set",
            {"column": "gender", "value_set": list(GENDERS)},
            check="enum.gender",
            severity="block",
            notes="Genders are mapped to 'nam'/'nu' per source; the CCCD check depends on it.",
            reason_vi="Giới tính không thuộc danh mục chuẩn (nam/nu).",
            fix_vi="Bổ sung ánh xạ giới tính trong tệp cấu hình nguồn (values.gender) hoặc sửa trên hệ thống cũ.",
            column="gender",
        ),
        *citizen_id_checks("citizen_id", severity="block", with_birth=True),
    ]
