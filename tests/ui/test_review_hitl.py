"""The Required Action of a night that leaves split-commune records waiting for a decision."""

from __future__ import annotations

from pathlib import Path

import pytest
from world import UNRULED_VILLAGE, build_world

from sapnhap.review_hitl import DECIDED, LATER, REVIEW_PAGE, review_request, review_required_action, waiting_reviews
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
