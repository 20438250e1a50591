"""
### Restore a dataset of the platform from the backups (manual)

Trigger with the parameters: **dataset** (`residents`, `households`, `dossiers`,
`dossier_steps`), optionally **source** (one legacy system's part only), **as_of_run** (replay
the batches up to and including that nightly run) and **target_schema** (`core` rebuilds the
live table; any other name builds a scratch copy to inspect).

Every object of every backup is checked against the sha256 of its manifest first: on any
mismatch the restore refuses and writes nothing. Batches are replayed in commit order with
the nightly load's merge rules; each restore is logged in `ops.restores`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from sapnhap.airflow_support import default_args
from sapnhap.datasets import DATASETS


@dag(
    dag_id="sapnhap_restore",
    schedule=None,  # a restore is a decision of the data team, never a schedule
    start_date=pendulum.datetime(2025, 7, 1, tz="Asia/Ho_Chi_Minh"),
    catchup=False,
    max_active_runs=1,  # two restores of one table at once would fight over it
    default_args=default_args(),
    tags=["sapnhap", "restore", "backup"],
    doc_md=__doc__,
    params={
        "dataset": Param("residents", type="string", enum=sorted(DATASETS), description="Bộ dữ liệu cần khôi phục"),
        "source": Param(None, type=["null", "string"], description="Chỉ khôi phục phần dữ liệu của một nguồn"),
        "as_of_run": Param(None, type=["null", "string"], description="Khôi phục đến hết lần chạy này"),
        "target_schema": Param("core", type="string", pattern="^[a-z_][a-z0-9_]*$",
                               description="core, hoặc tên lược đồ tạm để kiểm tra"),
    },
)
def sapnhap_restore() -> None:
    @task
    def restore() -> dict:
        from sapnhap.airflow_support import services_from_airflow
        from sapnhap.restore import restore_dataset

        p = get_current_context()["params"]
        return restore_dataset(services_from_airflow(), p["dataset"], source_id=p["source"] or None,
                               as_of_run=p["as_of_run"] or None, target_schema=p["target_schema"]).as_dict()

    restore()


sapnhap_restore()
