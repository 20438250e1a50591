"""A new source is assessed once by whichever of its datasets' extracts gets there first (issue 12).

The nightly has no ``assess`` task per source: ``plan`` lists the selected sources never assessed
(:func:`sources_to_assess`) and the extracts of such a source call
:func:`assess_before_first_load` first. They run at the same time; the per-source advisory lock
makes one of them profile the source and queue the owners' email while the others wait.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from sapnhap.airflow_support import STAGE_ATTRIBUTE, assess_before_first_load, sources_to_assess
from sapnhap.services import S3Config, Services
from sapnhap.sources import get_source
from sapnhap.sync.prepare import prepare_run

pytestmark = pytest.mark.integration


@pytest.fixture
def world(tmp_path: Path, pg_admin_dsn: str):  # noqa: ANN201
    from sapnhap_dev.demo.generator import generate_world

    w = generate_world(tmp_path / "world", seed=5, size=10, pg_dsn=pg_admin_dsn, db_prefix=f"ax{uuid.uuid4().hex[:6]}")
    try:
        yield w
    finally:
        w.drop_databases()


def test_concurrent_extracts_of_a_new_source_assess_it_once(world, platform_dsn: str, s3_config: S3Config,
                                                            smtp_sink) -> None:  # noqa: ANN001
    smtp, _ = smtp_sink
    services = Services(platform_dsn=platform_dsn, s3=s3_config, smtp=smtp)
    source = get_source("tq_sonduong_dancu")
    other = get_source("hg_bacquang_sqlite")
    prepare_run(services, "r1")
    assert sources_to_assess(platform_dsn, [source.id, other.id]) == [source.id, other.id]
    connection = world.connections[source.conn_id]
    with ThreadPoolExecutor(3) as pool:
        done = list(pool.map(lambda _: assess_before_first_load(services, source, connection, run_id="r1"), range(3)))
    assert sorted(d["assessed"] for d in done) == [False, False, True]
    with psycopg.connect(platform_dsn) as conn:
        assert conn.execute("SELECT source_id FROM ops.assessments").fetchall() == [(source.id,)]
        assert conn.execute("SELECT count(*) FROM ops.outbox WHERE kind = 'assessment'").fetchone()[0] == 1
    assert sources_to_assess(platform_dsn, [source.id, other.id]) == [other.id]
    assert sources_to_assess(platform_dsn, []) == []


def test_a_failing_assessment_is_the_assess_stage_of_the_extract(world, platform_dsn: str, s3_config: S3Config,
                                                                 smtp_sink) -> None:  # noqa: ANN001
    smtp, _ = smtp_sink
    services = Services(platform_dsn=platform_dsn, s3=s3_config, smtp=smtp)
    source = get_source("tq_sonduong_dancu")
    prepare_run(services, "r1")
    with pytest.raises(Exception) as failed:  # noqa: PT011 - whatever the driver raises for a dead server
        assess_before_first_load(services, source, "postgresql://nobody@127.0.0.1:1/none", run_id="r1")
    assert getattr(failed.value, STAGE_ATTRIBUTE) == "assess"
    assert sources_to_assess(platform_dsn, [source.id]) == [source.id]  # still new: the next try assesses it
