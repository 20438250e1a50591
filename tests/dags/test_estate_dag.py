"""The estate DAG: scheduled on the indicator and portal table assets the nightly emits; two independent exports."""

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


def test_estate_dag_runs_after_the_nightly_loads_indicators_or_pages(dagbag) -> None:
    from sapnhap.airflow_support import CORE_TABLES_ALIAS, core_asset

    estate = dagbag.dags["sapnhap_estate"]
    nightly = dagbag.dags["sapnhap_nightly"]
    # The nightly emits core.<dataset> events through its alias, these two tables among them.
    assert any(o.name == CORE_TABLES_ALIAS for t in nightly.tasks for o in t.outlets)
    condition = estate.timetable.asset_condition
    assert type(condition).__name__ == "AssetAny"  # either table changing is reason to publish again
    assert set(condition.objects) == {core_asset("indicator_values"), core_asset("portal_pages")}
    assert str(getattr(estate.timezone, "name", estate.timezone)) == "Asia/Ho_Chi_Minh"
    assert set(estate.task_dict) == {"indicators", "redirects"}
    assert estate.task_dict["redirects"].upstream_task_ids == set()
    assert estate.catchup is False and estate.max_active_runs == 1 and all(t.retries >= 2 for t in estate.tasks)
