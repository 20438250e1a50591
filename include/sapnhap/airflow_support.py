"""The one place that turns Airflow connections into sapnhap settings (secrets stay in Airflow).

Only called from inside tasks: never at DAG-parse time.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta

from sapnhap.services import (
    PLATFORM_CONN_ID,
    S3_CONN_ID,
    SIGNING_CONN_ID,
    SIGNING_KEY_ENV,
    SMTP_CONN_ID,
    S3Config,
    Services,
    SmtpConfig,
    libpq_dsn,
)


def default_args() -> dict:
    """The ``default_args`` of every sapnhap DAG: owner, retries with back-off.

    Legacy servers hiccup at night: 5 minutes between tries by default;
    ``SAPNHAP_RETRY_DELAY_SECONDS`` shortens it for the embedded demo and the tests.
    Read from the environment only (no connection or variable at parse time).
    """
    return {
        "owner": "sapnhap-data-team",
        "retries": 2,
        "retry_delay": timedelta(seconds=int(os.environ.get("SAPNHAP_RETRY_DELAY_SECONDS", "300"))),
        "retry_exponential_backoff": True,
    }


def _extra(conn) -> dict:  # noqa: ANN001 - airflow Connection
    extra = conn.extra_dejson if hasattr(conn, "extra_dejson") else json.loads(conn.extra or "{}")
    return extra or {}


def get_connection(conn_id: str):  # noqa: ANN201
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


def postgres_dsn(conn_id: str) -> str:
    """libpq DSN of an Airflow postgres connection (host may be a unix-socket directory)."""
    conn = get_connection(conn_id)
    return libpq_dsn(conn.host, conn.port, conn.login, conn.password, conn.schema)


def signing_key_from_airflow() -> str | None:
    """The backup signing key: password of the ``sapnhap_backup_signing`` connection, else the environment."""
    from airflow.exceptions import AirflowNotFoundException

    try:
        return get_connection(SIGNING_CONN_ID).password or None
    except AirflowNotFoundException:
        return os.environ.get(SIGNING_KEY_ENV) or None


def services_from_airflow() -> Services:
    """Platform, bucket and mail settings from the Airflow connections sapnhap uses."""
    s3_conn = get_connection(S3_CONN_ID)
    s3_extra = _extra(s3_conn)
    smtp_conn = get_connection(SMTP_CONN_ID)
    smtp_extra = _extra(smtp_conn)
    return Services(
        platform_dsn=postgres_dsn(PLATFORM_CONN_ID),
        s3=S3Config(
            bucket=s3_extra.get("bucket", S3Config.bucket),
            endpoint_url=s3_extra.get("endpoint_url"),
            access_key=s3_conn.login,
            secret_key=s3_conn.password,
            region=s3_extra.get("region_name", S3Config.region),
            sse=s3_extra.get("sse", "AES256") or None,
        ),
        smtp=SmtpConfig(
            host=smtp_conn.host or "127.0.0.1",
            port=int(smtp_conn.port or 25),
            user=smtp_conn.login or None,
            password=smtp_conn.password or None,
            starttls=bool(smtp_extra.get("starttls", False)),
            from_addr=smtp_extra.get("from_email", SmtpConfig.from_addr),
        ),
        signing_key=signing_key_from_airflow(),
    )


def legacy_connection(conn_id: str, kind: str) -> str:
    """What the extractor needs to reach a legacy system: a URI, or for ``files`` the folder."""
    conn = get_connection(conn_id)
    if kind == "files":
        return json.dumps({"conn_type": "fs", "extra": _extra(conn)})
    if kind == "sqlite":
        # Airflow parses sqlite:////abs/file.db into schema="/abs/file.db" and an empty host.
        return f"sqlite://{conn.host or conn.schema or _extra(conn).get('path', '')}"
    if kind == "postgres":
        return postgres_dsn(conn_id)
    return conn.get_uri()
