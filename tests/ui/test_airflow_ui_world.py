"""``make airflow-ui`` serves the demo's world: its bucket content, its emails, active DAGs, the plugin."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from sapnhap import storage
from sapnhap.services import S3Config, SmtpConfig
from sapnhap_dev.embedded import PROJECT_ROOT, Stack, _start_smtp
from sapnhap_dev.runner import restore_bucket_snapshot, snapshot_bucket, stop_group, ui_env

pytestmark = pytest.mark.integration


def _stack(tmp_path: Path, s3: S3Config) -> Stack:
    return Stack(tmp_path, {}, s3, SmtpConfig(), None)


def test_the_demo_bucket_comes_back_in_a_fresh_embedded_s3(tmp_path: Path, s3_config: S3Config, s3_server: str) -> None:
    keys = {
        "backups/src/dossiers/2026-11-20/run/manifest.json": b'{"complete": true}',
        "backups/src/dossiers/2026-11-20/run/data_docs/index.html": "<h1>Tài liệu</h1>".encode(),
        "handover/run/034.html": b"<html></html>",
    }
    for key, data in keys.items():
        storage.put_bytes(s3_config, key, data)
    snapshot = tmp_path / "bucket"
    assert snapshot_bucket(_stack(tmp_path, s3_config), snapshot) == len(keys)

    fresh = S3Config(bucket=f"t-{uuid.uuid4().hex[:12]}", endpoint_url=s3_server, access_key="test", secret_key="test")
    assert restore_bucket_snapshot(_stack(tmp_path, fresh), snapshot) == len(keys)
    assert sorted(storage.list_keys(fresh, "")) == sorted(keys)
    for key, data in keys.items():
        assert storage.get_bytes(fresh, key) == data
    assert restore_bucket_snapshot(_stack(tmp_path, fresh), tmp_path / "no-demo-yet") == 0


def test_the_ui_keeps_the_demo_emails(tmp_path: Path) -> None:
    mail = tmp_path / "mail"
    mail.mkdir()
    (mail / "00001.eml").write_text("Subject: báo cáo\n\n...")
    stoppers: list = []
    try:
        _start_smtp(tmp_path, stoppers, keep_mail=True)
        assert [p.name for p in mail.glob("*.eml")] == ["00001.eml"]
    finally:
        for stop in stoppers:
            stop()
    stoppers.clear()
    try:
        _start_smtp(tmp_path, stoppers)  # the demo starts a fresh folder
        assert list(mail.glob("*.eml")) == []
    finally:
        for stop in stoppers:
            stop()


def test_the_ui_environment_loads_the_plugin_with_active_dags(tmp_path: Path) -> None:
    env = ui_env({"PATH": "/usr/bin:/bin", "AIRFLOW_HOME": str(tmp_path),
                  "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
                  "PYTHONPATH": str(PROJECT_ROOT / "include")}, 8080)
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"
    assert env["AIRFLOW__CORE__DEFAULT_TIMEZONE"] == "Asia/Ho_Chi_Minh"
    out = subprocess.run([str(Path(sys.executable).with_name("airflow")), "plugins", "-o", "json"], env=env,
                         capture_output=True, text=True, check=True).stdout
    plugins = {p["name"]: p for p in json.loads(out[out.index("["):])}
    plugin = plugins["sapnhap"]
    assert [a["url_prefix"] for a in plugin["fastapi_apps"]] == ["/sapnhap"]
    views = plugin["external_views"]
    assert any(v.get("nav_top_level") and v["href"] == "sapnhap/tonight" for v in views)
    assert {v["href"] for v in views} >= {"sapnhap/tonight", "sapnhap/quarantine", "sapnhap/review",
                                          "sapnhap/lookup", "sapnhap/docs"}


def test_stopping_the_ui_stops_every_airflow_process(tmp_path: Path) -> None:
    import os

    # Like `airflow standalone`: a leader whose children outlive a SIGTERM to it, one of them deaf to SIGTERM.
    proc = subprocess.Popen(["bash", "-c", "(trap '' TERM; sleep 300) & sleep 300 & wait"], start_new_session=True)
    stop_group(proc, grace=2)
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)


def test_airflow_has_no_server_side_default_ui_time_zone_so_the_pages_set_it() -> None:
    """Checked on Airflow 3.3: the UI reads its time zone from the browser's localStorage key
    "timezone", falling back to the browser's own zone; the server's UI config offers none, and
    ``[core] default_timezone`` only places naive dates. So the Sáp nhập pages store
    Asia/Ho_Chi_Minh there on a first visit. When a release adds a server-side default, this
    fails: set it in ``runner.ui_env`` instead."""
    import airflow
    from airflow.api_fastapi.core_api.datamodels.ui.config import ConfigResponse
    from airflow.configuration import conf

    assert not [f for f in ConfigResponse.model_fields if "zone" in f.lower()], airflow.__version__
    ui_options = {k for section in ("api", "webserver") if conf.has_section(section)
                  for k in conf.as_dict(display_source=False).get(section, {})}
    assert not [k for k in ui_options if "zone" in k.lower()], airflow.__version__
    template = (PROJECT_ROOT / "plugins" / "sapnhap_ui_templates" / "base.html").read_text()
    assert 'localStorage.setItem("timezone", JSON.stringify("Asia/Ho_Chi_Minh"))' in template


def test_the_ui_asks_about_the_demos_waiting_records_once(tmp_path: Path, platform_dsn: str, s3_config: S3Config,
                                                          smtp_sink) -> None:  # noqa: ANN001
    """The demo's nights (``airflow dags test``, DAGs paused) woke no review run: ``make airflow-ui`` starts one."""
    import os

    from world import build_world

    from sapnhap.review_hitl import REVIEW_DAG_ID
    from sapnhap.services import Services
    from sapnhap.ui_queries import decide_group, review_groups
    from sapnhap_dev.embedded import airflow
    from sapnhap_dev.runner import start_review_if_waiting

    build_world(tmp_path, Services(platform_dsn=platform_dsn, s3=s3_config, smtp=smtp_sink[0]))
    home = tmp_path / "airflow"
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
           "PYTHONPATH": str(PROJECT_ROOT / "include")}
    home.mkdir()
    airflow(env, "db", "migrate")
    airflow(env, "dags", "reserialize")
    run_id = start_review_if_waiting(env, platform_dsn)
    assert run_id
    assert start_review_if_waiting(env, platform_dsn) is None  # its run is open: one Required Action is enough
    out = airflow(env, "dags", "list-runs", REVIEW_DAG_ID, "-o", "json").stdout.splitlines()[-1]
    assert [r["run_id"] for r in json.loads(out)] == [run_id]

    for group in review_groups(platform_dsn):
        decide_group(platform_dsn, group.group_id, group.candidates[0].code, decided_by="canbo.dulieu")
    assert start_review_if_waiting(env, platform_dsn) is None  # nothing waits
