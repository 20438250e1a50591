"""ops.runs ends as Airflow ended the run; the assessment of a new source never waits for the mail server."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest

from sapnhap.assessment import assessment_step, needs_assessment
from sapnhap.reports import send_run_reports
from sapnhap.runs import close_run_from_context, finish_run, stage_failure_from_context, sweep_runs
from sapnhap.services import S3Config, Services, SmtpConfig
from sapnhap.sources import get_source
from sapnhap.sync.extract import extract_stage
from sapnhap.sync.prepare import prepare_run
from sapnhap_dev.embedded import free_port, read_mail

pytestmark = pytest.mark.integration


def _runs(dsn: str) -> dict[str, tuple]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT run_id, status, finished_at IS NOT NULL, message FROM ops.runs").fetchall()
    return {r[0]: r[1:] for r in rows}


def _open(dsn: str, *run_ids: str) -> None:
    with psycopg.connect(dsn) as conn:
        for r in run_ids:
            conn.execute("INSERT INTO ops.runs (run_id) VALUES (%s)", (r,))  # as prepare opens a run


def test_finish_run_records_airflow_final_state(platform_dsn: str) -> None:
    _open(platform_dsn, "r1", "r2")
    # Reconcile passed, then the report task failed: Airflow says failed, so does ops.runs.
    with psycopg.connect(platform_dsn) as conn:
        conn.execute("UPDATE ops.runs SET status = 'succeeded', finished_at = now() WHERE run_id = 'r1'")
    finish_run(platform_dsn, "r1", "failed", "failed tasks: report")
    finish_run(platform_dsn, "r2", "success")
    finish_run(platform_dsn, "r0", "failed", "prepare never ran")  # a run that never opened its row
    runs = _runs(platform_dsn)
    assert runs["r1"] == ("failed", True, "failed tasks: report")
    assert runs["r2"] == ("succeeded", True, None)
    assert runs["r0"] == ("failed", True, "prepare never ran")
    with pytest.raises(ValueError, match="not a final Airflow state"):
        finish_run(platform_dsn, "r2", "running")


def test_the_dag_callback_closes_the_run_with_the_dag_runs_state(platform_dsn: str) -> None:
    from types import SimpleNamespace

    from airflow.utils.state import DagRunState

    _open(platform_dsn, "manual__1", "manual__2")
    failed = {"dag_run": SimpleNamespace(run_id="manual__1", state=DagRunState.FAILED), "reason": "task_failure"}
    assert close_run_from_context(failed, platform_dsn) == "failed"
    ok = {"dag_run": SimpleNamespace(run_id="manual__2", state=DagRunState.SUCCESS), "reason": "success"}
    assert close_run_from_context(ok, platform_dsn) == "succeeded"
    runs = _runs(platform_dsn)
    assert runs["manual__1"] == ("failed", True, "Airflow: task_failure")
    assert runs["manual__2"] == ("succeeded", True, None)


def test_sweep_closes_runs_whose_airflow_run_ended(platform_dsn: str) -> None:
    _open(platform_dsn, "failed_run", "good_run", "current", "forgotten", "still_running")
    airflow = {"failed_run": "failed", "good_run": "success", "current": "running", "still_running": "running"}
    closed = sweep_runs(platform_dsn, airflow.get, exclude=["current"])
    assert closed == {"failed_run": "failed", "good_run": "succeeded", "forgotten": "failed"}
    runs = _runs(platform_dsn)
    assert runs["failed_run"][:2] == ("failed", True) and "without its final callback" in runs["failed_run"][2]
    assert runs["good_run"] == ("succeeded", True, None)
    assert runs["forgotten"][:2] == ("failed", True)
    assert runs["current"][:2] == runs["still_running"][:2] == ("running", False)
    assert sweep_runs(platform_dsn, airflow.get, exclude=["current"]) == {}  # nothing left to close


def test_prepare_closes_the_runs_airflow_ended_without_a_callback(services) -> None:
    _open(services.platform_dsn, "killed_run", "gone_run", "still_running")
    airflow = {"killed_run": "failed", "still_running": "running", "tonight": "running"}
    opened = prepare_run(services, "tonight", airflow_state=airflow.get)
    assert opened["swept"] == {"killed_run": "failed", "gone_run": "failed"}
    runs = _runs(services.platform_dsn)
    assert runs["killed_run"][:2] == ("failed", True) and "without its final callback" in runs["killed_run"][2]
    assert runs["gone_run"][:2] == ("failed", True) and "unknown to Airflow" in runs["gone_run"][2]
    assert runs["still_running"][:2] == runs["tonight"][:2] == ("running", False)


def test_airflow_run_state_asks_airflow_about_the_dags_runs() -> None:
    from types import SimpleNamespace

    from airflow.utils.state import DagRunState

    from sapnhap.runs import airflow_run_state

    known = {"manual__1": DagRunState.FAILED, "manual__2": DagRunState.RUNNING}
    asked = []

    def get_dr_count(*, dag_id: str, run_ids: list[str]) -> int:
        asked.append(dag_id)
        return sum(r in known for r in run_ids)

    ti = SimpleNamespace(dag_id="sapnhap_nightly", get_dr_count=get_dr_count,
                         get_dagrun_state=lambda *, dag_id, run_id: known[run_id])
    state = airflow_run_state({"ti": ti})
    assert [state("manual__1"), state("manual__2"), state("manual__0")] == ["failed", "running", None]
    assert set(asked) == {"sapnhap_nightly"}


def test_a_failed_stage_task_writes_its_error_on_the_batches_it_left(platform_dsn: str) -> None:
    from types import SimpleNamespace

    from sapnhap.storage import BackupError

    with psycopg.connect(platform_dsn) as conn:
        conn.execute("""INSERT INTO ops.batches (batch_id, run_id, source_id, dataset, status, message) VALUES
                        ('r1|src|residents', 'r1', 'src', 'residents', 'extracted', 'unmapped legacy columns: ghi_chu'),
                        ('r1|src|households', 'r1', 'src', 'households', 'loaded', NULL)""")
    datasets = {"src": ["residents", "households", "dossiers"]}
    error = BackupError("object storage: put backups/x failed: Could not connect to the endpoint (001203012345)")
    context = {"ti": SimpleNamespace(task_id="src.backup", run_id="r1"), "run_id": "r1", "exception": error}
    assert stage_failure_from_context(context, platform_dsn, datasets) == 2
    assert stage_failure_from_context({**context, "ti": SimpleNamespace(task_id="report", run_id="r1")},
                                      platform_dsn, datasets) == 0
    with psycopg.connect(platform_dsn) as conn:
        rows = dict(conn.execute("SELECT dataset, status || ' ' || coalesce(message, '') FROM ops.batches").fetchall())
    assert rows["residents"].startswith("extracted failed at backup: BackupError: object storage: put backups/x failed")
    assert "001******345" in rows["residents"] and "001203012345" not in rows["residents"]
    assert rows["households"] == "loaded "  # committed: its record is not rewritten
    assert rows["dossiers"].startswith("failed failed at backup: BackupError")  # the stage never created it


@pytest.fixture
def world(tmp_path: Path, pg_admin_dsn: str):
    from sapnhap_dev.demo.generator import generate_world

    w = generate_world(tmp_path / "world", seed=5, size=10, pg_dsn=pg_admin_dsn, db_prefix=f"as{uuid.uuid4().hex[:6]}")
    try:
        yield w
    finally:
        w.drop_databases()


def test_a_mail_outage_never_blocks_a_new_source_and_its_assessment_arrives_once(
    world, platform_dsn: str, s3_config: S3Config, smtp_sink
) -> None:
    smtp, folder = smtp_sink
    source = get_source("tq_sonduong_dancu")
    connection = world.connections[source.conn_id]
    down = Services(platform_dsn=platform_dsn, s3=s3_config,
                    smtp=SmtpConfig(host="127.0.0.1", port=free_port(), timeout=3))
    prepare_run(down, "r1")
    result = assessment_step(down, source, connection, run_id="r1")  # the mail server is down: no exception
    assert result["assessed"] and not result["email_sent"]
    with psycopg.connect(platform_dsn) as conn:
        assert conn.execute("SELECT kind, status FROM ops.outbox").fetchall() == [("assessment", "pending")]
    assert not needs_assessment(down, source)  # stored: not profiled again tomorrow
    batch = extract_stage(down, source, "residents", connection, run_id="r1", run_date="2025-12-01")
    assert batch["rows"] > 0  # the source goes on to load
    assert assessment_step(down, source, connection, run_id="r1") == {"source_id": source.id, "assessed": False}

    # The mail server is back: the report task sends the waiting assessment, once per owner.
    up = Services(platform_dsn=platform_dsn, s3=s3_config, smtp=smtp)
    send_run_reports(up, "r1", [source])
    send_run_reports(up, "r1", [source])
    assessments = [m for m in read_mail(folder) if "Đánh giá hiện trạng dữ liệu" in str(m["Subject"])]
    assert [str(m["To"]) for m in assessments] == [", ".join(source.owners)]
