"""The embedded default: real services started from pip packages, no Docker, no running servers.

- PostgreSQL from ``pgserver`` (a real postgres binary, data under ``.sapnhap/pgdata``)
- an S3 API from ``moto[server]`` (ThreadedMotoServer on 127.0.0.1)
- an SMTP sink from ``aiosmtpd`` that keeps every message as an ``.eml`` file
- Airflow with a SQLite metadata database under ``.sapnhap/airflow``

The platform database is owned by its own login (``<db>_owner``, who runs the migrations when
the stack starts) and the nightly's Airflow connection is a login in the ``sapnhap_loader`` group
(``<db>_etl``): least privilege as shipped, on the embedded default too.

Each is replaced by a real server when its URL is in the environment:
``SAPNHAP_PLATFORM_URL`` (postgresql://...), ``SAPNHAP_S3_URL`` (s3://key:secret@host:port/bucket),
``SAPNHAP_SMTP_URL`` (smtp://host:port).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path

import psycopg
import psycopg.sql
from psycopg.conninfo import conninfo_to_dict

from sapnhap.services import (
    PLATFORM_CONN_ID,
    S3_CONN_ID,
    SIGNING_CONN_ID,
    SIGNING_KEY_ENV,
    SMTP_CONN_ID,
    S3Config,
    SmtpConfig,
    libpq_dsn,
    postgres_dsn_from_url,
    s3_from_url,
    smtp_from_url,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PLATFORM_DB = "sapnhap"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MailSink:
    """An aiosmtpd handler that writes every message it receives to a folder, in order."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802 - aiosmtpd hook
        with self._lock:
            n = len(list(self.folder.glob("*.eml"))) + 1
            path = self.folder / f"{n:05d}.eml"
            path.write_bytes(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


def read_mail(folder: Path) -> list:
    """Every message in a mail folder, parsed (``email.message.EmailMessage``)."""
    return [message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(folder.glob("*.eml"))]


@dataclass
class Stack:
    """The running services and how to reach them."""

    workdir: Path
    platform: dict[str, object]
    s3: S3Config
    smtp: SmtpConfig
    mail_dir: Path | None
    _stoppers: list = field(default_factory=list)
    # Logins of the platform database: {"owner": (user, password), "loader": (user, password)}.
    logins: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    @property
    def platform_dsn(self) -> str:
        """The platform as the server's admin (for the demo's own checks, never for Airflow)."""
        p = self.platform
        return libpq_dsn(p["host"], p.get("port"), p.get("login"), p.get("password"), p["schema"])

    def login_dsn(self, which: str) -> str:
        """The platform as its ``owner`` (migrations) or its ``loader`` login (the nightly)."""
        user, password = self.logins.get(which, (None, None))
        if user is None:
            return self.platform_dsn
        p = self.platform
        return libpq_dsn(p["host"], p.get("port"), user, password, p["schema"])

    def admin_dsn(self, dbname: str = "postgres") -> str:
        p = self.platform
        return libpq_dsn(p["host"], p.get("port"), p.get("login"), p.get("password"), dbname)

    def stop(self) -> None:
        for stop in reversed(self._stoppers):
            stop()
        self._stoppers.clear()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _login_names(dbname: str) -> tuple[str, str]:
    base = dbname[:52]
    return f"{base}_owner", f"{base}_etl"


def _logins_file(workdir: Path) -> Path:
    return workdir / "platform-logins.json"


def _platform_logins(workdir: Path, admin: dict[str, object], dbname: str) -> dict[str, tuple[str, str | None]]:
    """Create the platform database owned by its owner login, and the loader login; return both.

    The passwords are random, kept in ``<workdir>/platform-logins.json`` (0600) for `make airflow-ui`.
    A platform database made before (by an older demo, owned by the admin) keeps its owner: the
    migrations then run as the admin.
    """
    from sapnhap.platform import LOADER_ROLE, ROLES

    owner, loader = _login_names(dbname)
    saved = _logins_file(workdir)
    known = json.loads(saved.read_text()) if saved.exists() else {}
    passwords = {name: known.get(name) or secrets.token_urlsafe(24) for name in (owner, loader)}
    admin_dsn = libpq_dsn(admin["host"], admin["port"], admin["login"], admin["password"], "postgres")
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for role in ROLES:  # cluster-wide group roles; another stack may create them at the same moment
            conn.execute(f"DO $$ BEGIN CREATE ROLE {role} NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        for name, member_of in ((owner, None), (loader, LOADER_ROLE)):
            ident = psycopg.sql.Identifier(name)
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
                conn.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE").format(ident))
            conn.execute(psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(ident, psycopg.sql.Literal(passwords[name])))
            if member_of:
                conn.execute(psycopg.sql.SQL("GRANT {} TO {}").format(psycopg.sql.Identifier(member_of), ident))
        row = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if row is None:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {} OWNER {}").format(
                psycopg.sql.Identifier(dbname), psycopg.sql.Identifier(owner)))
            db_owner = owner
        else:
            db_owner = row[0]
    workdir.mkdir(parents=True, exist_ok=True)
    saved.touch(mode=0o600)
    saved.chmod(0o600)
    saved.write_text(json.dumps(passwords))
    logins = {"loader": (loader, passwords[loader])}
    logins["owner"] = (owner, passwords[owner]) if db_owner == owner else (str(admin["login"]), admin["password"])
    return logins


def drop_platform(admin_dsn: str, dbname: str) -> None:
    """Drop a platform database and the owner and loader logins made for it (tests, scratch stacks)."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(dbname)))
        for name in _login_names(dbname):
            conn.execute(psycopg.sql.SQL("DROP ROLE IF EXISTS {}").format(psycopg.sql.Identifier(name)))


def _start_postgres(workdir: Path, stoppers: list) -> tuple[dict[str, object], dict[str, tuple[str, str | None]]]:
    url = os.environ.get("SAPNHAP_PLATFORM_URL")
    if not url:
        import pgserver

        server = pgserver.get_server(workdir / "pgdata", cleanup_mode="stop")
        stoppers.append(server.cleanup)
    # libpq parses both forms: host in the authority (TCP) or in ?host= (a unix-socket directory).
    params = conninfo_to_dict(postgres_dsn_from_url(url) if url else server.get_uri())
    admin = dict(host=params.get("host"), port=params.get("port"),
                 login=params.get("user") or "postgres", password=params.get("password") or None)
    dbname = (params.get("dbname") if url else "") or PLATFORM_DB
    logins = _platform_logins(workdir, admin, dbname)
    return {**admin, "schema": dbname}, logins


def _start_s3(stoppers: list) -> S3Config:
    url = os.environ.get("SAPNHAP_S3_URL")
    if url:
        return s3_from_url(url)
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per S3 request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    stoppers.append(server.stop)
    return S3Config(endpoint_url=f"http://127.0.0.1:{port}", access_key="embedded", secret_key="embedded")


def _start_smtp(workdir: Path, stoppers: list, *, keep_mail: bool = False) -> tuple[SmtpConfig, Path | None]:
    url = os.environ.get("SAPNHAP_SMTP_URL")
    if url:
        return smtp_from_url(url), None
    from aiosmtpd.controller import Controller

    mail_dir = workdir / "mail"
    if not keep_mail:
        for old in mail_dir.glob("*.eml"):
            old.unlink()
    mail_dir.mkdir(parents=True, exist_ok=True)
    mail_dir.chmod(0o700)  # the owners' emails: this user only
    port = free_port()
    controller = Controller(MailSink(mail_dir), hostname="127.0.0.1", port=port)
    controller.start()
    stoppers.append(controller.stop)
    return SmtpConfig(host="127.0.0.1", port=port, from_addr="sapnhap@tuyenquang.gov.vn.example"), mail_dir


def start_stack(workdir: Path, *, keep_mail: bool = False) -> Stack:
    """Start (or connect to) PostgreSQL, S3 and SMTP, migrate the platform as its owner; stop with :meth:`Stack.stop`.

    The mail folder starts empty unless ``keep_mail`` (the UI keeps the demo's emails).
    """
    from sapnhap.platform import ensure_platform

    workdir.mkdir(parents=True, exist_ok=True)
    stoppers: list = []
    try:
        platform, logins = _start_postgres(workdir, stoppers)
        s3 = _start_s3(stoppers)
        smtp, mail_dir = _start_smtp(workdir, stoppers, keep_mail=keep_mail)
        stack = Stack(workdir, platform, s3, smtp, mail_dir, stoppers, logins)
        ensure_platform(stack.login_dsn("owner"))  # `python -m sapnhap migrate`, as the owner
    except BaseException:
        for stop in reversed(stoppers):
            stop()
        raise
    return stack


def airflow_env(stack: Stack, legacy_connections: dict[str, str], *, sources_dir: Path | None = None) -> dict[str, str]:
    """Environment for the Airflow CLI: SQLite metadata DB, the project's DAGs, connections."""
    home = stack.workdir / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    from sapnhap.preload import airflow_settings

    include = str(PROJECT_ROOT / "include")
    env = dict(os.environ)
    # `make airflow-ui` runs `airflow standalone` (scheduler + LocalExecutor): task processes fork
    # warm (sapnhap.preload), one executor slot per core (a pandas task keeps a core busy).
    env.update(airflow_settings("LocalExecutor"))
    env.update(
        {
            "AIRFLOW__CORE__PARALLELISM": env.get("AIRFLOW__CORE__PARALLELISM", str(max(2, os.cpu_count() or 2))),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DEFAULT_TIMEZONE": "Asia/Ho_Chi_Minh",
            "GX_ANALYTICS_ENABLED": "False",
            "PYTHONPATH": os.pathsep.join(p for p in (include, env.get("PYTHONPATH", "")) if p),
            "SAPNHAP_RETRY_DELAY_SECONDS": env.get("SAPNHAP_RETRY_DELAY_SECONDS", "2"),
            # `airflow standalone` starts its components as `airflow ...` found on PATH.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        }
    )
    if sources_dir is not None:
        env["SAPNHAP_SOURCES_DIR"] = str(sources_dir)
    p = stack.platform
    # The nightly runs as the loader login: no DDL, append-only audit trail (sapnhap.platform).
    loader, loader_password = stack.logins.get("loader", (p.get("login"), p.get("password")))
    env["AIRFLOW_CONN_" + PLATFORM_CONN_ID.upper()] = json.dumps(
        {"conn_type": "postgres", "host": p["host"], "port": p.get("port"), "login": loader,
         "password": loader_password, "schema": p["schema"]}
    )
    env["AIRFLOW_CONN_" + S3_CONN_ID.upper()] = json.dumps(
        {"conn_type": "aws", "login": stack.s3.access_key, "password": stack.s3.secret_key,
         "extra": {"endpoint_url": stack.s3.endpoint_url, "region_name": stack.s3.region, "bucket": stack.s3.bucket,
                   "sse": stack.s3.sse or ""}}
    )
    env["AIRFLOW_CONN_" + SMTP_CONN_ID.upper()] = json.dumps(
        {"conn_type": "smtp", "host": stack.smtp.host, "port": stack.smtp.port, "login": stack.smtp.user,
         "password": stack.smtp.password, "extra": {"from_email": stack.smtp.from_addr, "starttls": stack.smtp.starttls}}
    )
    env["AIRFLOW_CONN_" + SIGNING_CONN_ID.upper()] = json.dumps(
        {"conn_type": "generic", "password": env.get(SIGNING_KEY_ENV) or stack_signing_key(stack.workdir)}
    )
    for conn_id, uri in legacy_connections.items():
        env["AIRFLOW_CONN_" + conn_id.upper()] = uri
    return env


def stack_signing_key(workdir: Path) -> str:
    """The embedded stack's backup signing key: random, made once per workdir, readable by its owner only."""
    import secrets

    path = workdir / "backup-signing.key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def airflow(env: dict[str, str], *args: str, log: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run the Airflow CLI of this interpreter's environment."""
    cmd = [str(Path(sys.executable).with_name("airflow")), *args]
    out = log.open("w") if log else subprocess.PIPE
    try:
        proc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True, check=False)
    finally:
        if log:
            out.close()
    if check and proc.returncode != 0:
        tail = log.read_text()[-4000:] if log else proc.stdout[-4000:]
        raise RuntimeError(f"airflow {' '.join(args)} failed ({proc.returncode}):\n{tail}")
    return proc


def prepare_airflow(env: dict[str, str], pools: dict[str, dict]) -> None:
    """Migrate the metadata DB and create the pools that cap connections per legacy server."""
    airflow(env, "db", "migrate")
    if pools:
        pool_file = Path(env["AIRFLOW_HOME"]) / "pools.json"
        pool_file.write_text(json.dumps(pools))
        airflow(env, "pools", "import", str(pool_file))
