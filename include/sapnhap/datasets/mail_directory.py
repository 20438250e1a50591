"""Mail directory (danh bạ thư điện tử công vụ, R18): the schema and the checks of its batches.

Adding a dataset is adding a file like this one and registering it in ``sapnhap/datasets/__init__.py``
(see docs/architecture.md, "A dataset in one file").
"""

from __future__ import annotations

from sapnhap.datasets.schema import Column, Dataset

MAIL_DIRECTORY = Dataset(
    name="mail_directory",
    title_vi="Danh bạ thư điện tử công vụ",
    natural_key=("address",),
    record_date="created_date",
    columns=(
        Column("address", "text", required=True, description="Địa chỉ thư điện tử"),
        Column("owner_full_name", "text", required=True, pii=True, description="Họ và tên chủ hộp thư"),
        Column("owner_citizen_id", "citizen_id", pii=True, description="Số CCCD chủ hộp thư (nếu có)"),
        Column("owner_birth_date", "date", description="Ngày sinh chủ hộp thư (nếu có)"),
        Column("unit_level", "text", required=True, description="Cấp đơn vị: commune/district"),
        Column("old_commune_code", "code5", description="Mã xã cũ của đơn vị (trống nếu cấp huyện)"),
        Column("unit_district_code", "code3", description="Mã huyện cũ của đơn vị"),
        Column("address_detail", "text", description="Nơi làm việc: thôn/tổ dân phố (nếu có)"),
        Column("aliases", "text", description="Bí danh, phân cách bằng ';'"),
        Column("created_date", "date", required=True, description="Ngày tạo hộp thư"),
        Column("updated_at", "timestamp"),
    ),
)

DATASET = MAIL_DIRECTORY

# Lower-case only: the platform compares addresses as lower-case text.
EMAIL_REGEX = r"^[a-z0-9](?:[a-z0-9._+-]*[a-z0-9])?@[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+$"


def transformed_checks(generic: list[dict]) -> list[dict]:
    """The transformed suite of mail_directory: the generic checks (sapnhap.quality.suites), then its own.

    Addresses and aliases, the unit level; the generic unit checks adapted to district units.
    """
    # Imported here: the quality package imports this registry (a cycle at import time), and
    # reading a schema should not load Great Expectations.
    from sapnhap.quality.checks import citizen_id_checks, district_unit_overrides, expectation, unit_level_checks

    return [
        *district_unit_overrides(generic),
        expectation(
            "expect_column_values_to_match_regex",
            {"column": "address", "regex": EMAIL_REGEX},
            check="format.address",
            severity="block",
            notes="R18: the forwarding map is keyed by the old address; a malformed one cannot receive mail.",
            reason_vi="Địa chỉ thư điện tử không đúng định dạng.",
            fix_vi="Sửa địa chỉ thư trên hệ thống thư điện tử cũ.",
            column="address",
        ),
        expectation(
            "expect_column_values_to_match_regex",
            {"column": "aliases", "regex": "^" + EMAIL_REGEX[1:-1] + "(?:;" + EMAIL_REGEX[1:-1] + ")*$"},
            check="format.aliases",
            severity="warn",
            notes="Aliases also get forwarded; a malformed one is reported but the mailbox still loads.",
            reason_vi="Bí danh thư điện tử không đúng định dạng (các địa chỉ phân cách bằng ';').",
            fix_vi="Sửa bí danh trên hệ thống thư điện tử cũ.",
            column="aliases",
        ),
        *unit_level_checks(),
        # Format only: the province-prefix helper (sapnhap.quality.helpers) knows the citizen-ID
        # columns of the older datasets; owner_citizen_id would be skipped there.
        *citizen_id_checks("owner_citizen_id", severity="warn", with_birth=False)[:1],
    ]
