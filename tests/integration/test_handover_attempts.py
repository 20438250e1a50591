"""Handover records count every attempt of a batch that loaded, not only the last one.

A source cleared and re-run inside a run (Airflow's Clear) loads twice: the first attempt the
night's new records, the second only the rows at the cursor's boundary. The handover record of
the run must list what the night handed over, by whichever attempt loaded it.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from test_keys_and_ordering import Legacy, resident, residents_source, until_backup

from sapnhap.services import Services
from sapnhap.sync.load import load_stage
from sapnhap.sync.prepare import prepare_run

pytestmark = pytest.mark.integration

COMMUNE = "01153"  # resident() writes every row in this old commune of Bắc Quang


def _line(dsn: str, run_id: str, unit: str, level: str) -> dict:
    with psycopg.connect(dsn) as conn:
        (datasets,) = conn.execute(
            "SELECT datasets FROM ops.handover_records WHERE run_id = %s AND old_unit_code = %s AND old_unit_level = %s",
            (run_id, unit, level),
        ).fetchone()
    (line,) = [d for d in datasets if d["dataset"] == "residents"]
    return line


def test_a_cleared_and_rerun_source_is_handed_over_with_every_attempt_that_loaded(
    tmp_path: Path, services: Services
) -> None:
    from sapnhap.handover import build_handover

    source = residents_source()
    legacy = Legacy(tmp_path / "legacy.db")
    # Five records written on five days: the re-run's cursor window (2 hours back) holds only the last.
    legacy.upsert(*(resident(str(i), f"00219000000{i}", f"2025-08-0{i} 08:00:00") for i in range(1, 6)))
    prepare_run(services, "n1")
    first = load_stage(services, source, until_backup(services, source, legacy.uri, "n1"))
    assert first["inserted"] == 5
    # The source is cleared and run again in the same run: a new attempt of the same batch.
    again = load_stage(services, source, until_backup(services, source, legacy.uri, "n1"))
    assert again["extracted"] == 1, again
    with psycopg.connect(services.platform_dsn) as conn:
        attempts = conn.execute("SELECT count(*) FROM ops.loaded_backups WHERE run_id = 'n1'").fetchone()[0]
    assert attempts == 2

    build_handover(services, "n1", sources=[source])
    commune = _line(services.platform_dsn, "n1", COMMUNE, "commune")
    assert (commune["extracted"], commune["loaded"], commune["quarantined"], commune["merged"]) == (5, 5, 0, 0)
    assert commune["held_total"] == 5
    district = _line(services.platform_dsn, "n1", source.old_units.districts[0], "district")
    assert (district["extracted"], district["loaded"]) == (5, 5)


def test_the_handover_downloads_each_backup_object_once(tmp_path: Path, services: Services,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The handover runs at the night's tail over every source: it read each batch's manifest three
    times (its body, its checksum, and again as the last attempt that loaded)."""
    from collections import Counter

    from sapnhap import storage
    from sapnhap.handover import build_handover

    source = residents_source()
    legacy = Legacy(tmp_path / "legacy.db")
    legacy.upsert(*(resident(str(i), f"00219000000{i}", f"2025-08-0{i} 08:00:00") for i in range(1, 6)))
    prepare_run(services, "n1")
    load_stage(services, source, until_backup(services, source, legacy.uri, "n1"))
    load_stage(services, source, until_backup(services, source, legacy.uri, "n1"))  # a second attempt
    downloads: Counter = Counter()
    real = storage.get_bytes

    def counting(cfg, key, *args, **kwargs):  # noqa: ANN001, ANN202
        downloads[key] += 1
        return real(cfg, key, *args, **kwargs)

    monkeypatch.setattr(storage, "get_bytes", counting)
    build_handover(services, "n1", sources=[source])
    manifests = [k for k in downloads if k.endswith("manifest.json")]
    assert len(manifests) == 2  # both attempts that loaded are read ...
    assert set(downloads.values()) == {1}, downloads  # ... and no object twice
    commune = _line(services.platform_dsn, "n1", COMMUNE, "commune")
    assert (commune["extracted"], commune["loaded"], commune["held_total"]) == (5, 5, 5)


def test_a_parquet_object_in_parts_is_read_with_only_the_columns_asked_for(services: Services) -> None:
    """The handover reads every row a night extracted (all of a large batch's parts): only the
    columns its counts need, of those the object has."""
    import io

    import pandas as pd

    from sapnhap import storage

    refs = []
    for i, frame in enumerate([pd.DataFrame({"_row_id": [1, 2], "source_key": ["a", "b"], "name": ["x", "y"]}),
                               pd.DataFrame({"_row_id": [3], "source_key": ["c"], "name": ["z"]})]):
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        stored = storage.put_bytes(services.s3, f"tests/columns/part-{i}.parquet", buf.getvalue())
        refs.append({"key": stored.key, "sha256": stored.sha256, "rows": len(frame), "size": len(buf.getvalue())})
    obj = storage.multipart(refs)
    read = storage.read_parquet(services.s3, obj, ["source_key", "_row_id", "old_commune_code"])
    assert list(read.columns) == ["source_key", "_row_id"]  # a column the object lacks is left out
    assert read["source_key"].tolist() == ["a", "b", "c"]
    assert list(storage.read_parquet(services.s3, obj).columns) == ["_row_id", "source_key", "name"]
