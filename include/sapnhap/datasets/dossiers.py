"""Dossiers (hồ sơ thủ tục hành chính): the schema and the checks of its batches.

Adding a dataset is adding a file like this one and registering it in ``sapnhap/datasets/__init__.py``
(see docs/architecture.md, "A dataset in one file").
"""

from __future__ import annotations

from sapnhap.datasets.schema import Column, Dataset

DOSSIER_STATUSES = ("received", "processing", "completed", "returned", "cancelled")

DOSSIERS = Dataset(
    name="dossiers",
    title_vi="Hồ sơ thủ tục hành chính",
    natural_key=("dossier_code",),
    record_date="received_date",
    statuses=DOSSIER_STATUSES,
    columns=(
        Column("dossier_code", "text", required=True, description="Mã hồ sơ"),
        Column("procedure_code", "text", description="Mã thủ tục hành chính"),
        Column("procedure_name", "text", description="Tên thủ tục"),
        Column("applicant_name", "text", pii=True, description="Người nộp"),
        Column("applicant_citizen_id", "citizen_id", pii=True, description="Số CCCD người nộp"),
        Column("old_commune_code", "code5", description="Mã xã cũ nơi tiếp nhận"),
        Column("address_detail", "text", description="Thôn/xóm/tổ dân phố, đường phố"),
        Column("received_date", "date", required=True, description="Ngày tiếp nhận"),
        Column("due_date", "date", description="Ngày hẹn trả"),
        Column("completed_date", "date", description="Ngày trả kết quả"),
        Column("status", "text", required=True, description="Trạng thái"),
        Column("updated_at", "timestamp", description="Cập nhật lần cuối ở hệ thống cũ"),
    ),
)

DATASET = DOSSIERS


def transformed_checks(generic: list[dict]) -> list[dict]:
    """The transformed suite of dossiers: the generic checks (sapnhap.quality.suites), then its own.

    Statuses, the order of the dossier's dates, the applicant's citizen ID.
    """
    # Imported here: the quality package imports this registry (a cycle at import time), and
    # reading a schema should not load Great Expectations.
    from great_expectations.expectations.row_conditions import Column as Col

    from sapnhap.quality.checks import RAW_SUFFIX, after, citizen_id_checks, expectation

    return [
        *generic,
        expectation(
            "expect_column_values_to_be_in_set",
            {"column": "status", "value_set": list(DOSSIER_STATUSES)},
            check="enum.status",
            severity="block",
            notes="Statuses are mapped to the canonical set per source; an unmapped status cannot be reported on.",
            reason_vi="Trạng thái hồ sơ không thuộc danh mục chuẩn.",
            fix_vi="Bổ sung ánh xạ trạng thái trong tệp cấu hình nguồn (values.status).",
            column="status",
        ),
        after(
            "due_date", "received_date", check="order.due_date",
            notes="A dossier cannot be due before it was received (R17 processing history).",
            reason_vi="Ngày hẹn trả sớm hơn ngày tiếp nhận.",
            fix_vi="Sửa ngày tiếp nhận hoặc ngày hẹn trả trên hệ thống cũ.",
        ),
        after(
            "completed_date", "received_date", check="order.completed_date",
            notes="A dossier cannot be completed before it was received.",
            reason_vi="Ngày trả kết quả sớm hơn ngày tiếp nhận.",
            fix_vi="Sửa ngày tiếp nhận hoặc ngày trả kết quả trên hệ thống cũ.",
        ),
        expectation(
            "expect_column_values_to_not_be_null",
            {
                "column": "completed_date",
                "row_condition": ((Col("status") == "completed") & Col("completed_date" + RAW_SUFFIX).is_null()).dict(),
            },
            check="completed_has_date",
            severity="warn",
            notes="A completed dossier should say when its result was returned; loaded anyway, the date is informative.",
            reason_vi="Hồ sơ đã hoàn thành nhưng không có ngày trả kết quả.",
            fix_vi="Bổ sung ngày trả kết quả trên hệ thống cũ.",
            column="completed_date",
        ),
        *citizen_id_checks("applicant_citizen_id", severity="warn", with_birth=False),
    ]
