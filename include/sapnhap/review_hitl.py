"""A Required Action (Airflow 3 human-in-the-loop) when a night leaves split-commune records waiting.

The decision itself is taken on the "Chờ quyết định" page of the Sáp nhập plugin (one decision
per group, with the user's name); the Required Action is the data team's inbox entry that points
there. :func:`waiting_reviews` and :func:`review_request` are pure reads and text;
:func:`review_required_action` builds the two tasks for a DAG (Airflow imported only there).

Wiring in ``dags/sapnhap_nightly.py`` (owned by dagwire), after the report::

    from sapnhap.review_hitl import review_required_action
    ... report_task >> review_required_action()

The nightly has ``max_active_runs=1``: the action must close before the next night's run can
start, so it times out (default 20 h) with "Để đêm sau" and the records simply stay queued.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

REVIEW_PAGE = "/sapnhap/review"
DECIDED = "Đã quyết định xong"
LATER = "Để đêm sau"
RESPONSE_TIMEOUT = dt.timedelta(hours=20)


@dataclass(frozen=True)
class WaitingReviews:
    """How many split-commune records wait, in how many groups (one decision each), of which communes."""

    records: int
    groups: int
    communes: tuple[str, ...]


def waiting_reviews(dsn: str) -> WaitingReviews:
    """The open review queue, counted the way the review page groups it."""
    from sapnhap.ui_queries import review_groups

    groups = review_groups(dsn)
    communes = sorted({f"{g.old_commune_name or ''} ({g.old_commune_code})".strip() for g in groups})
    return WaitingReviews(sum(len(g.record_keys) for g in groups), len(groups), tuple(communes))


def review_request(waiting: WaitingReviews, run_id: str, base_url: str = "") -> dict[str, str] | None:
    """Subject and Markdown body of the Required Action, or None when nothing waits."""
    if waiting.records == 0:
        return None
    shown = ", ".join(waiting.communes[:10]) + (f" và {len(waiting.communes) - 10} xã khác" if len(waiting.communes) > 10 else "")
    url = base_url.rstrip("/") + REVIEW_PAGE
    return {
        "subject": f"{waiting.records} bản ghi của xã bị chia tách chờ quyết định ({waiting.groups} nhóm)",
        "body": (
            f"Lần chạy `{run_id}` để lại **{waiting.records} bản ghi** của các xã cũ bị chia tách vào nhiều "
            f"xã/phường mới mà địa chỉ không đủ để xác định: {shown}.\n\n"
            f"Mở trang [Chờ quyết định]({url}) (menu Sáp nhập), chọn xã/phường mới cho từng nhóm "
            f"({waiting.groups} nhóm). Quyết định được ghi kèm tên người quyết định và áp dụng ở lần chạy tới.\n\n"
            f"Chọn **{DECIDED}** khi đã quyết định, hoặc **{LATER}**: các bản ghi vẫn chờ trong hàng đợi."
        ),
    }


def review_required_action(*, check_task_id: str = "reviews_waiting", task_id: str = "review_required_action",
                           response_timeout: dt.timedelta = RESPONSE_TIMEOUT):  # noqa: ANN201 - (check, action) tasks
    """Two tasks for a DAG: a short-circuit check of the queue, then the Required Action.

    Call inside a DAG; returns ``check`` (wire it after the report) with the action downstream.
    """
    from airflow.providers.standard.operators.hitl import HITLOperator
    from airflow.sdk import get_current_context, task

    @task.short_circuit(task_id=check_task_id)
    def reviews_waiting() -> dict[str, str] | None:
        from sapnhap.airflow_support import services_from_airflow

        ctx = get_current_context()
        return review_request(waiting_reviews(services_from_airflow().platform_dsn), ctx["dag_run"].run_id)

    check = reviews_waiting()
    xcom = f"ti.xcom_pull(task_ids='{check_task_id}')"
    action = HITLOperator(
        task_id=task_id,
        subject="{{ " + xcom + "['subject'] }}",
        body="{{ " + xcom + "['body'] }}",
        options=[DECIDED, LATER],
        defaults=[LATER],
        response_timeout=response_timeout,
    )
    check >> action
    return check
