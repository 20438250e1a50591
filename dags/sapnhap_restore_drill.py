"""
### Weekly restore drill: prove the backups restore to exactly what the platform holds

Every Sunday morning (after the nightly sync) every backed-up dataset is restored from the
bucket into the scratch schema `restore_drill`, its row count and order-independent checksum
are compared with the platform's, the data team gets the result by email (Vietnamese), and
the scratch copy is dropped. A mismatch or a refused backup fails the run at once (no retries:
it would only repeat the alarm); a lost connection is retried.

Then, only after a drill that passed, **expire** deletes backups older than
`SAPNHAP_BACKUP_RETENTION_DAYS` that no restore needs (attempts that never loaded); every
backup a load committed is kept.

Recipients: `SAPNHAP_DRILL_RECIPIENTS` (comma-separated), else the mail sender address. The
email goes through the outbox (`ops.outbox`, kind `restore_drill`): stored first, sent once per
run and recipient and result, kept pending through a mail outage and sent by the next drill.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from sapnhap.airflow_support import default_args


@dag(
    dag_id="sapnhap_restore_drill",
    schedule="0 5 * * 0",  # Sunday 05:00, well after the 01:00 nightly sync has committed
    start_date=pendulum.datetime(2025, 7, 1, tz="Asia/Ho_Chi_Minh"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["sapnhap", "restore", "drill", "backup"],
    doc_md=__doc__,
)
def sapnhap_restore_drill() -> None:
    @task
    def drill(dag_run=None) -> dict:  # noqa: ANN001 - Airflow passes the run (its id keys the drill's email)
        from airflow.sdk.exceptions import AirflowFailException

        from sapnhap.airflow_support import services_from_airflow
        from sapnhap.restore import RestoreError, drill_recipients, is_retryable, restore_drill

        services = services_from_airflow()
        try:
            return restore_drill(services, recipients=drill_recipients(services),
                                 run_id=dag_run.run_id if dag_run is not None else None)
        except RestoreError as exc:
            if is_retryable(exc):
                raise
            raise AirflowFailException(str(exc)) from exc

    @task
    def expire() -> dict:
        from sapnhap import storage
        from sapnhap.airflow_support import services_from_airflow
        from sapnhap.restore import expire_backups

        result = expire_backups(services_from_airflow(), storage.retention_days_from_env())
        return {k: (len(v) if isinstance(v, list) else v) for k, v in result.items()}

    drill() >> expire()


sapnhap_restore_drill()
