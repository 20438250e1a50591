"""
### Restore a dataset of the platform from the backups (manual)

Trigger with the parameters: **dataset** (`residents`, `households`, `dossiers`,
`dossier_steps`), optionally **source** (one legacy system's part only), **as_of_run** (replay
the batches up to and including that nightly run), **target_schema** (default `restore_scratch`:
a scratch copy to inspect; `core` rebuilds the live table) and **confirm**.

Before anything is written, every batch the platform loaded (per source and dataset, up to
`as_of_run`) must have its manifest in the bucket, with a valid checksum and HMAC signature,
and every object must match its sha256: otherwise the run fails (without retries) and its log
lists every missing or damaged backup. Into `core`, the run first computes the plan (rows it
would insert, update and delete) and writes only when **confirm** is on; without it, the plan
is the task's result and nothing is written. Each applied restore is logged in `ops.restores`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from sapnhap.airflow_support import default_args
from sapnhap.datasets import DATASETS

SCRATCH_SCHEMA = "restore_scratch"


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
        "target_schema": Param(SCRATCH_SCHEMA, type="string", pattern="^[a-z_][a-z0-9_]*$",
                               description="Lược đồ tạm để kiểm tra (mặc định), hoặc core để ghi đè dữ liệu đang dùng"),
        "confirm": Param(False, type="boolean",
                         description="Ghi vào core: chỉ bật sau khi đã xem kế hoạch (số bản ghi thêm, sửa, xóa)"),
    },
)
def sapnhap_restore() -> None:
    @task
    def restore() -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from sapnhap.airflow_support import services_from_airflow
        from sapnhap.restore import RestoreError, is_retryable, restore_dataset

        p = get_current_context()["params"]
        try:
            report = restore_dataset(services_from_airflow(), p["dataset"], source_id=p["source"] or None,
                                     as_of_run=p["as_of_run"] or None, target_schema=p["target_schema"],
                                     confirm=bool(p.get("confirm")))
        except RestoreError as exc:
            if is_retryable(exc):
                raise
            raise AirflowFailException(str(exc)) from exc  # a missing backup stays missing: no retries
        return report.as_dict()

    restore()


sapnhap_restore()
