"""
### Weekly restore drill: prove the backups restore to exactly what the platform holds

Every Sunday morning (after the nightly sync) every backed-up dataset is restored from the
bucket into the scratch schema `restore_drill`, its row count and order-independent checksum
are compared with the platform's, the data team gets the result by email (Vietnamese), and
the scratch copy is dropped. A mismatch or a refused checksum fails the run.

Recipients: `SAPNHAP_DRILL_RECIPIENTS` (comma-separated), else the mail sender address.
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
    def drill() -> dict:
        from sapnhap.airflow_support import services_from_airflow
        from sapnhap.restore import drill_recipients, restore_drill

        services = services_from_airflow()
        return restore_drill(services, recipients=drill_recipients(services))

    drill()


sapnhap_restore_drill()
