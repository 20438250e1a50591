"""Settings from URLs: the overrides of the embedded services (SAPNHAP_*_URL) and libpq DSNs."""

from __future__ import annotations

import json

from sapnhap.services import airflow_conn_env, libpq_dsn, postgres_dsn_from_url, s3_from_url, smtp_from_url


def test_s3_url_gives_endpoint_bucket_and_keys() -> None:
    cfg = s3_from_url("s3://minio:change-me@127.0.0.1:9000/sapnhap-backups?region=us-east-1")
    assert cfg.endpoint_url == "http://127.0.0.1:9000"
    assert (cfg.bucket, cfg.access_key, cfg.secret_key, cfg.region, cfg.sse) == (
        "sapnhap-backups", "minio", "change-me", "us-east-1", "AES256"
    )
    assert s3_from_url("s3://k:secret@s3.example:443/b?secure=1&sse=").endpoint_url == "https://s3.example:443"
    assert s3_from_url("s3://k:secret@h:1/b?sse=").sse is None


def test_smtp_url() -> None:
    cfg = smtp_from_url("smtp://user:pass@mail.example:587?starttls=1&from=sapnhap@tinh.gov.vn")
    assert (cfg.host, cfg.port, cfg.user, cfg.password, cfg.starttls, cfg.from_addr) == (
        "mail.example", 587, "user", "pass", True, "sapnhap@tinh.gov.vn"
    )


def test_dsns_for_tcp_and_unix_sockets() -> None:
    assert postgres_dsn_from_url("postgres+psycopg://u@h/db") == "postgresql://u@h/db"
    dsn = libpq_dsn("/work/.sapnhap/pgdata", None, "postgres", None, "sapnhap")
    assert dsn == "host='/work/.sapnhap/pgdata' user='postgres' dbname='sapnhap'"
    assert "password='it\\'s'" in libpq_dsn("h", 5432, "u", "it's", "d")


def test_airflow_connection_json_drops_empty_fields() -> None:
    body = json.loads(airflow_conn_env("postgres", host="h", port=None, login="u"))
    assert body == {"conn_type": "postgres", "host": "h", "login": "u"}
