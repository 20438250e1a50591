"""The committed suites are what the generator produces, and every expectation says why."""

from __future__ import annotations

import great_expectations as gx
import pytest

from sapnhap.datasets import DATASETS
from sapnhap.quality.suites import STAGES, SUITE_VERSION, build_suite, dump_suite, load_suite, suite_path

SUITES = [(name, stage) for name in sorted(DATASETS) for stage in STAGES]


@pytest.mark.parametrize(("dataset", "stage"), SUITES)
def test_committed_suite_matches_generator(dataset, stage):
    committed = suite_path(dataset, stage).read_text(encoding="utf-8")
    assert committed == dump_suite(build_suite(dataset, stage)), (
        "regenerate: PYTHONPATH=include python -m sapnhap.quality.suites"
    )


@pytest.mark.parametrize(("dataset", "stage"), SUITES)
def test_every_expectation_has_notes_and_report_meta(dataset, stage):
    suite = load_suite(dataset, stage)
    assert suite["name"] == f"{dataset}.{stage}"
    assert suite["meta"]["suite_version"] == SUITE_VERSION
    for exp in suite["expectations"]:
        meta = exp["meta"]
        assert exp["notes"], meta["check"]
        assert meta["severity"] in ("block", "warn")
        assert meta["reason_vi"] and meta["fix_vi"] and meta["column"]
        if stage == "raw":
            assert meta["severity"] == "warn"


@pytest.mark.parametrize(("dataset", "stage"), SUITES)
def test_gx_accepts_every_expectation(dataset, stage):
    suite = load_suite(dataset, stage)
    gx_suite = gx.ExpectationSuite(name=suite["name"], expectations=suite["expectations"], meta=suite["meta"])
    assert len(gx_suite.expectations) == len(suite["expectations"])


def test_mapping_failures_have_distinct_reasons():
    exps = {e["meta"]["check"]: e for e in load_suite("residents")["expectations"]}
    reasons = {exps[f"mapping_status.{s}"]["meta"]["reason_vi"] for s in ("unknown_code", "review", "missing_code")}
    assert len(reasons) == 3


def test_old_code_after_merger_only_warns():
    exps = {e["meta"]["check"]: e for e in load_suite("dossiers")["expectations"]}
    assert exps["old_code_after_merger"]["meta"]["severity"] == "warn"
    assert exps["old_code_after_merger"]["severity"] == "warning"
    assert exps["mapping_status.review"]["severity"] == "critical"


def test_unknown_stage_is_an_error():
    with pytest.raises(ValueError, match="stage"):
        build_suite("residents", "loaded")
