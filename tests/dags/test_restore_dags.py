"""The restore DAGs' wiring: a scratch target and no write without confirmation by default; a
deterministic failure fails the task at once instead of being retried into identical alarms."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sapnhap import storage
from sapnhap.restore import RestoreError

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory):
    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


def test_the_restore_form_defaults_to_a_scratch_schema_and_no_confirmation(dagbag) -> None:
    params = dagbag.dags["sapnhap_restore"].params
    assert params["target_schema"] != "core" and params["confirm"] is False


def _call(dagbag, dag_id: str, task_id: str, monkeypatch, **patches) -> object:
    import sapnhap.airflow_support
    import sapnhap.restore

    monkeypatch.setattr(sapnhap.airflow_support, "services_from_airflow", lambda: object())
    for name, fn in patches.items():
        monkeypatch.setattr(sapnhap.restore, name, fn)
    return dagbag.dags[dag_id].task_dict[task_id].python_callable()


@pytest.mark.parametrize("retryable", [False, True])
def test_the_drill_fails_at_once_on_a_mismatch_and_retries_a_lost_connection(dagbag, monkeypatch, retryable) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    def drill(*a: object, **k: object) -> dict:
        raise RestoreError("restore drill failed: ['residents']", retryable=retryable)

    # A mismatch would be the same on the next try: the task fails without its retries.
    expected = RestoreError if retryable else AirflowFailException
    with pytest.raises(expected, match="restore drill failed"):
        _call(dagbag, "sapnhap_restore_drill", "drill", monkeypatch, restore_drill=drill,
              drill_recipients=lambda s: [])


def test_the_drill_retries_an_unreachable_bucket(dagbag, monkeypatch) -> None:
    def drill(*a: object, **k: object) -> dict:
        raise storage.BackupError("object storage: list backups/ failed: Could not connect to the endpoint URL")

    with pytest.raises(storage.BackupError):
        _call(dagbag, "sapnhap_restore_drill", "drill", monkeypatch, restore_drill=drill, drill_recipients=lambda s: [])
    assert dagbag.dags["sapnhap_restore_drill"].task_dict["expire"].upstream_task_ids == {"drill"}


def test_a_refused_restore_fails_at_once(dagbag, monkeypatch) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    def refused(*a: object, **k: object) -> None:
        raise RestoreError("restore refused: 1 of 4 loaded batches of residents have no verified backup", missing=["k"])

    task = dagbag.dags["sapnhap_restore"].task_dict["restore"]
    monkeypatch.setitem(task.python_callable.__globals__, "get_current_context", lambda: {"params": {
        "dataset": "residents", "source": None, "as_of_run": None, "target_schema": "core", "confirm": True}})
    with pytest.raises(AirflowFailException, match="restore refused"):
        _call(dagbag, "sapnhap_restore", "restore", monkeypatch, restore_dataset=refused)
