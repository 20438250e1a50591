"""Where the platform, the bucket and the mail server are: plain settings objects.

The pipeline functions take these objects, so they run the same under Airflow (built from
Airflow connections, see :mod:`sapnhap.airflow_support`) and in tests (built directly).
Secrets never live in code or committed files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlparse

PLATFORM_CONN_ID = "sapnhap_platform"
S3_CONN_ID = "sapnhap_s3"
SMTP_CONN_ID = "sapnhap_smtp"
SIGNING_CONN_ID = "sapnhap_backup_signing"  # its password is the key that signs backup manifests
SIGNING_KEY_ENV = "SAPNHAP_BACKUP_SIGNING_KEY"
DEFAULT_BUCKET = "sapnhap-backups"


@dataclass(frozen=True)
class S3Config:
    """An S3-compatible endpoint and the bucket that holds backups and reports."""

    bucket: str = DEFAULT_BUCKET
    endpoint_url: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    region: str = "ap-southeast-1"
    sse: str | None = "AES256"
    connect_timeout: float = 5.0

    def client(self):  # noqa: ANN201 - boto3 client type is dynamic
        """A boto3 S3 client with short timeouts, so an unreachable bucket fails fast."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(
                connect_timeout=self.connect_timeout,
                read_timeout=60,
                retries={"max_attempts": 2, "mode": "standard"},
            ),
        )


@dataclass(frozen=True)
class SmtpConfig:
    """An SMTP server for the reports."""

    host: str = "127.0.0.1"
    port: int = 25
    user: str | None = None
    password: str | None = None
    starttls: bool = False
    from_addr: str = "sapnhap@platform.example"
    timeout: float = 30.0


@dataclass(frozen=True)
class Services:
    """Everything a pipeline stage needs to reach: platform, bucket, mail."""

    platform_dsn: str
    s3: S3Config = field(default_factory=S3Config)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    # HMAC key of the backup manifests; outside Airflow from SAPNHAP_BACKUP_SIGNING_KEY. No default key exists.
    signing_key: str | None = field(default_factory=lambda: os.environ.get(SIGNING_KEY_ENV) or None, repr=False)


def postgres_dsn_from_url(url: str) -> str:
    """Normalize a postgres URL (``postgresql://``, ``postgres://``, ``postgresql+psycopg://``) for psycopg."""
    parsed = urlparse(url)
    scheme = parsed.scheme.split("+")[0]
    if scheme == "postgres":
        scheme = "postgresql"
    return parsed._replace(scheme=scheme).geturl()


def libpq_dsn(
    host: str | None, port: int | None, user: str | None, password: str | None, dbname: str | None
) -> str:
    """A libpq keyword DSN; works for TCP hosts and for unix-socket directories alike."""
    parts = []
    for key, value in (("host", host), ("port", port), ("user", user), ("password", password), ("dbname", dbname)):
        if value not in (None, ""):
            text = str(value).replace("\\", "\\\\").replace("'", "\\'")
            parts.append(f"{key}='{text}'")
    return " ".join(parts)


def s3_from_url(url: str) -> S3Config:
    """``s3://KEY:SECRET@host:port/bucket?region=..&secure=0`` -> :class:`S3Config`."""
    parsed = urlparse(url)
    query = {k: v[0] for k, v in parse_qs(parsed.query, keep_blank_values=True).items()}
    secure = query.get("secure", "0") not in ("0", "false", "no")
    endpoint = f"{'https' if secure else 'http'}://{parsed.hostname}:{parsed.port or (443 if secure else 80)}"
    return S3Config(
        bucket=(parsed.path.strip("/") or DEFAULT_BUCKET),
        endpoint_url=endpoint,
        access_key=unquote(parsed.username) if parsed.username else None,
        secret_key=unquote(parsed.password) if parsed.password else None,
        region=query.get("region", "ap-southeast-1"),
        sse=query.get("sse", "AES256") or None,
    )


def smtp_from_url(url: str) -> SmtpConfig:
    """``smtp://user:pass@host:port?starttls=1&from=addr`` -> :class:`SmtpConfig`."""
    parsed = urlparse(url)
    query = {k: v[0] for k, v in parse_qs(parsed.query, keep_blank_values=True).items()}
    return SmtpConfig(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 25,
        user=unquote(parsed.username) if parsed.username else None,
        password=unquote(parsed.password) if parsed.password else None,
        starttls=query.get("starttls", "0") in ("1", "true", "yes"),
        from_addr=query.get("from", SmtpConfig.from_addr),
    )


def airflow_conn_env(conn_type: str, **fields: object) -> str:
    """The JSON form of an Airflow connection, for ``AIRFLOW_CONN_<ID>`` variables."""
    body = {"conn_type": conn_type, **{k: v for k, v in fields.items() if v is not None}}
    return json.dumps(body)
