"""Accounts (tài khoản người dùng và phân quyền): the schema and the checks of its batches.

Adding a dataset is adding a file like this one and registering it in ``sapnhap/datasets/__init__.py``
(see docs/architecture.md, "A dataset in one file").
"""

from __future__ import annotations

from sapnhap.datasets.schema import Column, Dataset

ACCOUNT_STATUSES = ("active", "locked", "disabled")

# An account is unique per legacy application, not per source database (one district database
# often holds the users of several applications). ``system_code`` names the application with a
# province-wide code (the source file maps the legacy value onto it), so (system_code, username)
# is a global natural key and no two districts' "admin" accounts collide on the platform.
ACCOUNTS = Dataset(
    name="accounts",
    title_vi="Tài khoản người dùng và phân quyền",
    natural_key=("system_code", "username"),
    record_date="created_date",
    statuses=ACCOUNT_STATUSES,
    columns=(
        Column("system_code", "text", required=True, description="Mã ứng dụng cũ (duy nhất toàn tỉnh)"),
        Column("username", "text", required=True, description="Tên đăng nhập"),
        Column("citizen_id", "citizen_id", pii=True, description="Số CCCD của cán bộ (nếu có)"),
        Column("full_name", "text", required=True, pii=True, description="Họ và tên"),
        Column("birth_date", "date", description="Ngày sinh"),
        Column("unit_level", "text", required=True, description="Cấp đơn vị: commune/district"),
        Column("old_commune_code", "code5", description="Mã xã cũ của đơn vị (trống nếu cấp huyện)"),
        Column("unit_district_code", "code3", description="Mã huyện cũ của đơn vị"),
        # Where the official works (thôn/tổ dân phố): lets the split-commune rules place the account.
        Column("address_detail", "text", description="Nơi làm việc: thôn/tổ dân phố (nếu có)"),
        Column("roles", "text", description="Vai trò/quyền, phân cách bằng ';'"),
        Column("status", "text", required=True, description="Trạng thái: active/locked/disabled"),
        Column("last_login", "timestamp", description="Lần đăng nhập cuối"),
        Column("created_date", "date", required=True, description="Ngày tạo tài khoản"),
        Column("updated_at", "timestamp"),
    ),
)

DATASET = ACCOUNTS


def transformed_checks(generic: list[dict]) -> list[dict]:
    """The transformed suite of accounts: the generic checks (sapnhap.quality.suites), then its own.

    Statuses, the province-wide key, the unit level; the generic unit checks adapted to district units.
    """
    # Imported here: the quality package imports this registry (a cycle at import time), and
    # reading a schema should not load Great Expectations.
    from sapnhap.quality.checks import citizen_id_checks, district_unit_overrides, expectation, unit_level_checks

    return [
        *district_unit_overrides(generic),
        expectation(
            "expect_column_values_to_be_in_set",
            {"column": "status", "value_set": list(ACCOUNT_STATUSES)},
            check="enum.status",
            severity="block",
            notes="Account statuses are mapped per source; the permission review depends on knowing which accounts are live.",
            reason_vi="Trạng thái tài khoản không thuộc danh mục chuẩn (active/locked/disabled).",
            fix_vi="Bổ sung ánh xạ trạng thái trong tệp cấu hình nguồn (values.status).",
            column="status",
        ),
        expectation(
            "expect_column_values_to_match_regex",
            {"column": "system_code", "regex": r"^[a-z][a-z0-9_]{2,62}$"},
            check="format.system_code",
            severity="block",
            notes=(
                "system_code is half of the province-wide natural key; a legacy value left unmapped "
                "('MOTCUA') could collide with another district's application of the same name."
            ),
            reason_vi="Mã ứng dụng chưa được ánh xạ sang mã toàn tỉnh.",
            fix_vi="Bổ sung ánh xạ mã ứng dụng trong tệp cấu hình nguồn (values.system_code).",
            column="system_code",
        ),
        expectation(
            "expect_column_values_to_match_regex",
            {"column": "username", "regex": r"^\S+$"},
            check="format.username",
            severity="block",
            notes="A user name with blanks is a data-entry error; it would not log in anywhere.",
            reason_vi="Tên đăng nhập rỗng hoặc có khoảng trắng.",
            fix_vi="Sửa tên đăng nhập trên hệ thống cũ.",
            column="username",
        ),
        *unit_level_checks(),
        *citizen_id_checks("citizen_id", severity="warn", with_birth=False),
    ]
