"""
### Source-vs-platform verification (weekly, and on demand)

The nightly reads each legacy system by its cursor; rows behind the committed cursor (a legacy
system restored from its own backup, re-imported, back-dated) and rows deleted in the legacy
system never reach it. Every Saturday this DAG compares, per source and dataset, the legacy
system's keys and row hashes with the platform's (chunk digests computed inside the legacy
database; only differing chunks are read row by row) and records the result in
`ops.verifications` (counts) and `ops.verification_rows` (keys only):

- **missing** (in the legacy system, not on the platform) and **different** rows are queued in
  `ops.resync_keys`: the next nightly extracts, validates, backs up and loads them like any row;
- **extra** rows (gone from the legacy system) are flagged `deleted_in_source_at`, never deleted.

Trigger it by hand with **sources** / **datasets** (empty: all), **resync**, **flag_deleted**, and
**allow_mass_delete** (needed when more than half of a dataset's rows are gone from the source).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from sapnhap.airflow_support import default_args
from sapnhap.datasets import DATASETS
from sapnhap.sources import load_sources

SOURCES = load_sources()  # declarative files only: no connection or database is touched at parse time


@dag(
    dag_id="sapnhap_verify",
    schedule="0 3 * * 6",  # Saturday 03:00, after the 01:00 nightly and before Sunday's restore drill
    start_date=pendulum.datetime(2025, 7, 1, tz="Asia/Ho_Chi_Minh"),
    catchup=False,
    max_active_runs=1,  # two verifications of one source would queue the same keys twice
    default_args=default_args(),
    tags=["sapnhap", "verify", "reconciliation"],
    doc_md=__doc__,
    params={
        "sources": Param([], type="array", items={"type": "string", "enum": [s.id for s in SOURCES]},
                         description="Nguồn cần đối chiếu (để trống: tất cả)"),
        "datasets": Param([], type="array", items={"type": "string", "enum": sorted(DATASETS)},
                          description="Bộ dữ liệu cần đối chiếu (để trống: tất cả)"),
        "resync": Param(True, type="boolean", description="Đồng bộ lại bản ghi thiếu/khác trong lần chạy đêm tới"),
        "flag_deleted": Param(True, type="boolean", description="Đánh dấu bản ghi đã xóa ở hệ thống cũ"),
        "allow_mass_delete": Param(False, type="boolean",
                                   description="Cho phép đánh dấu xóa quá nửa bộ dữ liệu (sau khi đã kiểm tra kết nối)"),
    },
)
def sapnhap_verify() -> None:
    for source in SOURCES:

        @task(task_id=f"verify_{source.id}", pool=source.pool)
        def verify(source_id: str = source.id) -> list[dict]:
            from airflow.sdk.exceptions import AirflowSkipException

            from sapnhap.airflow_support import legacy_connection, services_from_airflow
            from sapnhap.sources import get_source
            from sapnhap.verify import verify_source

            ctx = get_current_context()
            p = ctx["params"]
            if p["sources"] and source_id not in p["sources"]:
                raise AirflowSkipException(f"{source_id} not among the sources asked for")
            src = get_source(source_id)
            return verify_source(
                services_from_airflow(), src, legacy_connection(src.conn_id, src.kind), run_id=ctx["dag_run"].run_id,
                datasets=p["datasets"] or None, resync=p["resync"], flag_deleted=p["flag_deleted"],
                allow_mass_delete=p["allow_mass_delete"],
            )

        verify()


sapnhap_verify()
