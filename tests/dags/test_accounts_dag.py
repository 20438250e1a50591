"""The accounts DAG: scheduled on the table assets it reads, which the nightly emits; build before export and review."""

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
    from sapnhap.airflow_support import CORE_TABLES_ALIAS, core_asset

    # The nightly emits core.<dataset> events through its alias; the accounts DAG needs these two tables.
    assert any(o.name == CORE_TABLES_ALIAS for t in nightly.tasks for o in t.outlets)
    condition = accounts.timetable.asset_condition
    assert type(condition).__name__ == "AssetAny"  # either table changing is reason to rebuild
    assert set(condition.objects) == {core_asset("accounts"), core_asset("mail_directory")}
    assert str(getattr(accounts.timezone, "name", accounts.timezone)) == "Asia/Ho_Chi_Minh"
    assert accounts.task_dict["export"].upstream_task_ids == {"build"}
    assert accounts.task_dict["review"].upstream_task_ids == {"build"}
    assert accounts.catchup is False and all(t.retries >= 2 for t in accounts.tasks)
