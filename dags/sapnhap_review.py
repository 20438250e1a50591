"""
### Records wait for a decision: a Required Action for the data team

Scheduled on the review queue's asset (`registry.review_queue`): the nightly's **publish** task
emits an event on it only when a night leaves split-commune records that no province rule places
(counts in the event's `extra`). Kept apart from the nightly so that a waiting human never holds
a night (nor `airflow dags test`, which waits for every Required Action of the DAG it runs).

1. **reviews_waiting** reads the queue again (decided meanwhile: the run ends here, skipped).
2. **review_required_action** (Airflow's human-in-the-loop; *Browse > Required Actions*): how many
   records in how many groups, which old communes, and a link to the *Chờ quyết định* page of the
   Sáp nhập plugin, where one decision per group is taken (with the user's name) and applied by the
   next run. Answer *Đã quyết định xong*, or *Để đêm sau*; unanswered, it closes with *Để đêm sau*
   after 20 hours, before the next night. The records stay queued until decided.
"""

from __future__ import annotations

import datetime as dt

import pendulum
from airflow.sdk import dag

from sapnhap.airflow_support import default_args
from sapnhap.review_hitl import REVIEW_DAG_ID, review_asset, review_required_action

LOCAL_TZ = "Asia/Ho_Chi_Minh"


@dag(
    dag_id=REVIEW_DAG_ID,
    schedule=review_asset(),
    start_date=pendulum.datetime(2025, 7, 1, tz=LOCAL_TZ),
    catchup=False,
    max_active_runs=1,  # one open Required Action: nights that queue meanwhile are answered by the next run
    dagrun_timeout=dt.timedelta(hours=22),
    default_args=default_args(),
    tags=["sapnhap", "review", "human-in-the-loop"],
    doc_md=__doc__,
)
def sapnhap_review() -> None:
    review_required_action()


sapnhap_review()
