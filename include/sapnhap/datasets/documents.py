"""Documents (văn bản đến/đi, R16): the schema and the checks of its batches.

The helper columns the checks read are derived by :mod:`sapnhap.documents`.

Adding a dataset is adding a file like this one and registering it in ``sapnhap/datasets/__init__.py``
(see docs/architecture.md, "A dataset in one file").
"""

from __future__ import annotations

from sapnhap.datasets.schema import Column, Dataset, agency_columns

DOCUMENT_DIRECTIONS = ("incoming", "outgoing")
SECURITY_LEVELS = ("normal", "confidential", "secret", "top_secret")
DOCUMENT_STATUSES = ("registered", "processing", "completed", "archived", "withdrawn")


# Văn bản đến/đi (R16). document_code is the province-wide key the source file builds (system
# prefix + the legacy id): one outgoing document received by three communes is three records.
DOCUMENTS = Dataset(
    name="documents",
    title_vi="Văn bản đến/đi",
    natural_key=("document_code",),
    record_date="issued_date",
    has_unit=False,
    statuses=DOCUMENT_STATUSES,
    agency_roles=(
        ("issuer_code", ("issued_date",), "issuer"),
        ("receiver_code", ("received_date", "issued_date"), "receiver"),
    ),
    columns=(
        Column("document_code", "text", required=True, description="Mã văn bản (duy nhất toàn tỉnh)"),
        Column("direction", "text", required=True, description="Văn bản đến (incoming) / đi (outgoing)"),
        Column("number_symbol", "text", required=True, description="Số, ký hiệu văn bản"),
        Column("document_type", "text", required=True, description="Loại văn bản (Quyết định, Công văn...)"),
        Column("issuer_code", "text", required=True, description="Mã cơ quan ban hành (cơ cấu cũ)"),
        Column("issuer_name", "text", description="Tên cơ quan ban hành (cơ cấu cũ)"),
        Column("receiver_code", "text", description="Mã nơi nhận (cơ cấu cũ)"),
        Column("receiver_name", "text", description="Tên nơi nhận (cơ cấu cũ)"),
        Column("issued_date", "date", required=True, description="Ngày ban hành"),
        Column("received_date", "date", description="Ngày đến (văn bản đến)"),
        Column("summary", "text", required=True, description="Trích yếu nội dung"),
        Column("signer", "text", pii=True, description="Người ký"),
        Column("security_level", "text", required=True, description="Độ mật: normal/confidential/secret/top_secret"),
        Column("status", "text", required=True, description="Trạng thái xử lý"),
        Column("attachment_paths", "text", description="Tệp đính kèm ở hệ thống cũ (đường dẫn, phân cách bằng ';')"),
        Column("updated_at", "timestamp", description="Cập nhật lần cuối ở hệ thống cũ"),
        *agency_columns("issuer", "cơ quan ban hành"),
        *agency_columns("receiver", "nơi nhận"),
        Column("agency_crosswalk_version", "text", derived=True, description="Phiên bản bảng chuyển đổi cơ quan"),
        Column("attachments", "text", derived=True,
               description="Tệp đính kèm đã sao lưu: JSON [{path, key, sha256, bytes}] (khoá trong kho lưu trữ)"),
    ),
)

DATASET = DOCUMENTS


def transformed_checks(generic: list[dict]) -> list[dict]:
    """The transformed suite of documents: the generic checks (sapnhap.quality.suites), then its own.

    Numbering, dates and the agencies of the new structure (R16).
    """
    # Imported here: the quality package imports this registry (a cycle at import time), and
    # reading a schema should not load Great Expectations.
    from great_expectations.expectations.row_conditions import Column as Col

    from sapnhap.documents import (
        H_ISSUED_DATE_PLAUSIBLE,
        H_NUMBER_PER_ISSUER_YEAR,
        H_OTHER_AGENCY_STATUS,
        H_OWN_AGENCY_STATUS,
    )
    from sapnhap.quality.checks import RAW_SUFFIX, after, enum, expectation

    return [
        *generic,
        enum("direction", DOCUMENT_DIRECTIONS,
             notes="Incoming and outgoing documents are registered and re-mapped differently (whose unit a document is).",
             reason_vi="Loại sổ văn bản (đến/đi) không thuộc danh mục chuẩn."),
        enum("security_level", SECURITY_LEVELS,
             notes="The security level decides who may read a document on the platform; an unmapped level cannot be enforced.",
             reason_vi="Độ mật của văn bản không thuộc danh mục chuẩn."),
        enum("status", DOCUMENT_STATUSES,
             notes="Statuses are mapped to the canonical set per source; follow-up of direction reports on them.",
             reason_vi="Trạng thái xử lý văn bản không thuộc danh mục chuẩn."),
        expectation(
            "expect_column_values_to_be_unique",
            {"column": H_NUMBER_PER_ISSUER_YEAR},
            check="unique.number_per_issuer_year",
            severity="block",
            notes=(
                "Decree 30/2020 numbers documents per issuing agency and calendar year: one number and symbol of one "
                "issuer in one year is one document (an incoming one once per receiving unit). Two records sharing it "
                "are a double registration or a typing error, and lookup by number would return the wrong one. Checked "
                "within the batch (the first sync reads every document)."
            ),
            reason_vi="Trùng số, ký hiệu văn bản của cùng cơ quan ban hành trong cùng năm.",
            fix_vi="Đối chiếu sổ đăng ký văn bản, sửa số/ký hiệu hoặc huỷ bản đăng ký trùng trên hệ thống cũ.",
            column="number_symbol",
        ),
        after(
            "received_date", "issued_date", check="order.received_date",
            notes="A document cannot arrive before it was issued.",
            reason_vi="Ngày đến sớm hơn ngày ban hành văn bản.",
            fix_vi="Sửa ngày ban hành hoặc ngày đến trên hệ thống cũ.",
        ),
        expectation(
            "expect_column_values_to_not_be_null",
            {"column": "received_date",
             "row_condition": ((Col("direction") == "incoming") & Col("received_date" + RAW_SUFFIX).is_null()).dict()},
            check="incoming_has_received_date",
            severity="warn",
            notes="An incoming document should say when it arrived (processing deadlines count from it); loaded anyway.",
            reason_vi="Văn bản đến không có ngày đến.",
            fix_vi="Bổ sung ngày đến trong sổ văn bản đến của hệ thống cũ.",
            column="received_date",
        ),
        expectation(
            "expect_column_values_to_be_in_set",
            {"column": H_ISSUED_DATE_PLAUSIBLE, "value_set": [True]},
            check="plausible.issued_date",
            severity="block",
            notes="An issue date before 1945-09-02 or after tomorrow is a typing error; the archive and deadlines depend on it.",
            reason_vi="Ngày ban hành văn bản không hợp lý (trước 02/09/1945 hoặc sau ngày hiện tại).",
            fix_vi="Sửa ngày ban hành trên hệ thống cũ.",
            column="issued_date",
        ),
        expectation(
            "expect_column_values_to_not_be_in_set",
            {"column": H_OWN_AGENCY_STATUS, "value_set": ["unknown", "missing"]},
            check="agency.own_unit",
            severity="block",
            notes=(
                "R16: a document belongs to its issuer (outgoing) or its receiver (incoming); without a row of the "
                "province's agency crosswalk in force on its date it cannot be placed in the new structure, and "
                "guessing the successor silently is a defect. It waits until the province adds the row."
            ),
            reason_vi="Cơ quan ban hành (văn bản đi) hoặc nơi nhận (văn bản đến) theo cơ cấu cũ chưa có trong bảng chuyển đổi cơ quan của tỉnh tại ngày văn bản.",
            fix_vi="Đề nghị Sở Nội vụ bổ sung cơ quan vào bảng chuyển đổi cơ quan (agencies_<tỉnh>.csv), hoặc sửa mã cơ quan trên hệ thống cũ.",
            column="issuer_code",
        ),
        expectation(
            "expect_column_values_to_not_be_in_set",
            {"column": H_OTHER_AGENCY_STATUS, "value_set": ["unknown"]},
            check="agency.other_unit",
            severity="warn",
            notes=(
                "The other side of a document (who sent an incoming one, who receives an outgoing one) may be outside "
                "the province; it is kept under its old name and the owner is told, so the province can add it."
            ),
            reason_vi="Cơ quan gửi/nơi nhận phía bên kia của văn bản chưa có trong bảng chuyển đổi cơ quan của tỉnh.",
            fix_vi="Nếu là cơ quan trong tỉnh, đề nghị bổ sung vào bảng chuyển đổi cơ quan; nếu ngoài tỉnh, không cần xử lý.",
            column="receiver_code",
        ),
    ]
