"""The accounts DAG: scheduled on the platform asset the nightly loads emit; build before export and review."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory):
    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_accounts_dag_runs_after_the_nightly_loads(dagbag) -> None:
    accounts = dagbag.dags["sapnhap_accounts"]
    nightly = dagbag.dags["sapnhap_nightly"]
    emitted = {o.uri for t in nightly.tasks for o in getattr(t, "outlets", []) if hasattr(o, "uri")}
    scheduled = {a.uri for a in accounts.timetable.asset_condition.objects}
    assert scheduled and scheduled <= emitted
    assert str(getattr(accounts.timezone, "name", accounts.timezone)) == "Asia/Ho_Chi_Minh"
    assert accounts.task_dict["export"].upstream_task_ids == {"build"}
    assert accounts.task_dict["review"].upstream_task_ids == {"build"}
    assert accounts.catchup is False and all(t.retries >= 2 for t in accounts.tasks)
