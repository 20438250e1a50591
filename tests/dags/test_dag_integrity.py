"""DAG integrity: every DAG imports cleanly, is tagged and owned, retries, and parses without secrets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("airflow_home")
    os.environ.setdefault("AIRFLOW_HOME", str(home))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import BaseHook, Variable

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"connection/variable read at parse time: {args}")

    mp = pytest.MonkeyPatch()
    mp.setattr(BaseHook, "get_connection", classmethod(lambda cls, *a, **k: forbidden(*a)))
    mp.setattr(Variable, "get", staticmethod(forbidden))
    try:
        yield DagBag(dag_folder=str(DAGS_DIR))
    finally:
        mp.undo()


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert "sapnhap_nightly" in dagbag.dags


def test_every_dag_is_tagged_owned_and_retries(dagbag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md, f"{dag_id} has no doc_md"
        assert dag.catchup is False or dag_id.endswith("_backfill")
        for task in dag.tasks:
            assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id} has no owner"
            if task.task_id != "reconcile":
                assert task.retries >= 2, f"{dag_id}.{task.task_id} retries {task.retries}"


def test_nightly_schedule_and_timezone(dagbag) -> None:
    dag = dagbag.dags["sapnhap_nightly"]
    assert dag.timetable.expression == "0 1 * * *"
    assert str(getattr(dag.timetable.timezone, "name", dag.timetable.timezone)) == "Asia/Ho_Chi_Minh"


def test_one_task_group_per_source_with_the_five_stages(dagbag) -> None:
    from sapnhap.sources import load_sources

    dag = dagbag.dags["sapnhap_nightly"]
    for source in load_sources():
        for stage in ("extract", "transform", "validate", "backup", "load"):
            assert f"{source.id}.{stage}" in dag.task_dict
        extract = dag.task_dict[f"{source.id}.extract"]
        assert extract.pool == source.pool  # legacy servers keep serving their users
        chain = dag.task_dict[f"{source.id}.load"].upstream_task_ids
        assert chain == {f"{source.id}.backup"}  # no load without its backup
    assert {"reconcile", "report", "handover"} <= set(dag.task_dict)
    leaves = {t.task_id for t in dag.tasks if not t.downstream_task_ids}
    assert leaves == {"reconcile", "report", "handover"}
    assert dag.task_dict["handover"].trigger_rule == "all_done"


def test_restore_dags(dagbag) -> None:
    restore = dagbag.dags["sapnhap_restore"]
    assert type(restore.timetable).__name__ == "NullTimetable"  # manual trigger only
    assert set(restore.params.keys()) == {"dataset", "source", "as_of_run", "target_schema", "confirm"}
    drill = dagbag.dags["sapnhap_restore_drill"]
    assert drill.timetable.expression == "0 5 * * 0"
    assert str(getattr(drill.timetable.timezone, "name", drill.timetable.timezone)) == "Asia/Ho_Chi_Minh"


def test_verify_dag(dagbag) -> None:
    from sapnhap.sources import load_sources

    dag = dagbag.dags["sapnhap_verify"]
    assert dag.timetable.expression == "0 3 * * 6"  # weekly
    assert str(getattr(dag.timetable.timezone, "name", dag.timetable.timezone)) == "Asia/Ho_Chi_Minh"
    assert set(dag.params.keys()) == {"sources", "datasets", "resync", "flag_deleted", "allow_mass_delete"}
    assert dag.params["allow_mass_delete"] is False
    for source in load_sources():
        task = dag.task_dict[f"verify_{source.id}"]
        assert task.pool == source.pool  # the legacy server's connection limit holds for verification too
