"""Document steps (quá trình xử lý văn bản, R16): the schema and the checks of its batches.

Adding a dataset is adding a file like this one and registering it in ``sapnhap/datasets/__init__.py``
(see docs/architecture.md, "A dataset in one file").
"""

from __future__ import annotations

from sapnhap.datasets.schema import Column, Dataset, agency_columns

# The processing history of a document (R16: kept for lookup and follow-up of direction).
DOCUMENT_STEPS = Dataset(
    name="document_steps",
    title_vi="Quá trình xử lý văn bản",
    natural_key=("document_code", "step_no"),
    record_date="acted_at",
    has_unit=False,
    parent="documents",
    agency_roles=(("unit_code", ("acted_at",), "unit"),),
    columns=(
        Column("document_code", "text", required=True),
        Column("step_no", "int", required=True),
        Column("unit_code", "text", required=True, description="Đơn vị xử lý (mã cơ cấu cũ)"),
        Column("unit_name", "text", description="Tên đơn vị xử lý (cơ cấu cũ)"),
        Column("handler", "text", pii=True, description="Người xử lý"),
        Column("action", "text", required=True, description="Hành động: tiếp nhận, chuyển xử lý, ký, ban hành..."),
        Column("acted_at", "timestamp", required=True, description="Thời điểm"),
        Column("updated_at", "timestamp"),
        *agency_columns("unit", "đơn vị xử lý"),
        Column("agency_crosswalk_version", "text", derived=True, description="Phiên bản bảng chuyển đổi cơ quan"),
    ),
)

DATASET = DOCUMENT_STEPS


def transformed_checks(generic: list[dict]) -> list[dict]:
    """The transformed suite of document_steps: the generic checks (sapnhap.quality.suites), then its own.

    The processing history of a document: numbered, in time order, by a unit of the new structure.
    """
    # Imported here: the quality package imports this registry (a cycle at import time), and
    # reading a schema should not load Great Expectations.
    from sapnhap.quality.checks import H_PREV_STEP_STARTED, after, expectation, step_no_check

    return [
        *generic,
        step_no_check(),
        after(
            "acted_at", H_PREV_STEP_STARTED, check="order.step_acted_at",
            notes=(
                "R16: the processing history must be in time order for follow-up of direction: a step cannot happen "
                "before the previous step (by step_no) of the same document."
            ),
            reason_vi="Bước xử lý văn bản diễn ra trước bước liền trước của cùng văn bản.",
            fix_vi="Sửa thời điểm hoặc số thứ tự bước xử lý trên hệ thống cũ.",
        ),
        expectation(
            "expect_column_values_to_not_be_in_set",
            {"column": "unit_agency_status", "value_set": ["unknown"]},
            check="agency.step_unit",
            severity="block",
            notes=(
                "Each step names the unit that acted; re-mapped through the province's agency crosswalk by the step's "
                "time. A unit with no row in force waits for the province rather than being guessed."
            ),
            reason_vi="Đơn vị xử lý theo cơ cấu cũ chưa có trong bảng chuyển đổi cơ quan của tỉnh tại thời điểm xử lý.",
            fix_vi="Đề nghị Sở Nội vụ bổ sung đơn vị vào bảng chuyển đổi cơ quan (agencies_<tỉnh>.csv), hoặc sửa mã đơn vị trên hệ thống cũ.",
            column="unit_code",
        ),
    ]
