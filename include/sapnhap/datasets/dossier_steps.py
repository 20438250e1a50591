"""Dossier steps (quá trình xử lý hồ sơ, R17): the schema and the checks of its batches.

Adding a dataset is adding a file like this one and registering it in ``sapnhap/datasets/__init__.py``
(see docs/architecture.md, "A dataset in one file").
"""

from __future__ import annotations

from sapnhap.datasets.schema import Column, Dataset

DOSSIER_STEPS = Dataset(
    name="dossier_steps",
    title_vi="Quá trình xử lý hồ sơ",
    natural_key=("dossier_code", "step_no"),
    record_date="started_at",
    has_unit=False,
    parent="dossiers",
    columns=(
        Column("dossier_code", "text", required=True),
        Column("step_no", "int", required=True),
        Column("step_name", "text", required=True, description="Bước xử lý"),
        Column("handler", "text", pii=True, description="Cán bộ xử lý"),
        Column("started_at", "timestamp", required=True),
        Column("finished_at", "timestamp"),
        Column("updated_at", "timestamp"),
    ),
)

DATASET = DOSSIER_STEPS


def transformed_checks(generic: list[dict]) -> list[dict]:
    """The transformed suite of dossier_steps: the generic checks (sapnhap.quality.suites), then its own.

    The processing history: numbered from 1, in time order.
    """
    # Imported here: the quality package imports this registry (a cycle at import time), and
    # reading a schema should not load Great Expectations.
    from sapnhap.quality.checks import H_PREV_STEP_STARTED, after, step_no_check

    return [
        *generic,
        step_no_check(),
        after(
            "started_at", H_PREV_STEP_STARTED, check="order.step_started_at",
            notes=(
                "R17: the processing history must be in time order: a step cannot start before the "
                "previous step (by step_no) of the same dossier."
            ),
            reason_vi="Bước xử lý bắt đầu trước bước liền trước của cùng hồ sơ.",
            fix_vi="Sửa thời điểm bắt đầu hoặc số thứ tự bước trên hệ thống cũ.",
        ),
        after(
            "finished_at", "started_at", check="order.step_finished_at",
            notes="A step cannot finish before it started.",
            reason_vi="Thời điểm kết thúc bước xử lý sớm hơn thời điểm bắt đầu.",
            fix_vi="Sửa thời điểm bắt đầu/kết thúc bước trên hệ thống cũ.",
        ),
    ]
