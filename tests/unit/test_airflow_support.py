"""What the nightly DAG shares with its tasks: run selection from params, table asset events, summary lines."""

from __future__ import annotations

import logging
import re

import pytest

from sapnhap.airflow_support import (
    SelectionError,
    core_asset,
    flatten_loads,
    is_selected,
    quiet_library_logs,
    select_pairs,
    selected_sources,
    stage_summary,
    table_events,
)
from sapnhap.sources import load_sources

SOURCES = load_sources()
ALL_PAIRS = [(s.id, d) for s in SOURCES for d in s.datasets]


def test_default_params_select_every_pair_in_registry_order() -> None:
    assert select_pairs(SOURCES, {}, {}) == ALL_PAIRS
    params = {"sources": [s.id for s in SOURCES], "datasets": sorted({d for _, d in ALL_PAIRS})}
    assert select_pairs(SOURCES, params, None) == ALL_PAIRS


def test_one_source_and_one_dataset() -> None:
    one = next(s for s in SOURCES if len(s.datasets) > 1)
    assert select_pairs(SOURCES, {"sources": [one.id]}) == [(one.id, d) for d in one.datasets]
    assert select_pairs(SOURCES, {"sources": one.id}) == [(one.id, d) for d in one.datasets]
    dataset = next(iter(one.datasets))
    pairs = select_pairs(SOURCES, {"datasets": [dataset]})
    assert pairs == [(s.id, dataset) for s in SOURCES if dataset in s.datasets]
    assert select_pairs(SOURCES, {"sources": [one.id], "datasets": [dataset]}) == [(one.id, dataset)]
    assert [s.id for s in selected_sources(SOURCES, [list(p) for p in pairs])] == [s.id for s in SOURCES if dataset in s.datasets]
    assert is_selected([[one.id, dataset]], one.id) and is_selected([[one.id, dataset]], one.id, dataset)
    assert not is_selected([[one.id, dataset]], one.id, "no_such") and not is_selected([], one.id)


def test_a_conf_key_that_is_no_param_fails_instead_of_syncing_everything() -> None:
    with pytest.raises(SelectionError, match=r"\['source'\] are not params"):
        select_pairs(SOURCES, {}, {"source": SOURCES[0].id})


def test_unknown_names_and_empty_selections_are_errors() -> None:
    with pytest.raises(SelectionError, match="param 'sources': unknown \\['nope'\\]"):
        select_pairs(SOURCES, {"sources": ["nope"]})
    with pytest.raises(SelectionError, match="param 'datasets': unknown"):
        select_pairs(SOURCES, {"datasets": ["citizens"]})
    files_only = next(s for s in SOURCES if "residents" not in s.datasets)
    with pytest.raises(SelectionError, match="nothing to sync"):
        select_pairs(SOURCES, {"sources": [files_only.id], "datasets": ["residents"]})


def _load(source_id: str, dataset: str, **counts: int) -> dict:
    base = dict(extracted=0, inserted=0, updated=0, unchanged=0, merged_in_batch=0, merged_cross_source=0,
                quarantined=0, blocked=0)
    return {"batch_id": f"r1|{source_id}|{dataset}", "source_id": source_id, "dataset": dataset, "status": "loaded",
            **base, **counts}


def test_one_event_per_changed_table_with_row_counts() -> None:
    loads = [
        _load("a", "residents", extracted=10, inserted=7, unchanged=1, quarantined=2),
        _load("b", "residents", extracted=5, updated=4, merged_in_batch=1),
        _load("a", "dossiers", extracted=3, unchanged=3),  # nothing changed: no event
        {**_load("c", "households", extracted=4, inserted=0, blocked=4), "status": "blocked"},
    ]
    events = table_events(loads, "r1")
    assert set(events) == {"residents"}
    ev = events["residents"]
    assert (ev["extracted"], ev["inserted"], ev["updated"], ev["quarantined"], ev["merged_in_batch"]) == (15, 7, 4, 2, 1)
    assert [b["source_id"] for b in ev["batches"]] == ["a", "b"] and ev["table"] == "core.residents"
    assert core_asset("residents").name == "core.residents"
    assert core_asset("residents").uri.endswith("/sapnhap/core/residents")
    with pytest.raises(KeyError):
        core_asset("citizens")


def test_flatten_loads_takes_every_shape_a_mapped_xcom_pull_gives() -> None:
    one, two = _load("a", "residents"), _load("b", "dossiers")
    assert flatten_loads([[one, two], one, None, []]) == [one, two, one]
    assert flatten_loads(None) == [] and flatten_loads(one) == [one]


BATCH = {
    "batch_id": "manual__2026|hg_x|residents", "source_id": "hg_x", "dataset": "residents",
    "prefix": "backups/hg_x/residents/2026-12-01/manual__2026/", "rows": 12, "cursor_from": None,
    "cursor_to": "2025-11-25 16:09:47", "files": [{"file_name": "a.csv"}], "unmapped_columns": ["ghi_chu"],
    "objects": {"raw": {"key": "k1", "sha256": "0", "size": 100}, "valid": {"key": "k2", "sha256": "0", "size": 50}},
    "transformed_rows": 11, "merged_in_batch": 1, "crosswalk_version": "nso-2025.07", "valid_rows": 9,
    "quarantined_rows": 2, "failed_ratio": 0.1818, "decision": "warn", "suite_version": "s1",
    "data_docs": [{"key": "backups/hg_x/residents/2026-12-01/manual__2026/data_docs/index.html", "size": 10}],
    "manifest_key": "backups/hg_x/residents/2026-12-01/manual__2026/manifest.json",
}


def test_one_plain_summary_line_per_stage() -> None:
    lines = {stage: stage_summary(stage, BATCH, bucket="bk") for stage in ("extract", "transform", "validate", "backup")}
    load = {"batch_id": BATCH["batch_id"], "source_id": "hg_x", "dataset": "residents", "status": "loaded",
            "extracted": 12, "inserted": 5, "updated": 2, "unchanged": 2, "merged_in_batch": 1,
            "merged_cross_source": 0, "quarantined": 2, "blocked": 0}
    lines["load"] = stage_summary("load", load, bucket="bk")
    assert lines["extract"] == (
        "extract hg_x/residents: 12 rows out of the legacy system (cursor None -> 2025-11-25 16:09:47, 1 new files,"
        " 1 unmapped legacy columns kept in raw) -> s3://bk/backups/hg_x/residents/2026-12-01/manual__2026/raw.parquet"
    )
    assert "12 rows in -> 11 rows under new unit codes, 1 merged in batch" in lines["transform"]
    assert "11 rows in -> 9 valid, 2 quarantined (18.2% failing, decision warn)" in lines["validate"]
    assert lines["validate"].endswith("Data Docs s3://bk/backups/hg_x/residents/2026-12-01/manual__2026/data_docs/index.html")
    assert lines["backup"].startswith("backup hg_x/residents: 3 objects verified (160 bytes), manifest s3://bk/")
    assert lines["load"].startswith(
        "load hg_x/residents: 12 rows in -> 5 inserted, 2 updated, 2 unchanged, 2 quarantined, 1 merged, 0 blocked;"
    )
    for line in lines.values():
        assert "\n" not in line and "{" not in line and "ghi_chu" not in line  # no raw dicts, no column lists
        assert not re.search(r"\d{12}", line)
    with pytest.raises(ValueError, match="unknown stage"):
        stage_summary("copy", BATCH, bucket="bk")


def test_great_expectations_info_lines_are_turned_down() -> None:
    gx = logging.getLogger("great_expectations.datasource.fluent.config")
    logging.getLogger("great_expectations").setLevel(logging.NOTSET)
    assert gx.isEnabledFor(logging.INFO) or logging.getLogger().level > logging.INFO
    quiet_library_logs()
    assert not gx.isEnabledFor(logging.INFO) and gx.isEnabledFor(logging.WARNING)


def test_a_task_callback_finds_the_batch_from_the_task_arguments() -> None:
    from types import SimpleNamespace

    from sapnhap.airflow_support import batch_of_task

    def context(task_id: str, **kwargs: object) -> dict:
        return {"ti": SimpleNamespace(task_id=task_id, map_index=1),
                "task": SimpleNamespace(task_id=task_id, op_kwargs=kwargs)}

    assert batch_of_task(context("hg_x.datasets.process", source_id="hg_x", dataset="residents",
                                 batch={})) == ("hg_x", "residents", "process")
    assert batch_of_task(context("hg_x.datasets.extract", source_id="hg_x", dataset="dossiers",
                                 selected=[])) == ("hg_x", "dossiers", "extract")
    failed = ValueError("boom")
    failed.sapnhap_stage = "validate"  # set by process_batch on what a stage raised
    assert batch_of_task({**context("hg_x.datasets.process", source_id="hg_x", dataset="residents", batch={}),
                          "exception": failed}) == ("hg_x", "residents", "validate")
    assert batch_of_task(context("hg_x.assess", source_id="hg_x", selected=[])) is None
    assert batch_of_task(context("report", selected=[])) is None
