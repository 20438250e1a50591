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
            if task.task_id != "reconcile":  # it checks what is recorded: a retry would find the same
                assert task.retries >= 2, f"{dag_id}.{task.task_id} retries {task.retries}"


def test_nightly_schedule_and_timezone(dagbag) -> None:
    dag = dagbag.dags["sapnhap_nightly"]
    assert dag.timetable.expression == "0 1 * * *"
    assert str(getattr(dag.timetable.timezone, "name", dag.timetable.timezone)) == "Asia/Ho_Chi_Minh"


def test_one_task_group_per_source_with_mapped_stages_per_dataset(dagbag) -> None:
    from airflow.sdk.definitions.taskgroup import MappedTaskGroup

    from sapnhap.sources import load_sources

    dag = dagbag.dags["sapnhap_nightly"]
    for source in load_sources():
        # No assess task per source (one task instance per source per night, to find it assessed long
        # ago): a new source is assessed by its extracts, in the legacy server's pool (profiling reads it).
        assert f"{source.id}.assess" not in dag.task_dict
        group = dag.task_group_dict[f"{source.id}.datasets"]
        # One instance per dataset: a failing dataset does not stop its siblings.
        assert isinstance(group, MappedTaskGroup)
        assert list(group._expand_input.value["dataset"]) == list(source.datasets)
        # Two tasks, not five: the per-task cost is measured in docs/architecture.md ("Task granularity").
        for stage in ("extract", "process"):
            task = dag.task_dict[f"{source.id}.datasets.{stage}"]
            assert task.get_closest_mapped_task_group() is group
            assert task.show_return_value_in_logs is False  # the summary line tells the story, not a dict
            assert task.map_index_template  # mapped instances are named by their dataset in the UI
            assert task.multiple_outputs is False  # one XCom per instance, not one more per key of the batch
        extract = dag.task_dict[f"{source.id}.datasets.extract"]
        assert extract.pool == source.pool  # legacy servers keep serving their users
        assert extract.upstream_task_ids == {"plan"}  # plan also prepares the run: no prepare, no assess hop
        process = dag.task_dict[f"{source.id}.datasets.process"]
        assert process.upstream_task_ids == {f"{source.id}.datasets.extract"}
        assert process.pool != source.pool  # the legacy server's slot is held for the extract only
    assert {"plan", "reconcile", "report", "handover", "publish"} <= set(dag.task_dict)
    assert "prepare" not in dag.task_dict and dag.task_dict["plan"].multiple_outputs
    leaves = {t.task_id for t in dag.tasks if not t.downstream_task_ids}
    assert leaves == {"reconcile", "report", "handover", "publish"}
    for task_id in ("reconcile", "report", "handover", "publish"):
        assert dag.task_dict[task_id].trigger_rule == "all_done"
        assert dag.task_dict[task_id].multiple_outputs is False
        assert "plan" in dag.task_dict[task_id].upstream_task_ids or task_id == "publish"


def test_nightly_params_choose_sources_and_datasets(dagbag) -> None:
    from sapnhap.sources import load_sources

    sources = load_sources()
    params = dagbag.dags["sapnhap_nightly"].params
    assert set(params.keys()) == {"sources", "datasets"}
    assert params["sources"] == [s.id for s in sources]  # default: all
    assert params["datasets"] == sorted({d for s in sources for d in s.datasets})
    schema = params.get_param("sources").schema
    assert schema["type"] == "array" and schema["items"]["enum"] == [s.id for s in sources]
    params.get_param("sources").resolve([sources[0].id])
    with pytest.raises(Exception, match="nope"):
        params.get_param("sources").resolve(["nope"])


def test_one_asset_per_platform_table(dagbag) -> None:
    from airflow.sdk import AssetAlias

    from sapnhap.airflow_support import CORE_TABLES_ALIAS, core_asset
    from sapnhap.datasets import DATASETS
    from sapnhap.review_hitl import REVIEW_WAITING_ALIAS

    dag = dagbag.dags["sapnhap_nightly"]
    outlets = {t.task_id: t.outlets for t in dag.tasks if t.outlets}
    # no more one-asset-for-everything; the review queue's event wakes sapnhap_review (tests/ui/test_review_hitl.py)
    assert outlets == {"publish": [AssetAlias(CORE_TABLES_ALIAS), AssetAlias(REVIEW_WAITING_ALIAS)]}
    names = {core_asset(d).name for d in DATASETS}
    uris = {core_asset(d).uri for d in DATASETS}
    assert names == {f"core.{d}" for d in DATASETS} and len(uris) == len(DATASETS)


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


def test_the_nightly_imports_with_no_valid_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("SAPNHAP_SOURCES_DIR", str(tmp_path))  # an empty registry: its params' defaults are []
    bag = DagBag(dag_folder=str(DAGS_DIR / "sapnhap_nightly.py"))
    assert bag.import_errors == {}
    assert bag.dags["sapnhap_nightly"].params["sources"] == []


def test_a_broken_source_file_disables_that_source_only(dagbag, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from airflow.dag_processing.dagbag import DagBag

    from sapnhap.sources import DEFAULT_SOURCES_DIR

    folder = tmp_path / "sources"
    folder.mkdir()
    for name in ("hg_thudientu.yaml", "tq_sonduong_dancu.yaml"):
        shutil.copy(DEFAULT_SOURCES_DIR / name, folder / name)
    broken = folder / "hg_vixuyen_motcua.yaml"
    broken.write_text((DEFAULT_SOURCES_DIR / broken.name).read_text(encoding="utf-8").replace(
        "kind: postgres", "kind: postgress"), encoding="utf-8")
    monkeypatch.setenv("SAPNHAP_SOURCES_DIR", str(folder))
    bag = DagBag(dag_folder=str(DAGS_DIR / "sapnhap_nightly.py"))
    assert bag.import_errors == {}
    dag = bag.dags["sapnhap_nightly"]
    for source_id in ("hg_thudientu", "tq_sonduong_dancu"):
        assert f"{source_id}.datasets.process" in dag.task_dict
    assert "hg_vixuyen_motcua.datasets.extract" not in dag.task_dict
    failing = dag.task_dict["hg_vixuyen_motcua.source_file_invalid"]
    assert failing.retries == 0 and failing.owner == "sapnhap-data-team"
    assert failing.python_callable.__defaults__ == (str(broken),)  # the task raises that file's error


def _nightly_in_task_process(monkeypatch: pytest.MonkeyPatch, task_id: str):  # noqa: ANN202 - airflow DAG
    """The nightly as the task runner parses it for ``task_id``: Airflow's parsing context says which
    task the process runs (``task_runner.parse`` sets these two variables around the DagBag)."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import get_parsing_context

    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "sapnhap_nightly")
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_TASK_ID", task_id)
    assert get_parsing_context().task_id == task_id  # the variables Airflow 3.3 reads
    bag = DagBag(dag_folder=str(DAGS_DIR / "sapnhap_nightly.py"))
    assert bag.import_errors == {}
    return bag.dags["sapnhap_nightly"]


@pytest.mark.parametrize("stage", ["extract", "process"])
def test_a_source_task_parses_only_its_own_source(dagbag, monkeypatch: pytest.MonkeyPatch, stage: str) -> None:
    """Every task instance parses the DAG file again: with 300 sources the whole nightly took 1.8 s
    to build, per task instance (docs/architecture.md, "What a task instance parses"). A task of
    one source gets that source's group, ``plan`` (whose output it takes) and the leaves, the same
    task as in the whole DAG."""
    from sapnhap.sources import load_sources

    full = dagbag.dags["sapnhap_nightly"]
    sources = load_sources()
    assert len(sources) > 2
    mine = sources[1]
    task_id = f"{mine.id}.datasets.{stage}"
    dag = _nightly_in_task_process(monkeypatch, task_id)
    assert {t.split(".", 1)[0] for t in dag.task_dict if "." in t} == {mine.id}
    assert set(dag.task_dict) == {t for t in full.task_dict if "." not in t or t.startswith(f"{mine.id}.")}
    task, whole = dag.task_dict[task_id], full.task_dict[task_id]
    assert task.upstream_task_ids == whole.upstream_task_ids
    assert task.downstream_task_ids <= whole.downstream_task_ids
    assert (task.pool, task.retries, task.map_index_template, task.trigger_rule) == (
        whole.pool, whole.retries, whole.map_index_template, whole.trigger_rule)
    assert task.op_kwargs.keys() == whole.op_kwargs.keys()
    assert task.op_kwargs["source_id"] == whole.op_kwargs["source_id"] == mine.id
    group, whole_group = task.get_closest_mapped_task_group(), whole.get_closest_mapped_task_group()
    assert group._expand_input.value == whole_group._expand_input.value
    # The run's params resolve the same way (compared by schema: another test resolves the fixture's).
    assert {k: dag.params.get_param(k).schema for k in dag.params} == {
        k: full.params.get_param(k).schema for k in full.params}


@pytest.mark.parametrize("task_id", ["plan", "reconcile", "publish", "no_such_source.datasets.extract"])
def test_the_run_wide_tasks_parse_the_whole_nightly(dagbag, monkeypatch: pytest.MonkeyPatch, task_id: str) -> None:
    full = dagbag.dags["sapnhap_nightly"]
    dag = _nightly_in_task_process(monkeypatch, task_id)
    assert set(dag.task_dict) == set(full.task_dict)
    assert dag.task_dict["publish"].upstream_task_ids == full.task_dict["publish"].upstream_task_ids
