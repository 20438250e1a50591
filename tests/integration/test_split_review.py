"""Split communes through the pipeline: rule -> mapped, no rule -> review queue, decision -> mapped next run."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from legacy_sqlite import bacquang_dossiers_source, dossier, sqlite_legacy, sync

from sapnhap.reference import load_reference, load_split_rules
from sapnhap.reference.platform import record_decision
from sapnhap.services import Services
from sapnhap.sync.prepare import prepare_run

pytestmark = pytest.mark.integration


def test_split_commune_records_wait_for_a_decision_then_map(tmp_path: Path, platform_dsn: str, s3_config, smtp_sink) -> None:
    ref = load_reference()
    rules = load_split_rules("08")
    rule = rules.iloc[0]
    split = ref.crosswalk[ref.crosswalk["old_commune_code"] == rule["old_commune_code"]]
    candidates = set(split["new_commune_code"])
    assert len(candidates) > 1
    services = Services(platform_dsn=platform_dsn, s3=s3_config, smtp=smtp_sink[0])
    source = bacquang_dossiers_source()
    connection = sqlite_legacy(
        tmp_path / "legacy.db",
        [
            dossier("S-RULE", commune=rule["old_commune_code"], address=f"{rule['pattern']}, xã cũ"),
            dossier("S-NONE", commune=rule["old_commune_code"], address="Không ghi thôn", modified="2024-03-04 08:00:00"),
            # Later than S-NONE: the next run's extract starts after S-NONE, so only the decision brings it back.
            dossier("S-LATER", modified="2024-03-05 08:00:00"),
        ],
    )
    prepare_run(services, "run-1")
    first = sync(services, source, connection, "run-1")
    assert (first["inserted"], first["quarantined"]) == (2, 1)
    with psycopg.connect(platform_dsn) as conn:
        mapped = conn.execute(
            "SELECT new_commune_code, mapping_method FROM core.dossiers WHERE dossier_code = 'S-RULE'"
        ).fetchone()
        queued = conn.execute(
            "SELECT record_key, candidates, first_seen_run FROM registry.review_queue WHERE source_id = %s", (source.id,)
        ).fetchall()
        absent = conn.execute("SELECT count(*) FROM core.dossiers WHERE dossier_code = 'S-NONE'").fetchone()[0]
    assert mapped == (rule["new_commune_code"], "rule")
    assert absent == 0  # never guessed
    assert [(k, set(c.split("|")), r) for k, c, r in queued] == [(f"{source.id}:S-NONE", candidates, "run-1")]

    target = sorted(candidates - {rule["new_commune_code"]})[0]
    with pytest.raises(ValueError):
        record_decision(platform_dsn, f"{source.id}:S-NONE", rule["old_commune_code"], "99999", decided_by="test")
    record_decision(platform_dsn, f"{source.id}:S-NONE", rule["old_commune_code"], target, decided_by="cán bộ A")

    prepare_run(services, "run-2")
    second = sync(services, source, connection, "run-2")
    with psycopg.connect(platform_dsn) as conn:
        decided = conn.execute(
            "SELECT new_commune_code, mapping_method FROM core.dossiers WHERE dossier_code = 'S-NONE'"
        ).fetchone()
        still_open = conn.execute(
            "SELECT count(*) FROM ops.quarantine WHERE source_key = 'S-NONE' AND status = 'open'"
        ).fetchone()[0]
    assert decided == (target, "decision")
    assert still_open == 0 and second["quarantined"] == 0
    assert second["extracted"] == 2  # the boundary row S-LATER, and S-NONE requeued by its decision
    prepare_run(services, "run-3")
    assert sync(services, source, connection, "run-3")["extracted"] == 1  # a decision is applied once
