"""Signed backup manifests and which restore failures are worth retrying (pure functions)."""

from __future__ import annotations

import json

import psycopg
import pytest

from sapnhap import storage
from sapnhap.restore import RestoreError, is_retryable

KEY = "k" * 64  # a test value, not a deployed key


def _manifest() -> dict:
    return {"batch_id": "r1|src|residents", "objects": {"valid": {"key": "backups/x/valid.parquet",
            "sha256": "ab" * 32, "size": 10}}, "counts": {"valid": 3}, "failed_ratio": 0.25,
            "created_at": "2025-12-01T01:02:03+00:00", "complete": True, "title": "Dân cư"}


def test_a_signed_manifest_verifies_after_a_round_trip_through_json() -> None:
    signed = storage.sign_manifest(_manifest(), KEY)
    assert signed["signature"]["algorithm"] == "HMAC-SHA256" and KEY not in json.dumps(signed)
    stored = json.loads(json.dumps(signed, ensure_ascii=False, indent=2, sort_keys=True))
    storage.verify_manifest_signature(stored, KEY, name="m")


@pytest.mark.parametrize("change", [
    lambda m: m["objects"]["valid"].update(sha256="cd" * 32),
    lambda m: m["counts"].update(valid=4),
    lambda m: m.update(complete=False),
    lambda m: m.update(extra="x"),
])
def test_any_change_breaks_the_signature(change) -> None:
    signed = storage.sign_manifest(_manifest(), KEY)
    change(signed)
    with pytest.raises(storage.SignatureError, match="signature does not match"):
        storage.verify_manifest_signature(signed, KEY, name="m")


def test_unsigned_keyless_and_other_key_are_refused() -> None:
    with pytest.raises(storage.SignatureError, match="is not signed"):
        storage.verify_manifest_signature(_manifest(), KEY, name="m")
    with pytest.raises(storage.SignatureError, match="no backup signing key"):
        storage.sign_manifest(_manifest(), None)
    signed = storage.sign_manifest(_manifest(), KEY)
    with pytest.raises(storage.SignatureError, match="no backup signing key"):
        storage.verify_manifest_signature(signed, None, name="m")
    with pytest.raises(storage.SignatureError, match="signed with key"):
        storage.verify_manifest_signature(signed, "other" * 8, name="m")


def test_services_take_the_signing_key_from_the_environment(monkeypatch) -> None:
    from sapnhap.services import SIGNING_KEY_ENV, Services

    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    assert Services(platform_dsn="").signing_key == KEY
    assert KEY not in repr(Services(platform_dsn=""))
    monkeypatch.delenv(SIGNING_KEY_ENV)
    assert Services(platform_dsn="").signing_key is None


def test_only_a_lost_connection_is_worth_retrying() -> None:
    assert not is_retryable(RestoreError("restore drill failed: ['residents']"))
    assert not is_retryable(storage.BackupError("checksum mismatch for k: expected a, got b"))
    assert not is_retryable(storage.SignatureError("m is not signed"))
    assert not is_retryable(storage.ObjectExistsError("k is already in the bucket"))
    assert is_retryable(RestoreError("restore drill failed", retryable=True))
    assert is_retryable(storage.BackupError("object storage: list backups/ failed: Could not connect"))
    assert is_retryable(psycopg.OperationalError("connection refused"))
    assert not is_retryable(ValueError("x"))


def test_the_attempt_folder_is_new_for_every_extract() -> None:
    a = storage.batch_prefix("src", "residents", "2025-12-01", "manual__2025-12-01T01:00:00+00:00")
    b = storage.batch_prefix("src", "residents", "2025-12-01", "manual__2025-12-01T01:00:00+00:00")
    assert a != b and a.startswith("backups/src/residents/2025-12-01/manual__2025-12-01T01_00_00_00_00/")
    assert a.split("/")[3] == "2025-12-01" and a.endswith("/")
