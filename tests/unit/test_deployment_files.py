"""The full-stack files: docker-compose.yml is valid, complete and holds no secrets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_full_stack() -> None:
    services = set(_compose()["services"])
    assert {
        "postgres", "redis", "minio", "mailpit", "airflow-init", "airflow-apiserver", "airflow-scheduler",
        "airflow-dag-processor", "airflow-triggerer", "airflow-worker",
    } <= services


def test_compose_takes_every_secret_from_the_environment() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    for line in text.splitlines():
        if re.search(r"(PASSWORD|SECRET|FERNET)[A-Z_]*:\s*\S", line):
            value = line.split(":", 1)[1]
            assert "${" in value, f"literal secret in docker-compose.yml: {line.strip()}"
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    declared = {
        line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines() if "=" in line and not line.startswith("#")
    }
    assert used <= declared, f"variables missing from .env.example: {sorted(used - declared)}"


def test_env_example_has_placeholders_only() -> None:
    for line in (ROOT / ".env.example").read_text().splitlines():
        if "=" in line and not line.startswith("#") and re.search(r"PASSWORD|SECRET", line):
            assert line.split("=", 1)[1].startswith("change-me"), line


def test_airflow_services_mount_the_project_and_see_the_package() -> None:
    compose = _compose()
    api = compose["services"]["airflow-apiserver"]
    mounts = {m.split(":")[1] for m in api["volumes"]}
    assert {"/opt/airflow/dags", "/opt/airflow/include/sapnhap", "/opt/airflow/include/sources",
            "/opt/airflow/plugins"} <= mounts
    # The demo world, the embedded services and the dev CLI are not in the image's package.
    assert not any("sapnhap_dev" in m or m.split(":")[0].rstrip("/") == "./include" for m in api["volumes"])
    assert api["environment"]["PYTHONPATH"] == "/opt/airflow/include"
    for conn in ("AIRFLOW_CONN_SAPNHAP_PLATFORM", "AIRFLOW_CONN_SAPNHAP_S3", "AIRFLOW_CONN_SAPNHAP_SMTP"):
        assert conn in api["environment"]
    assert '"sse": "AES256"' in api["environment"]["AIRFLOW_CONN_SAPNHAP_S3"]  # backups encrypted at rest (R4)
    assert "MINIO_KMS_SECRET_KEY" in compose["services"]["minio"]["environment"]
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "apache/airflow:3.3" in dockerfile and "requirements.txt" in dockerfile


AIRFLOW_SERVICES = ("airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "airflow-worker")


def _env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def test_airflow_reaches_the_platform_as_the_loader_and_migrations_run_as_the_owner() -> None:
    compose = _compose()
    env = _env_example()
    for name in AIRFLOW_SERVICES:
        service = compose["services"][name]
        assert "env_file" not in service, f"{name} gets every secret of .env"
        conn = service["environment"]["AIRFLOW_CONN_SAPNHAP_PLATFORM"]
        assert conn.startswith("postgresql://${PLATFORM_LOADER_USER}:${PLATFORM_LOADER_PASSWORD}@"), name
        text = yaml.safe_dump(service)
        assert "MINIO_ROOT" not in text, f"{name} sees MinIO's root credentials"
        if name != "airflow-init":
            assert "PLATFORM_OWNER" not in text, f"{name} sees the platform owner's password"
    init = compose["services"]["airflow-init"]
    assert "python -m sapnhap migrate" in init["command"][1]
    assert init["environment"]["SAPNHAP_PLATFORM_URL"].startswith(
        "postgresql://${PLATFORM_OWNER_USER}:${PLATFORM_OWNER_PASSWORD}@postgres")
    assert init["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
    # The loader login is not the group role's name: the group's privileges come from sapnhap.platform.
    assert env["PLATFORM_LOADER_USER"] not in {"sapnhap_loader", env["PLATFORM_OWNER_USER"]}


def test_postgres_init_creates_the_four_roles_and_the_owner_owns_the_platform() -> None:
    script = (ROOT / "docker" / "init-platform.sh").read_text()
    for group in ("sapnhap_loader", "sapnhap_analyst", "sapnhap_auditor"):
        assert f"CREATE ROLE {group} NOLOGIN;" in script
    for login, group in (("loader", "sapnhap_loader"), ("analyst", "sapnhap_analyst"), ("auditor", "sapnhap_auditor")):
        assert re.search(rf'CREATE ROLE :"{login}" LOGIN .*IN ROLE {group};', script)
    assert 'CREATE DATABASE :"db" OWNER :"owner";' in script
    assert "SUPERUSER" not in script.replace("NOSUPERUSER", "")
    postgres_env = _compose()["services"]["postgres"]["environment"]
    for var in re.findall(r'-v \w+="\$(\w+)"', script):
        assert var in postgres_env, f"{var} is not given to the postgres service"


def test_minio_gives_airflow_a_bucket_user_and_locks_the_backups() -> None:
    compose = _compose()
    init = compose["services"]["minio-init"]
    assert init["image"].startswith("minio/mc")
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    script = (ROOT / "docker" / "minio-init.sh").read_text()
    assert "./docker/minio-init.sh:/minio-init.sh:ro" in init["volumes"]
    assert 'mc mb --ignore-existing --with-lock "local/$BACKUP_BUCKET"' in script
    assert re.search(r'mc retention set --default (GOVERNANCE|COMPLIANCE) "\$\{BACKUP_LOCK_DAYS\}d"', script)
    assert 'mc admin user add local "$MINIO_BACKUP_USER" "$MINIO_BACKUP_PASSWORD"' in script
    assert "mc admin policy attach local sapnhap-backups --user" in script
    policy = json.loads(script.split("<<POLICY\n", 1)[1].split("\nPOLICY\n", 1)[0].replace("$BACKUP_BUCKET", "b"))
    resources = {r for st in policy["Statement"] for r in st["Resource"]}
    actions = {a for st in policy["Statement"] for a in st["Action"]}
    assert resources == {"arn:aws:s3:::b", "arn:aws:s3:::b/*"}  # its bucket only
    # Deletes (retention) cannot touch a locked version: no bypass, no change of the lock settings.
    forbidden = ("Bypass", "PutBucketObjectLock", "PutObjectRetention", "PutBucketVersioning", "PutBucketPolicy")
    assert not any(f in a for a in actions for f in forbidden)
    assert not any(a.endswith("*") or a.startswith("admin:") for a in actions)
    assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket"} <= actions
    s3 = compose["services"]["airflow-apiserver"]["environment"]["AIRFLOW_CONN_SAPNHAP_S3"]
    assert '"login": "${MINIO_BACKUP_USER}", "password": "${MINIO_BACKUP_PASSWORD}"' in s3
    assert set(init["environment"]) >= {"MINIO_ROOT_USER", "MINIO_BACKUP_USER", "BACKUP_LOCK_DAYS"}


def test_airflow_signs_backups_with_a_key_from_the_environment_and_locks_them() -> None:
    env = _compose()["x-airflow-common"]["environment"]
    signing = env["AIRFLOW_CONN_SAPNHAP_BACKUP_SIGNING"]
    assert '"password": "${BACKUP_SIGNING_SECRET}"' in signing  # no backup is written without it
    assert env["SAPNHAP_BACKUP_OBJECT_LOCK"] == "governance"
    assert env["SAPNHAP_BACKUP_RETENTION_DAYS"] == "${BACKUP_LOCK_DAYS}"


def test_the_production_package_does_not_import_the_dev_tools() -> None:
    """``sapnhap`` (mounted into every Airflow container) never imports ``sapnhap_dev`` (demo world, embedded services)."""
    import ast

    offenders = []
    for path in sorted((ROOT / "include" / "sapnhap").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "sapnhap_dev"]
    assert offenders == []
    assert not (ROOT / "include" / "sapnhap" / "demo").exists()
    assert not (ROOT / "include" / "sapnhap" / "embedded.py").exists()


def test_compose_and_the_embedded_stack_ship_the_warm_task_settings(tmp_path: Path) -> None:
    from sapnhap.preload import airflow_settings
    from sapnhap.services import S3Config, SmtpConfig
    from sapnhap_dev.embedded import Stack, airflow_env

    env = _compose()["x-airflow-common"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    for key, value in airflow_settings("CeleryExecutor").items():
        assert env.get(key) == value, key
    stack = Stack(tmp_path, {"host": "127.0.0.1", "port": 5432, "login": "u", "password": "p", "schema": "db"},
                  S3Config(), SmtpConfig(), None)
    embedded = airflow_env(stack, {})  # `make demo` / `make airflow-ui`: airflow standalone, LocalExecutor
    for key, value in airflow_settings("LocalExecutor").items():
        assert embedded[key] == value, key
    assert int(embedded["AIRFLOW__CORE__PARALLELISM"]) >= 2
