"""Shared fixtures: real services for integration tests.

PostgreSQL: ``SAPNHAP_TEST_PG_URL`` or the machine's server at 127.0.0.1:5432, else an embedded
``pgserver``; S3: a moto server on 127.0.0.1; SMTP: an aiosmtpd sink keeping every message.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
# Backup manifests are signed: one random key per test session (no key is ever committed).
os.environ.setdefault("SAPNHAP_BACKUP_SIGNING_KEY", secrets.token_hex(32))

SHARED_REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def _server_dsn() -> str:
    url = os.environ.get("SAPNHAP_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        with psycopg.connect(url, connect_timeout=3):
            return url
    except psycopg.OperationalError:
        return ""


@pytest.fixture(scope="session")
def pg_admin_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An admin DSN of a real PostgreSQL server (the machine's, or an embedded pgserver)."""
    url = _server_dsn()
    if url:
        yield url
        return
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def _with_db(admin_dsn: str, dbname: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(admin_dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)


def pg_url(dsn: str, dbname: str | None = None) -> str:
    """The ``postgresql://`` URL of a DSN (TCP host or unix-socket directory alike), optionally for another database."""
    from urllib.parse import quote, urlencode

    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    host = params.get("host") or ""
    query = {}
    if host.startswith("/"):
        query["host"], host = host, ""
    auth = quote(params.get("user") or "postgres", safe="")
    if params.get("password"):
        auth += ":" + quote(params["password"], safe="")
    port = f":{params['port']}" if params.get("port") and host else ""
    if params.get("port") and not host:
        query["port"] = params["port"]
    url = f"postgresql://{auth}@{host}{port}/{dbname or params.get('dbname') or 'postgres'}"
    return url + (f"?{urlencode(query)}" if query else "")


@pytest.fixture
def scratch_db(pg_admin_dsn: str) -> Iterator[str]:
    """A fresh database for one test, dropped afterwards."""
    name = f"sapnhap_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_db(pg_admin_dsn, name)
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def platform_dsn(scratch_db: str) -> str:
    """A scratch database with the platform schema applied."""
    from sapnhap.platform import ensure_platform

    ensure_platform(scratch_db)
    return scratch_db


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3 API (moto server) on 127.0.0.1; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    from sapnhap_dev.embedded import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_config(s3_server: str):
    """An S3Config on the moto server with a bucket of its own."""
    from sapnhap.services import S3Config
    from sapnhap.storage import ensure_bucket

    cfg = S3Config(bucket=f"t-{uuid.uuid4().hex[:12]}", endpoint_url=s3_server, access_key="test", secret_key="test")
    ensure_bucket(cfg)
    return cfg


@pytest.fixture
def services(platform_dsn: str, s3_config, smtp_sink):  # noqa: ANN201 - sapnhap imported lazily
    """Services on the scratch platform, the moto bucket and the SMTP sink."""
    from sapnhap.services import Services

    return Services(platform_dsn=platform_dsn, s3=s3_config, smtp=smtp_sink[0])


@pytest.fixture
def smtp_sink(tmp_path: Path) -> Iterator[tuple]:
    """A real SMTP server (aiosmtpd) writing every message to a folder; yields (SmtpConfig, folder)."""
    from aiosmtpd.controller import Controller

    from sapnhap.services import SmtpConfig
    from sapnhap_dev.embedded import MailSink, free_port

    folder = tmp_path / "mail"
    port = free_port()
    controller = Controller(MailSink(folder), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpConfig(host="127.0.0.1", port=port, from_addr="sapnhap@test.example"), folder
    finally:
        controller.stop()


def raw_dossiers(**overrides: list):  # noqa: ANN201 - pandas imported lazily
    """Legacy dossier rows of the demo one-stop system (column names as in its YAML); overrides set columns."""
    import pandas as pd

    n = len(next(iter(overrides.values()))) if overrides else 1
    base = {
        "id": [str(i) for i in range(1, n + 1)],
        "ma_ho_so": [f"HS{i}" for i in range(1, n + 1)],
        "ma_thu_tuc": ["1.001"] * n,
        "ten_thu_tuc": ["Đăng ký khai sinh"] * n,
        "nguoi_nop": ["Nguyễn Văn An"] * n,
        "so_cccd": ["002090012345"] * n,
        "ma_xa": ["00703"] * n,
        "dia_chi_chi_tiet": ["Thôn Bản Mán"] * n,
        "ngay_nhan": ["01/02/2024"] * n,
        "ngay_hen_tra": ["05/02/2024"] * n,
        "ngay_tra": [None] * n,
        "trang_thai": ["Đã tiếp nhận"] * n,
        "ngay_cap_nhat": [f"2024-02-0{i} 10:00:00" for i in range(1, n + 1)],
    }
    base.update(overrides)
    return pd.DataFrame(base)
