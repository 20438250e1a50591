"""The spine end to end: ``airflow dags test`` of the nightly DAG on real services.

PostgreSQL (the machine's, or embedded pgserver), moto's S3 API, an aiosmtpd sink, Airflow
with a SQLite metadata DB; the demo world's legacy systems (PostgreSQL, SQLite, CSV/XLSX).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import uuid
from pathlib import Path

import psycopg
import pytest

from conftest import pg_url
from sapnhap import storage
from sapnhap.runner import pools_of
from sapnhap.sources import load_sources
from sapnhap_dev.embedded import airflow_env, drop_platform, prepare_airflow, read_mail, start_stack
from sapnhap_dev.runner import account_for, run_nightly

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CORE_TABLES = ("dossiers", "dossier_steps", "residents", "households")


def _fingerprint(dsn: str) -> dict[str, tuple]:
    """Row count and an order-independent checksum of every core and history table."""
    out = {}
    with psycopg.connect(dsn) as conn:
        for schema in ("core", "history"):
            for table in CORE_TABLES:
                exclude = "valid_from, batch_id" if schema == "core" else "history_id"
                cols = [
                    r[0] for r in conn.execute(
                        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s"
                        " ORDER BY ordinal_position", (schema, table),
                    ).fetchall() if r[0] not in exclude
                ]
                row = conn.execute(
                    f"SELECT count(*), coalesce(sum(hashtext(concat_ws('|', {', '.join(cols)}))::numeric), 0) FROM {schema}.{table}"
                ).fetchone()
                out[f"{schema}.{table}"] = tuple(row)
    return out


@pytest.fixture(scope="module")
def nightly(tmp_path_factory: pytest.TempPathFactory, pg_admin_dsn: str):
    from sapnhap_dev.demo.generator import generate_world

    workdir = tmp_path_factory.mktemp("nightly")
    db = f"sapnhap_e2e_{uuid.uuid4().hex[:8]}"
    prefix = f"lg{uuid.uuid4().hex[:6]}"
    mp = pytest.MonkeyPatch()
    mp.setenv("SAPNHAP_PLATFORM_URL", pg_url(pg_admin_dsn, db))
    try:
        stack = start_stack(workdir)
    except BaseException:
        mp.undo()  # a failed start must not leave the URL to the tests that follow
        raise
    try:
        world = generate_world(workdir / "world", seed=7, size=40, pg_dsn=stack.admin_dsn(), db_prefix=prefix)
        env = airflow_env(stack, world.connections)
        prepare_airflow(env, pools_of(load_sources()))
        first = run_nightly(env, workdir / "run1.log")
        yield {"stack": stack, "world": world, "env": env, "first": first, "workdir": workdir}
    finally:
        stack.stop()
        mp.undo()
        drop_platform(stack.admin_dsn(), stack.platform["schema"])  # and its owner and loader logins
        with psycopg.connect(stack.admin_dsn(), autocommit=True) as conn:
            for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",)).fetchall():
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_nightly_sync_succeeds(nightly) -> None:
    log = Path(nightly["first"].log)
    assert nightly["first"].state == "success", log.read_text()[-5000:]


def test_records_land_under_new_codes_with_lineage(nightly) -> None:
    dsn = nightly["stack"].platform_dsn
    with psycopg.connect(dsn) as conn:
        for table in ("dossiers", "residents"):
            rows = conn.execute(
                f"SELECT new_province_code, count(*), count(*) FILTER (WHERE source_id IS NULL OR source_key IS NULL)"
                f" FROM core.{table} GROUP BY 1"
            ).fetchall()
            assert rows and {r[0] for r in rows} == {"08"}, rows
            assert sum(r[2] for r in rows) == 0
        bad = conn.execute(
            """SELECT count(*) FROM core.residents r
               LEFT JOIN registry.units u ON u.scheme = 'new' AND u.level = 'commune' AND u.code = r.new_commune_code
               WHERE u.code IS NULL"""
        ).fetchone()[0]
        assert bad == 0
        old_units = conn.execute("SELECT DISTINCT old_province_code FROM core.dossiers").fetchall()
        assert {r[0] for r in old_units} <= {"02", "08"}


def test_every_generated_record_is_accounted_for(nightly) -> None:
    outcome = account_for(nightly["stack"].platform_dsn, nightly["world"].ledger)
    assert not outcome.empty
    missing = outcome[outcome["outcome"] == "missing"]
    assert missing.empty, missing.head(20).to_string()
    counts = outcome["outcome"].value_counts()
    assert counts.get("loaded", 0) > 0 and counts.get("quarantined", 0) > 0 and counts.get("merged", 0) > 0
    with psycopg.connect(nightly["stack"].platform_dsn) as conn:
        rec = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE NOT ok OR extracted <> loaded + quarantined + merged_duplicates + not_loaded_blocked) FROM ops.reconciliation"
        ).fetchone()
    assert rec[0] == sum(len(s.datasets) for s in load_sources()) and rec[1] == 0
    with psycopg.connect(nightly["stack"].platform_dsn) as conn:
        runs = conn.execute("SELECT status, finished_at IS NOT NULL FROM ops.runs").fetchall()
    assert runs == [("succeeded", True)]


def test_batches_are_backed_up_with_manifests(nightly) -> None:
    stack = nightly["stack"]
    keys = storage.list_keys(stack.s3, "backups/")
    manifests = [k for k in keys if k.endswith("manifest.json")]
    assert len(manifests) == sum(len(s.datasets) for s in load_sources())
    manifest = storage.get_json(stack.s3, manifests[0])
    for obj in manifest["objects"].values():
        storage.verify_object(stack.s3, obj)
    assert {"raw", "transformed", "valid", "quarantine"} <= set(manifest["objects"])
    assert manifest["crosswalk_version"] and manifest["complete"] is True
    # GX Data Docs of a batch with failing rows are archived beside it (pages and styles; not GX's fonts
    # and images); a clean batch gets none.
    failing = [m for m in (storage.get_json(stack.s3, k) for k in manifests) if m["counts"]["quarantined"]]
    assert failing
    for m in failing:
        assert any(k.endswith("data_docs/index.html") for k in m["data_docs"])
        assert any("/data_docs/validations/" in k for k in m["data_docs"])
    assert not any("/static/images/" in k or "/static/fonts/" in k for k in keys)


def test_owners_get_mail(nightly) -> None:
    messages = read_mail(nightly["stack"].mail_dir)
    sources = load_sources()
    reports = [m for m in messages if "Kết quả đồng bộ" in str(m["Subject"])]
    assert sorted(m["To"] for m in reports) == sorted({o for s in sources for o in s.owners})
    # R13: every new source was assessed (profiled) and its owners told, before its first load.
    assessments = [m for m in messages if "Đánh giá hiện trạng" in str(m["Subject"])]
    assert sorted(m["To"] for m in assessments) == sorted(", ".join(s.owners) for s in sources)
    with psycopg.connect(nightly["stack"].platform_dsn) as conn:
        assessed = conn.execute("SELECT source_id, row_counts FROM ops.assessments").fetchall()
        # Once per source though several extracts of its datasets ask for it, and before any batch of it.
        late = conn.execute("""SELECT a.source_id FROM ops.assessments a JOIN ops.batches b USING (source_id)
                               WHERE b.created_at < a.assessed_at""").fetchall()
    assert {a[0] for a in assessed} == {s.id for s in sources} and len(assessed) == len(sources)
    assert all(sum(counts.values()) > 0 for _, counts in assessed)
    assert late == []


def test_owner_reports_are_vietnamese_masked_with_chart_and_their_quarantine(nightly) -> None:
    import io
    import re

    from openpyxl import load_workbook

    sources = load_sources()
    reports = [m for m in read_mail(nightly["stack"].mail_dir) if "Kết quả đồng bộ" in str(m["Subject"])]
    with psycopg.connect(nightly["stack"].platform_dsn) as conn:
        open_rows = conn.execute("SELECT quarantine_id, source_id FROM ops.quarantine WHERE status = 'open'").fetchall()
        names = [r[0] for r in conn.execute("SELECT full_name FROM core.residents LIMIT 50").fetchall()]
    assert open_rows
    for message in reports:
        owned = {s.id for s in sources if message["To"] in s.owners}
        body = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        assert "Tóm tắt" in body and "cách ly" in body.lower()
        for part in (body, text, str(message["Subject"])):
            assert not re.search(r"(?<!\d)\d{12}(?!\d)", part), "an unmasked citizen ID in the email"
            assert not any(name in part for name in names), "an unmasked name in the email"
        images = [p for p in message.walk() if p.get_content_type() == "image/png"]
        assert images and images[0].get_content()[:8] == b"\x89PNG\r\n\x1a\n"
        expected = {qid for qid, sid in open_rows if sid in owned}
        attachments = [p for p in message.iter_attachments() if str(p.get_filename()).endswith(".xlsx")]
        if not expected and not attachments:
            continue
        # Attached when there are open quarantine rows or tonight's warnings (sheet canh_bao).
        (attachment,) = attachments
        sheet = load_workbook(io.BytesIO(attachment.get_content()), read_only=True)["cach_ly"]
        rows = list(sheet.iter_rows(values_only=True))
        ids = {int(r[rows[0].index("quarantine_id")]) for r in rows[1:]}
        assert ids == expected  # exactly that owner's quarantined rows, with reasons
        assert all(r[rows[0].index("reason_vi")] for r in rows[1:])


def test_second_run_changes_nothing(nightly) -> None:
    dsn = nightly["stack"].platform_dsn
    before = _fingerprint(dsn)
    mails_before = len(read_mail(nightly["stack"].mail_dir))
    second = run_nightly(nightly["env"], nightly["workdir"] / "run2.log")
    assert second.state == "success", Path(second.log).read_text()[-5000:]
    assert _fingerprint(dsn) == before
    # Nothing new for anyone: no email (no owner asked for daily confirmations in the demo).
    assert len(read_mail(nightly["stack"].mail_dir)) == mails_before
    with psycopg.connect(dsn) as conn:
        dup_quarantine = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM ops.quarantine GROUP BY source_id, dataset, source_key, record_hash,"
            " expectation, column_name HAVING count(*) > 1) d"
        ).fetchone()[0]
    assert dup_quarantine == 0


def test_accounts_dag_remaps_people_after_the_nightly_loads(nightly) -> None:
    from sapnhap_dev.runner import ACCOUNTS_DAG_ID

    result = run_nightly(nightly["env"], nightly["workdir"] / "accounts.log", dag_id=ACCOUNTS_DAG_ID)
    assert result.state == "success", Path(result.log).read_text()[-5000:]
    with psycopg.connect(nightly["stack"].platform_dsn) as conn:
        people, addresses, forwards = conn.execute(
            """SELECT (SELECT count(*) FROM accounts.people),
                      (SELECT count(DISTINCT address) FROM accounts.people),
                      (SELECT count(*) FROM accounts.mail_forwarding)"""
        ).fetchone()
    assert people > 0 and addresses == people and forwards > 0
    keys = storage.list_keys(nightly["stack"].s3, "exports/accounts/")
    assert any(k.endswith("directory.ldif") for k in keys) and any(k.endswith("directory.csv") for k in keys)


@pytest.mark.skipif(os.environ.get("SAPNHAP_SKIP_SLOW") == "1", reason="SAPNHAP_SKIP_SLOW=1")
def test_reconcile_fails_the_run_when_a_row_goes_missing(nightly) -> None:
    from sapnhap.load import ReconciliationError
    from sapnhap.services import Services
    from sapnhap.sync.reconcile import reconcile_run

    dsn = nightly["stack"].platform_dsn
    with psycopg.connect(dsn) as conn:
        run_id, source_id, dataset = conn.execute(
            "SELECT run_id, source_id, dataset FROM ops.reconciliation ORDER BY checked_at DESC LIMIT 1"
        ).fetchone()
    services = Services(platform_dsn=dsn, s3=nightly["stack"].s3, smtp=nightly["stack"].smtp)
    expected = [(s.id, d) for s in load_sources() for d in s.datasets]
    reconcile_run(services, run_id, expected)  # holds as recorded
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "UPDATE ops.reconciliation SET loaded = loaded - 1 WHERE run_id = %s AND source_id = %s AND dataset = %s",
            (run_id, source_id, dataset),
        )
    with pytest.raises(ReconciliationError, match="not reconciled"):
        reconcile_run(services, run_id, expected)
    with psycopg.connect(dsn) as conn:
        status, message = conn.execute("SELECT status, message FROM ops.runs WHERE run_id = %s", (run_id,)).fetchone()
    assert status == "failed" and source_id in message


def _airflow_db(nightly) -> sqlite3.Connection:
    return sqlite3.connect(Path(nightly["env"]["AIRFLOW_HOME"]) / "airflow.db")


def _new_mail(nightly, before: set[str]) -> list:
    from email import message_from_bytes, policy

    folder = nightly["stack"].mail_dir
    return [message_from_bytes(p.read_bytes(), policy=policy.default)
            for p in sorted(folder.glob("*.eml")) if p.name not in before]


def test_the_log_tells_the_story_without_noise_or_personal_data(nightly) -> None:
    log = Path(nightly["first"].log).read_text()
    sources = load_sources()
    for source in sources:
        for dataset in source.datasets:
            for stage in ("extract", "transform", "validate", "backup", "load"):
                assert re.search(rf"\] {stage} {source.id}/{dataset}: \d+ (rows|objects)", log), f"no {stage} line for {source.id}/{dataset}"
    assert re.search(r"\] load \w+/\w+: \d+ rows in -> \d+ inserted, \d+ updated, \d+ unchanged, \d+ quarantined", log)
    assert "Returned value was" not in log  # no task dumps its returned dict
    assert re.search(r"\] reconcile: \d+ batches reconciled: \d+ extracted = \d+ loaded", log)
    assert not re.search(r"\[info\s*\][^\n]*\[great_expectations", log), "GX info lines in the task logs"
    with psycopg.connect(nightly["stack"].platform_dsn) as conn:
        names = [r[0] for r in conn.execute("SELECT full_name FROM core.residents LIMIT 200").fetchall()]
        cids = [r[0] for r in conn.execute("SELECT citizen_id FROM core.residents WHERE citizen_id IS NOT NULL LIMIT 200")]
    assert names and not [n for n in names if n in log]
    assert cids and not [c for c in cids if c in log]


def test_the_ui_log_view_has_the_stage_lines_of_a_dags_test_run(nightly) -> None:
    """`airflow dags test` (the demo's runs) logs to its output only; run_nightly writes each task's
    log where the UI reads it (the API's log endpoint on these files: tests/ui/test_sapnhap_pages.py)."""
    import json

    runs = Path(nightly["env"]["AIRFLOW_HOME"], "logs", "dag_id=sapnhap_nightly").glob("run_id=*")
    [folder] = [r for r in runs if any(r.glob("task_id=publish/attempt=1.log"))][:1]
    for source in load_sources():
        for index, dataset in enumerate(source.datasets):
            path = folder / f"task_id={source.id}.datasets.process" / f"map_index={index}" / "attempt=1.log"
            events = [json.loads(line).get("event", "") for line in path.read_text().splitlines() if line.startswith("{")]
            for stage in ("transform", "validate", "backup", "load"):
                assert any(e.startswith(f"{stage} {source.id}/{dataset}: ") for e in events), (stage, path)
    plan = (folder / "task_id=plan" / "attempt=1.log").read_text()
    assert "plan: this run syncs" in plan


def test_xcom_holds_small_references(nightly) -> None:
    with _airflow_db(nightly) as db:
        rows = db.execute(
            "SELECT task_id, max(length(value)) FROM xcom WHERE dag_id = 'sapnhap_nightly' GROUP BY task_id"
        ).fetchall()
    sizes = dict(rows)
    assert any(t.endswith(".datasets.process") for t in sizes)
    too_big = {t: n for t, n in sizes.items() if n > 16000}
    assert not too_big, too_big
    # One XCom per task instance (its return value): before, each key of a returned dict was pushed
    # again as an XCom of its own, one API call each (~30 per extract).
    with _airflow_db(nightly) as db:
        keys = db.execute(
            """SELECT task_id, map_index, group_concat(key) FROM xcom WHERE dag_id = 'sapnhap_nightly'
               GROUP BY run_id, task_id, map_index""").fetchall()
    extra = {(t, m): k for t, m, k in keys if t != "plan" and k != "return_value"}
    assert not extra, extra
    assert any(t.endswith(".datasets.extract") for t, _, _ in keys)


def test_table_asset_events_carry_the_row_counts(nightly) -> None:
    with _airflow_db(nightly) as db:
        first_run = db.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = 'sapnhap_nightly' ORDER BY id LIMIT 1").fetchone()[0]
        events = db.execute(
            """SELECT a.name, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id
               WHERE e.source_dag_id = 'sapnhap_nightly' AND e.source_run_id = ?""", (first_run,)
        ).fetchall()
    by_table = {name: json.loads(extra) for name, extra in events if name.startswith("core.")}
    review = [json.loads(extra) for name, extra in events if name == "registry.review_queue"]
    assert len(by_table) + len(review) == len(events) and len(review) == 1  # one event per table
    # The demo world's split communes without a rule leave records waiting: sapnhap_review's event.
    assert review[0]["run_id"] == first_run and review[0]["records"] >= review[0]["groups"] > 0
    with psycopg.connect(nightly["stack"].platform_dsn) as conn:
        loaded = conn.execute(
            """SELECT dataset, sum(inserted), sum(updated), sum(extracted) FROM ops.batches
               WHERE run_id = %s AND status = 'loaded' GROUP BY dataset HAVING sum(inserted) + sum(updated) > 0""",
            (first_run,),
        ).fetchall()
    assert loaded and set(by_table) == {f"core.{d}" for d, *_ in loaded}
    for dataset, inserted, updated, extracted in loaded:
        extra = by_table[f"core.{dataset}"]
        assert (extra["inserted"], extra["updated"], extra["extracted"]) == (inserted, updated, extracted)
        assert sum(b["inserted"] for b in extra["batches"]) == inserted
    # The second run changed nothing: no table event, nothing for the accounts DAG to redo.
    with _airflow_db(nightly) as db:
        later = db.execute(
            """SELECT count(*) FROM asset_event e JOIN asset a ON a.id = e.asset_id
               WHERE e.source_dag_id = 'sapnhap_nightly' AND e.source_run_id <> ? AND a.name LIKE 'core.%'""",
            (first_run,),
        ).fetchone()[0]
    assert later == 0


def test_a_conf_key_that_is_no_param_fails_the_run_and_touches_nothing(nightly) -> None:
    dsn = nightly["stack"].platform_dsn
    before_mail = {p.name for p in nightly["stack"].mail_dir.glob("*.eml")}
    with psycopg.connect(dsn) as conn:
        batches = conn.execute("SELECT count(*) FROM ops.batches").fetchone()[0]
    result = run_nightly(nightly["env"], nightly["workdir"] / "stray.log", conf={"source": load_sources()[0].id})
    log = Path(result.log).read_text()
    assert result.state == "failed", log[-5000:]
    assert "['source'] are not params of this DAG" in log
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM ops.batches").fetchone()[0] == batches
    assert _new_mail(nightly, before_mail) == []


def test_a_run_of_one_source_syncs_and_reports_that_source_only(nightly) -> None:
    from sapnhap_dev.demo.generator import mutate_world

    sources = load_sources()
    # Every legacy system changes; the team asks for one source only.
    chosen = next(s for s in sources if len(s.datasets) > 1 and s.kind != "files")
    others = [s for s in sources if s.id != chosen.id]
    mutate_world(nightly["world"], fraction=0.1, seed=11)
    dsn = nightly["stack"].platform_dsn
    with psycopg.connect(dsn) as conn:
        cursors_before = dict(conn.execute(
            "SELECT source_id || '/' || dataset, cursor_value FROM ops.cursors").fetchall())
    before_mail = {p.name for p in nightly["stack"].mail_dir.glob("*.eml")}

    result = run_nightly(nightly["env"], nightly["workdir"] / "one-source.log", conf={"sources": [chosen.id]})
    assert result.state == "success", Path(result.log).read_text()[-5000:]

    with _airflow_db(nightly) as db:
        run_id = db.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = 'sapnhap_nightly' ORDER BY id DESC LIMIT 1").fetchone()[0]
        states = dict(db.execute(
            "SELECT task_id || ':' || map_index, state FROM task_instance WHERE dag_id = 'sapnhap_nightly' AND run_id = ?",
            (run_id,)).fetchall())
    with psycopg.connect(dsn) as conn:
        batches = conn.execute("SELECT source_id, dataset FROM ops.batches WHERE run_id = %s", (run_id,)).fetchall()
        cursors_after = dict(conn.execute(
            "SELECT source_id || '/' || dataset, cursor_value FROM ops.cursors").fetchall())
        reconciled = conn.execute("SELECT count(*) FROM ops.reconciliation WHERE run_id = %s", (run_id,)).fetchone()[0]
    assert sorted(batches) == sorted((chosen.id, d) for d in chosen.datasets)
    assert reconciled == len(chosen.datasets)
    for other in others:  # the others' changes wait for their next run
        for dataset in other.datasets:
            key = f"{other.id}/{dataset}"
            assert cursors_after.get(key) == cursors_before.get(key)
        assert all(states[f"{other.id}.datasets.{stage}:{i}"] == "skipped"
                   for stage in ("extract", "process") for i in range(len(other.datasets)))
    assert all(states[f"{chosen.id}.datasets.process:{i}"] == "success" for i in range(len(chosen.datasets)))

    mail = _new_mail(nightly, before_mail)
    reports = [m for m in mail if "Kết quả đồng bộ" in str(m["Subject"])]
    assert reports, "the chosen source changed: its owners get the night's report"
    assert {m["To"] for m in reports} == set(chosen.owners)
    assert {str(m["To"]) for m in mail} <= set(chosen.owners)


def test_a_run_of_one_dataset_skips_the_sources_other_datasets(nightly) -> None:
    chosen = next(s for s in load_sources() if len(s.datasets) > 1 and s.kind != "files")
    wanted, *others = list(chosen.datasets)
    result = run_nightly(nightly["env"], nightly["workdir"] / "one-dataset.log",
                         conf={"sources": [chosen.id], "datasets": [wanted]})
    assert result.state == "success", Path(result.log).read_text()[-5000:]
    with _airflow_db(nightly) as db:
        run_id = db.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = 'sapnhap_nightly' ORDER BY id DESC LIMIT 1").fetchone()[0]
        states = dict(db.execute(
            "SELECT task_id || ':' || coalesce(rendered_map_index, map_index), state FROM task_instance"
            " WHERE dag_id = 'sapnhap_nightly' AND run_id = ? AND task_id LIKE ?", (run_id, f"{chosen.id}.%")).fetchall())
    with psycopg.connect(nightly["stack"].platform_dsn) as conn:
        batches = conn.execute("SELECT source_id, dataset FROM ops.batches WHERE run_id = %s", (run_id,)).fetchall()
    assert batches == [(chosen.id, wanted)]
    assert states[f"{chosen.id}.datasets.extract:{wanted}"] == "success"  # instances are named by their dataset
    for dataset in others:
        assert states[f"{chosen.id}.datasets.extract:{dataset}"] == "skipped"


def test_prepare_closes_runs_airflow_ended_without_a_callback(nightly) -> None:
    """A run whose final callback never came (a scheduler restart) stays ``running`` in ops.runs until
    the next night's prepare asks Airflow about it."""
    dsn = nightly["stack"].platform_dsn
    with _airflow_db(nightly) as db:
        first_run = db.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = 'sapnhap_nightly' ORDER BY id LIMIT 1").fetchone()[0]
    with psycopg.connect(dsn) as conn:
        # The first run's callback lost, and a run Airflow never had (its database was reset).
        conn.execute("UPDATE ops.runs SET status = 'running', finished_at = NULL WHERE run_id = %s", (first_run,))
        conn.execute("INSERT INTO ops.runs (run_id) VALUES ('scheduled__lost_with_the_old_airflow_db')")
    chosen = next(s for s in load_sources() if s.kind != "files")
    result = run_nightly(nightly["env"], nightly["workdir"] / "sweep.log",
                         conf={"sources": [chosen.id], "datasets": [next(iter(chosen.datasets))]})
    assert result.state == "success", Path(result.log).read_text()[-5000:]
    with psycopg.connect(dsn) as conn:
        runs = {r[0]: r[1:] for r in conn.execute("SELECT run_id, status, finished_at IS NOT NULL, message FROM ops.runs")}
    assert runs[first_run][:2] == ("succeeded", True)
    assert runs["scheduled__lost_with_the_old_airflow_db"][:2] == ("failed", True)
    assert "unknown to Airflow" in runs["scheduled__lost_with_the_old_airflow_db"][2]
    assert "closed runs Airflow had ended" in Path(result.log).read_text()
