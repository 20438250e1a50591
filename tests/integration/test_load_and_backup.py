"""Backup and load against real services: moto's S3 API and PostgreSQL."""

from __future__ import annotations

import pandas as pd
import psycopg
import pytest

from sapnhap import storage
from sapnhap.load import merge_batch
from sapnhap.reference import load_reference
from sapnhap.sources import get_source
from sapnhap.transform import transform_frame

pytestmark = pytest.mark.integration


def test_backup_objects_are_encrypted_and_verified(s3_config) -> None:
    obj = storage.put_bytes(s3_config, "backups/x/raw.parquet", b"abc")
    storage.verify_object(s3_config, obj.as_dict())
    head = s3_config.client().head_object(Bucket=s3_config.bucket, Key=obj.key)
    assert head["ServerSideEncryption"] == "AES256"
    assert head["Metadata"]["sha256"] == storage.sha256_bytes(b"abc")
    with pytest.raises(storage.BackupError, match="checksum mismatch"):
        storage.get_bytes(s3_config, obj.key, expected_sha256="0" * 64)


def test_unreachable_bucket_is_a_clear_error() -> None:
    from sapnhap.services import S3Config
    from sapnhap_dev.embedded import free_port

    cfg = S3Config(endpoint_url=f"http://127.0.0.1:{free_port()}", access_key="x", secret_key="x", connect_timeout=1)
    with pytest.raises(storage.BackupError, match="unreachable|failed"):
        storage.ensure_bucket(cfg)


def _dossiers(source_id: str, rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    """(id, dossier_code, updated_at) -> a transformed dossiers frame of ``source_id``."""
    raw = pd.DataFrame(
        {
            "id": [r[0] for r in rows],
            "ma_ho_so": [r[1] for r in rows],
            "ma_thu_tuc": "1.001", "ten_thu_tuc": "Đăng ký khai sinh", "nguoi_nop": "Nguyễn Văn An",
            "so_cccd": "002090012345", "ma_xa": "00703", "dia_chi_chi_tiet": "Thôn Bản Mán",
            "ngay_nhan": "01/02/2024", "ngay_hen_tra": "05/02/2024", "ngay_tra": None, "trang_thai": "Đã tiếp nhận",
            "ngay_cap_nhat": [r[2] for r in rows],
        }
    )
    source = get_source("hg_vixuyen_motcua").model_copy(update={"id": source_id})
    return transform_frame(raw, source, "dossiers", reference=load_reference()).frame


def test_merge_is_idempotent_keeps_history_and_merges_cross_source_duplicates(platform_dsn: str) -> None:
    first = _dossiers("src_a", [("1", "HS1", "2024-02-01 10:00:00"), ("2", "HS2", "2024-02-01 10:00:00")])
    with psycopg.connect(platform_dsn) as conn, conn.transaction():
        counts = merge_batch(conn, dataset="dossiers", batch_id="b1", valid=first)
    assert (counts.inserted, counts.updated, counts.unchanged, counts.merged_cross_source) == (2, 0, 0, 0)

    with psycopg.connect(platform_dsn) as conn, conn.transaction():
        again = merge_batch(conn, dataset="dossiers", batch_id="b2", valid=first)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)

    changed = first.copy()
    changed.loc[0, "status"] = "completed"
    changed["record_hash"] = changed["record_hash"].where(changed.index != 0, "changed")
    with psycopg.connect(platform_dsn) as conn, conn.transaction():
        upd = merge_batch(conn, dataset="dossiers", batch_id="b3", valid=changed)
    assert (upd.inserted, upd.updated, upd.unchanged) == (0, 1, 1)

    other = _dossiers("src_b", [("9", "HS2", "2024-03-01 10:00:00")])
    with psycopg.connect(platform_dsn) as conn, conn.transaction():
        dup = merge_batch(conn, dataset="dossiers", batch_id="b4", valid=other)
    assert dup.merged_cross_source == 1 and dup.loaded == 0

    with psycopg.connect(platform_dsn) as conn:
        rows = dict(conn.execute("SELECT dossier_code, status FROM core.dossiers").fetchall())
        history = conn.execute("SELECT dossier_code, status, change FROM history.dossiers ORDER BY history_id").fetchall()
        merged = conn.execute("SELECT source_id, kept_source_id FROM ops.merged_duplicates").fetchall()
        owner = conn.execute("SELECT source_id FROM core.dossiers WHERE dossier_code = 'HS2'").fetchone()[0]
    assert rows == {"HS1": "completed", "HS2": "received"}
    assert history[0][:2] == ("HS1", "received") and history[0][2] == "update"
    # The newer record from src_b won; the older src_a row is listed as merged into it.
    assert owner == "src_b"
    assert merged == [("src_a", "src_b")]


def test_a_batch_of_no_rows_merges_without_a_statement() -> None:
    class NoDatabase:
        def __getattr__(self, name: str):  # noqa: ANN204
            raise AssertionError(f"the merge of no rows used the connection ({name})")

    empty = _dossiers("src_a", [("1", "HS1", "2024-02-01 10:00:00")]).iloc[0:0]
    counts = merge_batch(NoDatabase(), dataset="dossiers", batch_id="b0", valid=empty)  # type: ignore[arg-type]
    assert counts.reconciles() and (counts.extracted, counts.loaded, counts.quarantined) == (0, 0, 0)


def test_copy_csv_round_trips_every_value_the_platform_stores(scratch_db: str) -> None:
    """The load's CSV (Arrow's writer since issue 12) brings back exactly what the frame held: NULL
    apart from the empty string and from a text reading \\N, quotes, commas, line breaks,
    Vietnamese text, integers with gaps, booleans, dates, and timestamps to the second (floored,
    also before 1970, an aware one as its wall-clock time)."""
    import datetime as dt

    from psycopg import sql

    from sapnhap.load import _copy_frame

    frame = pd.DataFrame({
        "t": pd.Series(["Nguyễn Văn \"A\", tổ 3\nthôn Đông", "", None, "\\N", "plain"], dtype="object"),
        "n": pd.array([1, None, -3, 0, 2**40], dtype="Int64"),
        "b": [True, False, True, False, True],
        "d": [dt.date(1990, 2, 28), None, dt.date(2025, 7, 1), dt.date(1900, 1, 1), dt.date(2024, 12, 31)],
        "ts": pd.to_datetime(["2024-01-05 05:50:52.987654", None, "1969-12-31 23:59:59.5", "2025-07-01 00:00:00",
                              "2000-02-29 12:00:01"], format="ISO8601"),
        "tz": pd.to_datetime(["2024-01-05 05:50:52+07:00"] * 5, utc=True).tz_convert("Asia/Ho_Chi_Minh"),
    })
    with psycopg.connect(scratch_db) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE rt (t text, n bigint, b boolean, d date, ts timestamp, tz timestamp)")
        refused = _copy_frame(cur, "rt", frame, list(frame.columns))
        assert refused.empty
        back = cur.execute(sql.SQL("SELECT t, n, b, d, ts, tz FROM rt")).fetchall()
    assert [r[0] for r in back] == ["Nguyễn Văn \"A\", tổ 3\nthôn Đông", "", None, "\\N", "plain"]
    assert [r[1] for r in back] == [1, None, -3, 0, 2**40]
    assert [r[2] for r in back] == [True, False, True, False, True]
    assert [r[3] for r in back] == list(frame["d"])
    assert [r[4] for r in back] == [dt.datetime(2024, 1, 5, 5, 50, 52), None, dt.datetime(1969, 12, 31, 23, 59, 59),
                                    dt.datetime(2025, 7, 1), dt.datetime(2000, 2, 29, 12, 0, 1)]
    assert {r[5] for r in back} == {dt.datetime(2024, 1, 5, 5, 50, 52)}


def test_copy_refuses_a_nul_row_alone_and_loads_the_rest(scratch_db: str) -> None:
    from sapnhap.load import _copy_frame

    frame = pd.DataFrame({"t": ["ok", "bad\x00value", "fine"], "k": [1, 2, 3]})
    with psycopg.connect(scratch_db) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE rn (t text, k int)")
        refused = _copy_frame(cur, "rn", frame, ["t", "k"])
        assert list(refused["k"]) == [2] and list(refused["_refused_sqlstate"]) == ["22021"]
        assert "bad" not in str(refused["_refused_reason_vi"].iloc[0])
        assert sorted(cur.execute("SELECT k FROM rn").fetchall()) == [(1,), (3,)]
