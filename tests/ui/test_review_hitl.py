"""The Required Action of a night that leaves split-commune records waiting for a decision.

The nightly announces waiting records on the review asset; ``sapnhap_review`` holds the
Required Action (never the nightly: ``airflow dags test`` would wait for the answer).
The browser side (the Required Actions inbox) is in ``test_sapnhap_pages.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from world import UNRULED_VILLAGE, build_world

from sapnhap.review_hitl import (
    DECIDED,
    LATER,
    REVIEW_DAG_ID,
    REVIEW_PAGE,
    REVIEW_WAITING_ALIAS,
    announce_waiting_reviews,
    review_asset,
    review_request,
    review_required_action,
    waiting_reviews,
)
from sapnhap.services import Services
from sapnhap.ui_queries import decide_group, review_groups


@pytest.mark.integration
def test_a_night_with_waiting_records_asks_for_a_decision_until_it_is_taken(
    tmp_path: Path, platform_dsn: str, s3_config, smtp_sink
) -> None:
    world = build_world(tmp_path, Services(platform_dsn=platform_dsn, s3=s3_config, smtp=smtp_sink[0]))
    waiting = waiting_reviews(platform_dsn)
    assert (waiting.records, waiting.groups) == (2, 1)
    assert waiting.communes == (f"Phường Quang Trung ({world.split_commune})",)
    request = review_request(waiting, world.run_ids[-1], "http://airflow.example:8080/")
    assert request["subject"] == "2 bản ghi của xã bị chia tách chờ quyết định (1 nhóm)"
    assert f"(http://airflow.example:8080{REVIEW_PAGE})" in request["body"] and world.run_ids[-1] in request["body"]

    (group,) = [g for g in review_groups(platform_dsn) if g.detail == UNRULED_VILLAGE]
    decide_group(platform_dsn, group.group_id, group.candidates[0].code, decided_by="canbo.dulieu")
    assert review_request(waiting_reviews(platform_dsn), world.run_ids[-1]) is None


def test_the_required_action_follows_a_check_that_skips_it_when_nothing_waits() -> None:
    from airflow.providers.standard.operators.hitl import HITLOperator
    from airflow.sdk import DAG

    with DAG("hitl_wiring", schedule=None) as dag:
        check = review_required_action()
    action = dag.get_task("review_required_action")
    assert isinstance(action, HITLOperator)
    assert (action.options, action.defaults) == ([DECIDED, LATER], [LATER])
    assert action.response_timeout is not None and action.response_timeout.total_seconds() < 24 * 3600
    assert check.operator.task_id == "reviews_waiting" and "ShortCircuit" in type(check.operator).__name__
    assert dag.get_task("reviews_waiting").downstream_task_ids == {"review_required_action"}
    assert "reviews_waiting" in action.subject and "['body']" in action.body


class _Events:
    """What a task's outlet events accessor of an asset alias records."""

    def __init__(self) -> None:
        self.added: list[tuple[object, dict]] = []

    def add(self, asset: object, extra: dict | None = None) -> None:
        self.added.append((asset, extra or {}))


@pytest.mark.integration
def test_the_nightly_announces_waiting_records_on_the_review_asset_only_while_they_wait(
    tmp_path: Path, platform_dsn: str, s3_config, smtp_sink
) -> None:
    build_world(tmp_path, Services(platform_dsn=platform_dsn, s3=s3_config, smtp=smtp_sink[0]))
    events = _Events()
    announce_waiting_reviews(events, platform_dsn, "scheduled__2026-11-20T18:00:00+00:00")
    [(asset, extra)] = events.added
    assert asset == review_asset()
    assert extra == {"run_id": "scheduled__2026-11-20T18:00:00+00:00", "records": 2, "groups": 1}

    (group,) = review_groups(platform_dsn)
    decide_group(platform_dsn, group.group_id, group.candidates[0].code, decided_by="canbo.dulieu")
    events = _Events()
    assert announce_waiting_reviews(events, platform_dsn, "r2").records == 0
    assert events.added == []


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow_home")))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    from airflow.dag_processing.dagbag import DagBag

    from sapnhap_dev.embedded import PROJECT_ROOT

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert bag.import_errors == {}
    return bag


def test_the_review_dag_runs_on_the_review_asset_and_holds_the_required_action(dagbag) -> None:  # noqa: ANN001
    from airflow.providers.standard.operators.hitl import HITLOperator

    dag = dagbag.dags[REVIEW_DAG_ID]
    assert dag.timetable.asset_condition == review_asset()
    assert dag.max_active_runs == 1 and dag.dagrun_timeout is not None
    action = dag.get_task("review_required_action")
    assert isinstance(action, HITLOperator) and action.defaults == [LATER]
    # Answered or not, it closes before the next night (01:00) and the run before the day ends.
    assert action.response_timeout.total_seconds() <= 20 * 3600 < dag.dagrun_timeout.total_seconds() < 24 * 3600
    check = dag.get_task("reviews_waiting")
    assert check.execution_timeout is not None and check.downstream_task_ids == {"review_required_action"}


def test_the_nightly_never_waits_for_a_human_and_publishes_the_review_asset(dagbag) -> None:  # noqa: ANN001
    from airflow.providers.standard.operators.hitl import HITLOperator
    from airflow.sdk import AssetAlias

    nightly = dagbag.dags["sapnhap_nightly"]
    assert not [t.task_id for t in nightly.tasks if isinstance(t, HITLOperator)]
    assert AssetAlias(REVIEW_WAITING_ALIAS) in nightly.get_task("publish").outlets
