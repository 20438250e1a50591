"""A Required Action (Airflow 3 human-in-the-loop) when a night leaves split-commune records waiting.

The decision itself is taken on the "Chờ quyết định" page of the Sáp nhập plugin (one decision
per group, with the user's name); the Required Action is the data team's inbox entry that points
there. It never holds the nightly run: ``airflow dags test`` (the demo, the e2e tests) waits for a
human answer to any HITL task of the DAG it runs. So:

1. the nightly's **publish** task emits an event on the review asset (:func:`review_asset`,
   through the alias :data:`REVIEW_WAITING_ALIAS`) only when records wait, with the counts
   (:func:`announce_waiting_reviews`);
2. the small DAG ``sapnhap_review`` (``dags/sapnhap_review.py``) is scheduled on that asset: a
   check of the queue (nothing left to decide: the run ends skipped) then the Required Action
   (:func:`review_required_action`), which times out with "Để đêm sau" well before the next night.

:func:`waiting_reviews` and :func:`review_request` are pure reads and text; Airflow is imported
only inside the functions that build tasks and assets.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

REVIEW_PAGE = "/sapnhap/review"
DECIDED = "Đã quyết định xong"
LATER = "Để đêm sau"
# The nightly starts at 01:00: the action closes by 21:00 whatever happens, the records stay queued.
RESPONSE_TIMEOUT = dt.timedelta(hours=20)
CHECK_TIMEOUT = dt.timedelta(minutes=10)
# The nightly's publish task emits the review asset's event through this alias, only when records wait.
REVIEW_WAITING_ALIAS = "sapnhap-review-waiting"
REVIEW_DAG_ID = "sapnhap_review"


def review_asset():  # noqa: ANN201 - airflow.sdk.Asset
    """The review queue as an asset: an event means "records wait for a decision" (``sapnhap_review`` runs on it)."""
    from airflow.sdk import Asset

    return Asset(name="registry.review_queue", uri="postgres://sapnhap-platform:5432/sapnhap/registry/review_queue")


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


def announce_waiting_reviews(events, dsn: str, run_id: str) -> WaitingReviews:  # noqa: ANN001 - outlet accessor
    """In the nightly's publish task: add an event on the review asset to ``events`` (the task's
    outlet events of :data:`REVIEW_WAITING_ALIAS`) when records wait; nothing when none do."""
    waiting = waiting_reviews(dsn)
    log = logging.getLogger("sapnhap.nightly")
    if waiting.records:
        events.add(review_asset(), extra={"run_id": run_id, "records": waiting.records, "groups": waiting.groups})
        log.info("publish registry.review_queue: %d records in %d groups wait for a decision on %s; "
                 "%s will ask the data team (Required Actions)", waiting.records, waiting.groups, REVIEW_PAGE,
                 REVIEW_DAG_ID)
    else:
        log.info("publish registry.review_queue: no record waits for a decision")
    return waiting


def nightly_run_of(context) -> str:  # noqa: ANN001 - Airflow context
    """The nightly run whose review-queue event started this run (else this run's own id)."""
    for events in (context.get("triggering_asset_events") or {}).values():
        for event in events:
            run_id = (event.extra or {}).get("run_id") or getattr(event, "source_run_id", None)
            if run_id:
                return str(run_id)
    return context["dag_run"].run_id


def ui_base_url() -> str:
    """Where the data team opens Airflow (``[api] base_url``); empty: links relative to the UI."""
    from airflow.configuration import conf

    return conf.get("api", "base_url", fallback="") or ""


def review_required_action(*, check_task_id: str = "reviews_waiting", task_id: str = "review_required_action",
                           response_timeout: dt.timedelta = RESPONSE_TIMEOUT):  # noqa: ANN201 - (check, action) tasks
    """Two tasks for a DAG: a short-circuit check of the queue, then the Required Action.

    Call inside a DAG (``sapnhap_review``, never the nightly); returns ``check`` with the action downstream.
    """
    from airflow.providers.standard.operators.hitl import HITLOperator
    from airflow.sdk import get_current_context, task

    @task.short_circuit(task_id=check_task_id, execution_timeout=CHECK_TIMEOUT)
    def reviews_waiting() -> dict[str, str] | None:
        from sapnhap.airflow_support import services_from_airflow

        ctx = get_current_context()
        request = review_request(waiting_reviews(services_from_airflow().platform_dsn), nightly_run_of(ctx),
                                 ui_base_url())
        logging.getLogger("sapnhap.review").info(
            "review queue: %s", request["subject"] if request else "nothing waits any more; no Required Action")
        return request

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
