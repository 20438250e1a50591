"""The "Sáp nhập" pages in a real browser, against the real Airflow API server and its login.

The platform is made by the real pipeline stages (``world.py``); ``airflow api-server`` loads
the plugin from the repo's ``plugins/`` with the simple auth manager (one admin, one viewer);
Debian's Chromium is driven by Playwright. A screenshot of each page goes to ``docs/ui/``.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from openpyxl import load_workbook
from world import BAD_DATE_KEY, UNRULED_VILLAGE, UiWorld, build_world

from sapnhap import storage
from sapnhap.airflow_support import dags_test_log_folder, write_dags_test_task_logs
from sapnhap.corrections import correction_prefix
from sapnhap.reports.attachment import read_quarantine_workbook
from sapnhap.review_hitl import DECIDED
from sapnhap.services import PLATFORM_CONN_ID, S3_CONN_ID, SMTP_CONN_ID, S3Config, Services, SmtpConfig
from sapnhap.ui_queries import DATA_DOCS_ASSETS
from sapnhap_dev.embedded import PROJECT_ROOT, free_port

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# The committed screenshots in docs/ui are refreshed with SAPNHAP_UI_SCREENSHOTS=docs/ui; a plain test run
# still takes them (each page rendered) but keeps the checkout clean.
SCREENSHOTS = PROJECT_ROOT / os.environ.get("SAPNHAP_UI_SCREENSHOTS", "") if os.environ.get("SAPNHAP_UI_SCREENSHOTS") \
    else Path(tempfile.gettempdir()) / "sapnhap-ui-screenshots"
ADMIN, ADMIN_PASSWORD = "canbo.dulieu", secrets.token_urlsafe(12)
VIEWER, VIEWER_PASSWORD = "nguoi.xem", secrets.token_urlsafe(12)
# Personal values of every legacy dossier of the world (legacy_sqlite.dossier): never on a page.
PERSONAL = ("Trần Thị Bình", "002301012345")

if not CHROMIUM.exists():
    pytest.skip("Debian's Chromium is missing: `make install` installs it (apt-get install chromium)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, pg_admin_dsn: str, s3_server: str) -> Iterator[UiWorld]:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from sapnhap.platform import ensure_platform

    name = f"sapnhap_ui_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = make_conninfo(**{**conninfo_to_dict(pg_admin_dsn), "dbname": name})
    try:
        ensure_platform(dsn)
        s3 = S3Config(bucket=f"ui-{uuid.uuid4().hex[:12]}", endpoint_url=s3_server, access_key="test", secret_key="test")
        storage.ensure_bucket(s3)
        services = Services(platform_dsn=dsn, s3=s3, smtp=SmtpConfig(host="127.0.0.1", port=free_port()))
        yield build_world(tmp_path_factory.mktemp("ui-world"), services)
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _api_server_env(home: Path, services: Services, port: int) -> dict[str, str]:
    from psycopg.conninfo import conninfo_to_dict

    pg = conninfo_to_dict(services.platform_dsn)
    (home / "passwords.json").write_text(json.dumps({ADMIN: ADMIN_PASSWORD, VIEWER: VIEWER_PASSWORD}))
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin,{VIEWER}:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__API__PORT": str(port),
        "GX_ANALYTICS_ENABLED": "False",
        "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT / "include"), env.get("PYTHONPATH", "")) if p),
        "AIRFLOW_CONN_" + PLATFORM_CONN_ID.upper(): json.dumps(
            {"conn_type": "postgres", "host": pg.get("host"), "port": int(pg["port"]) if pg.get("port") else None,
             "login": pg.get("user"), "password": pg.get("password"), "schema": pg["dbname"]}),
        "AIRFLOW_CONN_" + S3_CONN_ID.upper(): json.dumps(
            {"conn_type": "aws", "login": services.s3.access_key, "password": services.s3.secret_key,
             "extra": {"endpoint_url": services.s3.endpoint_url, "bucket": services.s3.bucket, "sse": ""}}),
        "AIRFLOW_CONN_" + SMTP_CONN_ID.upper(): json.dumps(
            {"conn_type": "smtp", "host": services.smtp.host, "port": services.smtp.port}),
    })
    return env


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory, world: UiWorld) -> dict[str, str]:
    """The environment of the test's Airflow (its home, metadata DB, connections, a free port)."""
    return _api_server_env(tmp_path_factory.mktemp("airflow-home"), world.services, free_port())


@pytest.fixture(scope="module")
def airflow_url(airflow_env: dict[str, str]) -> Iterator[str]:
    """``airflow api-server`` with the plugin, on a free port of 127.0.0.1."""
    env = airflow_env
    home, port = Path(env["AIRFLOW_HOME"]), int(env["AIRFLOW__API__PORT"])
    airflow = str(Path(sys.executable).with_name("airflow"))
    for args in (["db", "migrate"], ["dags", "reserialize"]):  # the DAGs are known, so "run now" can trigger
        subprocess.run([airflow, *args], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    log = (home / "api-server.log").open("w")
    proc = subprocess.Popen([airflow, "api-server", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=2):
                    break
            except OSError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (home / "api-server.log").read_text()[-3000:]
                    raise RuntimeError(f"the API server did not start:\n{tail}") from exc
                time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _login(browser, airflow_url: str, user: str, password: str, path: str = "/sapnhap/tonight"):  # noqa: ANN001, ANN202
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True, locale="vi-VN")
    page = context.new_page()
    page.goto(airflow_url + path)
    assert "/auth/login" in page.url  # the plugin sent the anonymous visitor to Airflow's own login
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{path.split('?')[0]}*", timeout=30_000)
    return page


@pytest.fixture
def admin_page(browser, airflow_url: str) -> Iterator:  # noqa: ANN001
    page = _login(browser, airflow_url, ADMIN, ADMIN_PASSWORD)
    try:
        yield page
    finally:
        page.context.close()


def _shot(page, name: str) -> None:  # noqa: ANN001
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _no_personal_data(page) -> None:  # noqa: ANN001
    text = page.content()
    for value in PERSONAL:
        assert value not in text


def test_pages_need_an_airflow_login(browser, airflow_url: str, world: UiWorld) -> None:  # noqa: ANN001
    context = browser.new_context()
    try:
        page = context.new_page()
        for path in ("/sapnhap/tonight", "/sapnhap/quarantine.xlsx", "/sapnhap/lookup?q=02494"):
            response = context.request.get(airflow_url + path, max_redirects=0)
            assert response.status == 303 and "/auth/login" in response.headers["location"], path
        groups_before = _open_reviews(world)
        response = context.request.post(airflow_url + "/sapnhap/review/decide", max_redirects=0,
                                        form={"group_id": "x", "new_commune_code": "00691"})
        assert response.status == 303 and "/auth/login" in response.headers["location"]
        assert _open_reviews(world) == groups_before
        page.goto(airflow_url + "/sapnhap/review")
        assert "/auth/login" in page.url
    finally:
        context.close()


def _open_reviews(world: UiWorld) -> int:
    with psycopg.connect(world.services.platform_dsn) as conn:
        return conn.execute("SELECT count(*) FROM registry.review_queue WHERE status = 'open'").fetchone()[0]


def test_last_night_per_source_and_dataset(admin_page, world: UiWorld) -> None:  # noqa: ANN001
    page = admin_page
    with psycopg.connect(world.services.platform_dsn) as conn:
        extracted, quarantined, inserted, manifest = conn.execute(
            "SELECT extracted, quarantined, inserted, manifest_key FROM ops.batches WHERE run_id = %s",
            (world.run_ids[-1],)).fetchone()
    assert page.locator("#user-name").inner_text() == ADMIN
    assert page.locator("#run-id").inner_text() == world.run_ids[-1]
    assert page.locator("#recon").inner_text() == "ĐẠT"
    cells = page.locator("#outcomes tbody tr").first.locator("td").all_inner_texts()
    assert cells[:4] == [world.source.id, "dossiers", "đã nạp", str(extracted)]
    assert (cells[4], cells[7]) == (str(inserted), str(quarantined))
    assert page.locator("#trend a").count() == len(world.run_ids)
    link = page.get_by_role("link", name="Mở lần chạy trong Airflow")
    assert link.get_attribute("href") == "/dags/sapnhap_nightly/runs/" + world.run_ids[-1].replace(":", "%3A").replace("+", "%2B")
    _shot(page, "tonight")
    # The backup manifest and the Data Docs come from the bucket through the plugin.
    with page.expect_navigation():
        page.get_by_role("link", name="bản kê sao lưu").click()
    assert json.loads(page.locator("body").inner_text())["batch_id"].startswith(world.run_ids[-1])
    assert manifest in page.url
    page.go_back()
    page.locator("#outcomes").get_by_role("link", name="Data Docs").click()
    page.wait_for_load_state()
    assert page.url.endswith("/data_docs/index.html")
    assert "Expectation" in page.content()


def test_quarantine_masked_download_and_correction(admin_page, airflow_url: str, world: UiWorld) -> None:  # noqa: ANN001
    page = admin_page
    page.goto(airflow_url + f"/sapnhap/quarantine?source_id={world.source.id}")
    with psycopg.connect(world.services.platform_dsn) as conn:
        open_ids = {r[0] for r in conn.execute(
            "SELECT quarantine_id FROM ops.quarantine WHERE status = 'open' AND source_id = %s", (world.source.id,))}
    assert page.locator("#rows tbody tr").count() == len(open_ids) == 3
    assert BAD_DATE_KEY in page.locator("#rows").inner_text()
    _no_personal_data(page)
    _shot(page, "quarantine")
    # Filter: only the record with an impossible date.
    page.locator("input[name=source_key]").fill(BAD_DATE_KEY)
    page.get_by_role("button", name="Lọc").click()
    page.wait_for_load_state()
    assert page.locator("#rows tbody tr").count() == 1

    with page.expect_download() as info:
        page.locator("#download").click()
    data = Path(info.value.path()).read_bytes()
    rows = read_quarantine_workbook(data)
    assert [r["source_key"] for r in rows] == [BAD_DATE_KEY]
    assert not any(v in str(rows) for v in PERSONAL)

    # The owner writes the right date in corrected_value and the team uploads the file.
    wb = load_workbook(io.BytesIO(data))
    ws = wb["cach_ly"]
    header = [c.value for c in ws[1]]
    ws.cell(row=2, column=header.index("corrected_value") + 1, value="28/02/2024")
    fixed = io.BytesIO()
    wb.save(fixed)
    upload = Path(info.value.path()).with_name("da_sua.xlsx")
    upload.write_bytes(fixed.getvalue())
    page.locator("#upload select[name=source_id]").select_option(world.source.id)
    page.locator("#upload input[type=file]").set_input_files(str(upload))
    page.get_by_role("button", name="Gửi tệp").click()
    page.wait_for_load_state()
    assert "Đã nhận tệp" in page.locator("#flash").inner_text()
    keys = storage.list_keys(world.services.s3, correction_prefix(world.source.id))
    assert len(keys) == 1 and ADMIN in keys[0]

    # A file that is not a correction file is refused with a reason, and nothing is stored.
    bad = upload.with_name("sai.csv")
    bad.write_text("a,b\n1,2\n")
    page.locator("#upload input[type=file]").set_input_files(str(bad))
    page.get_by_role("button", name="Gửi tệp").click()
    page.wait_for_load_state()
    assert "Không đọc được tệp" in page.locator("#flash").inner_text()
    assert storage.list_keys(world.services.s3, correction_prefix(world.source.id)) == keys


def test_a_required_action_points_the_team_to_the_review_page(admin_page, airflow_url: str,  # noqa: ANN001
                                                               airflow_env: dict[str, str], world: UiWorld) -> None:
    """Records wait: ``sapnhap_review`` (what the nightly's review-queue event starts) asks in the
    Required Actions inbox, links to the review page, and ends when the team answers there."""
    page = admin_page
    log_path = Path(airflow_env["AIRFLOW_HOME"]) / "review-run.log"
    airflow = str(Path(sys.executable).with_name("airflow"))
    with log_path.open("w") as log:
        proc = subprocess.Popen([airflow, "dags", "test", "sapnhap_review"], env=airflow_env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        details_url = f"{airflow_url}/api/v2/dags/sapnhap_review/dagRuns/~/hitlDetails"
        deadline = time.monotonic() + 300
        while not page.request.get(details_url).json().get("hitl_details"):
            assert proc.poll() is None, "the review run ended without asking:\n" + log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(1)
        subject = "2 bản ghi của xã bị chia tách chờ quyết định (1 nhóm)"
        page.goto(airflow_url + "/required_actions")
        page.get_by_text(subject).first.wait_for(timeout=60_000)
        _shot(page, "required-actions")
        page.get_by_text(subject).first.click()
        link = page.get_by_role("link", name="Chờ quyết định", exact=True)
        link.first.wait_for(timeout=60_000)
        assert link.first.get_attribute("href").endswith("/sapnhap/review")
        _shot(page, "required-action")
        page.get_by_role("button", name=DECIDED).click()
        assert proc.wait(timeout=300) == 0, log_path.read_text()[-3000:]
        write_dags_test_task_logs(log_path.read_text(), "sapnhap_review", dags_test_log_folder(airflow_env))
        [detail] = page.request.get(details_url).json()["hitl_details"]
        assert detail["chosen_options"] == [DECIDED] and detail["responded_by_user"]["name"] == ADMIN
        # The run was an `airflow dags test` (as the demo's are): its task logs are in the UI's log view.
        run_id = detail["task_instance"]["dag_run_id"]
        logs = page.request.get(f"{airflow_url}/api/v2/dags/sapnhap_review/dagRuns/{run_id}/taskInstances/"
                                "reviews_waiting/logs/1").json()["content"]
        assert f"review queue: {subject}" in [line.get("event") for line in logs]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_review_group_decided_recorded_and_applied_next_run(admin_page, airflow_url: str, world: UiWorld) -> None:  # noqa: ANN001
    page = admin_page
    page.goto(airflow_url + "/sapnhap/review")
    group = page.locator(".group").filter(has_text=UNRULED_VILLAGE)
    assert group.count() == 1
    assert group.locator(".count").inner_text() == "2"
    assert "Phường Hà Giang 1" in group.inner_text() and "Phường Hà Giang 2" in group.inner_text()
    assert "Tổ dân phố 7" in group.inner_text()  # the province's rules beside the candidates
    _shot(page, "review")
    with psycopg.connect(world.services.platform_dsn) as conn:
        candidates = [r[0] for r in conn.execute(
            "SELECT DISTINCT new_commune_code FROM registry.crosswalk WHERE old_commune_code = %s AND is_split ORDER BY 1",
            (world.split_commune,))]
    target = candidates[-1]
    group.locator("select[name=new_commune_code]").select_option(target)
    group.get_by_role("button", name="Ghi quyết định").click()
    page.wait_for_load_state()
    assert "Đã ghi quyết định cho 2 bản ghi" in page.locator("#flash").inner_text()
    assert page.locator(".group").filter(has_text=UNRULED_VILLAGE).count() == 0
    assert page.locator("#decisions .decided-by").all_inner_texts() == [ADMIN, ADMIN]
    with psycopg.connect(world.services.platform_dsn) as conn:
        decided = conn.execute(
            "SELECT record_key, new_commune_code, decided_by FROM registry.mapping_decisions ORDER BY 1").fetchall()
    keys = [f"{world.source.id}:BQ-WAIT1", f"{world.source.id}:BQ-WAIT2"]
    assert decided == [(k, target, ADMIN) for k in keys]
    assert "chờ lần chạy tới" in page.locator("#decisions").inner_text()

    # The next night of this one source applies the decision (and the uploaded correction).
    world.run("scheduled__2026-11-21T18:00:00+00:00")
    with psycopg.connect(world.services.platform_dsn) as conn:
        mapped = conn.execute(
            "SELECT dossier_code, new_commune_code, mapping_method FROM core.dossiers "
            "WHERE dossier_code IN ('BQ-WAIT1', 'BQ-WAIT2', %s) ORDER BY 1", (BAD_DATE_KEY,)).fetchall()
    assert [(k, c, m) for k, c, m in mapped if k != BAD_DATE_KEY] == [("BQ-WAIT1", target, "decision"),
                                                                       ("BQ-WAIT2", target, "decision")]
    assert BAD_DATE_KEY in [k for k, _, _ in mapped]
    page.reload()
    assert page.locator("#decisions").inner_text().count("đã nạp") == 2
    assert page.locator("#empty").count() == 1
    page.goto(airflow_url + "/sapnhap/tonight")
    assert page.locator("#trend a").count() == 2
    assert page.locator("#run-id").inner_text() == world.run_ids[-1]


def test_run_one_source_now(admin_page, airflow_url: str, world: UiWorld) -> None:  # noqa: ANN001
    page = admin_page
    params = page.request.get(f"{airflow_url}/api/v2/dags/sapnhap_nightly/details").json()["params"]
    page.get_by_role("button", name=f"Chạy ngay {world.source.id}").click()
    page.wait_for_load_state()
    runs = page.request.get(f"{airflow_url}/api/v2/dags/sapnhap_nightly/dagRuns").json()["dag_runs"]
    if "sources" not in params:
        # A nightly without the param would sync (and report) every source: refused, nothing triggered.
        assert "chưa có tham số 'sources'" in page.locator("#flash").inner_text()
        assert runs == []
        return
    assert "Đã yêu cầu chạy sapnhap_nightly" in page.locator("#flash").inner_text()
    assert [(r["conf"], r["triggering_user_name"]) for r in runs] == [({"sources": [world.source.id]}, ADMIN)]
    # A form posted from another site with the team's session cookie is refused.
    forged = page.request.post(f"{airflow_url}/sapnhap/run-source", max_redirects=0,
                               form={"source_id": world.source.id}, headers={"origin": "http://other.example"})
    assert forged.status == 403
    assert len(page.request.get(f"{airflow_url}/api/v2/dags/sapnhap_nightly/dagRuns").json()["dag_runs"]) == 1


def test_viewer_sees_but_cannot_decide(browser, airflow_url: str) -> None:  # noqa: ANN001
    page = _login(browser, airflow_url, VIEWER, VIEWER_PASSWORD, "/sapnhap/review")
    try:
        assert "(chỉ xem)" in page.locator("header").inner_text()
        assert page.locator("form[action='review/decide']").count() == 0
        assert page.locator("form.run-now").count() == 0
        response = page.request.post(airflow_url + "/sapnhap/review/decide", max_redirects=0,
                                     form={"group_id": "x", "new_commune_code": "00691"},
                                     headers={"origin": airflow_url})
        assert response.status == 403
        response = page.request.post(airflow_url + "/sapnhap/run-source", max_redirects=0,
                                     form={"source_id": "hg_bacquang_sqlite"}, headers={"origin": airflow_url})
        assert response.status == 403
    finally:
        page.context.close()


def test_lookup_old_and_new_units_with_handover(admin_page, airflow_url: str, world: UiWorld) -> None:  # noqa: ANN001
    page = admin_page
    page.goto(airflow_url + "/sapnhap/lookup")
    page.locator("input[name=q]").fill("phuong quang trung")  # no accents
    page.locator("input[name=as_of]").fill("2025-12-31")
    page.get_by_role("button", name="Tra cứu").click()
    page.wait_for_load_state()
    assert page.locator("#version").inner_text() == "nso-2025.07"
    old_to_new = page.locator("#old-to-new").inner_text()
    assert world.split_commune in old_to_new and "Phường Hà Giang 1" in old_to_new and "Phường Hà Giang 2" in old_to_new
    # New -> old by code: the new ward lists the old commune it came from.
    page.locator("input[name=q]").fill("00694")
    page.get_by_role("button", name="Tra cứu").click()
    page.wait_for_load_state()
    assert "Phường Quang Trung" in page.locator("#new-to-old").inner_text()
    # The old district of the legacy system: its handover record opens from the bucket.
    page.locator("input[name=q]").fill("bac quang")
    page.get_by_role("button", name="Tra cứu").click()
    page.wait_for_load_state()
    assert page.locator("#handover tbody tr").count() >= 1
    _shot(page, "lookup")
    page.locator("#handover").get_by_role("link", name="Xem biên bản").first.click()
    page.wait_for_load_state()
    assert "/sapnhap/bucket/handover/" in page.url
    assert "BIÊN BẢN" in page.content().upper()


def test_data_docs_page_and_airflow_navigation(admin_page, airflow_url: str, world: UiWorld) -> None:  # noqa: ANN001
    page = admin_page
    # Only a batch with a failing check has Data Docs: the world's first night has one (a bad date);
    # a later night may have passed every check, and then its page says so.
    page.goto(airflow_url + "/sapnhap/docs?run_id=" + quote(world.run_ids[0], safe=""))
    assert page.locator("#docs .docs-link").count() >= 1
    _shot(page, "docs")
    # Offline: every request that leaves this machine fails; the GX page still gets its styles and scripts.
    blocked: list[str] = []

    def offline(route) -> None:  # noqa: ANN001
        blocked.append(route.request.url)
        route.abort()

    page.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), offline)
    page.locator("#docs .docs-link").first.click()
    page.wait_for_load_state("networkidle")
    assert page.url.endswith("/data_docs/index.html")
    assert page.evaluate("typeof window.jQuery === 'function' && typeof window.jQuery.fn.bootstrapTable === 'function'")
    assert page.evaluate("[...document.styleSheets].some(s => (s.href || '').endsWith('/sapnhap/static/gx/css/"
                         "bootstrap.min.css') && s.cssRules.length > 1000)")
    assert not set(blocked) & set(DATA_DOCS_ASSETS)  # nothing bundled is asked of the internet
    _shot(page, "data-docs")
    page.unroute_all()
    # The plugin's pages are in Airflow's own navigation.
    page.goto(airflow_url + "/")
    nav = page.get_by_role("link", name="Sáp nhập")
    nav.first.wait_for(timeout=30_000)
    nav.first.click()
    frame = page.frame_locator("iframe").first
    frame.locator("#run-id").wait_for(timeout=30_000)
    # The browser runs in UTC here: the pages set the UI's time zone to Vietnam's.
    assert page.get_by_text("+07:00").count() >= 1
    _shot(page, "airflow-navigation")


def test_bucket_proxy_serves_only_docs_manifests_and_handover(admin_page, airflow_url: str, world: UiWorld) -> None:  # noqa: ANN001
    storage.put_bytes(world.services.s3, "landing/secret.csv", b"x")
    for key in ("landing/secret.csv", "backups/../landing/secret.csv",
                next(k for k in storage.list_keys(world.services.s3, "backups/") if k.endswith(".parquet"))):
        assert admin_page.request.get(f"{airflow_url}/sapnhap/bucket/{key}").status == 404, key
