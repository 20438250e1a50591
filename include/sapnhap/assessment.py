"""The assessment run (R13): profile a legacy source before its first load.

Reads every dataset of the source in full (no cursor), profiles it under the canonical column
names (row counts, columns, null rates, duplicates on natural keys, coverage of the old commune
codes by the crosswalk, encodings and text anomalies), stores the profile in the bucket and the
platform, and queues its Vietnamese email to the owners in the outbox (sent at once when the
mail server answers, else by the nightly report task). The nightly DAG runs it as its own step
for a source that has never been assessed, before that source's first extract.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
from psycopg.types.json import Jsonb

from sapnhap import storage
from sapnhap.datasets import get_dataset
from sapnhap.extract import extract_to_parquet
from sapnhap.services import Services
from sapnhap.sources import Source

log = logging.getLogger(__name__)


def needs_assessment(services: Services, source: Source) -> bool:
    """True when the source has never been assessed."""
    with psycopg.connect(services.platform_dsn) as conn:
        return conn.execute("SELECT 1 FROM ops.assessments WHERE source_id = %s", (source.id,)).fetchone() is None


def profile_source(source: Source, connection: str) -> dict[str, dict]:
    """Profile every dataset of a source; a dict dataset -> profile (see ``quality.profile_frame``)."""
    from sapnhap.quality import profile_frame
    from sapnhap.reference import load_reference

    ref = load_reference()
    known = set(ref.old_units.loc[ref.old_units["level"] == "commune", "code"])
    profiles: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="sapnhap-assess-") as tmp:
        for name, mapping in source.datasets.items():
            result = extract_to_parquet(source, name, connection, Path(tmp) / f"{name}.parquet")
            raw = pq.read_table(result.path).to_pandas()
            canonical = raw.rename(columns={legacy: canonical for canonical, legacy in mapping.columns.items()})
            profile = profile_frame(
                canonical,
                dataset=name,
                code_column="old_commune_code" if get_dataset(name).has_unit else None,
                known_old_codes=known,
                date_formats={c.name: mapping.date_format if c.type == "date" else mapping.timestamp_format
                              for c in get_dataset(name).columns if c.type in ("date", "timestamp")},
            )
            profile["legacy_columns"] = result.columns
            profile["unmapped_legacy_columns"] = result.unmapped_columns
            profiles[name] = profile
    return profiles


def assess_source(services: Services, source: Source, connection: str, *, run_id: str) -> dict:
    """Profile a source, store the profile, queue its email to the owners, try to send it; a small summary.

    The assessment row and the owners' emails (``ops.outbox``) are written in one transaction:
    the source counts as assessed exactly when its email is queued. A mail server that is down
    only leaves the email pending (the nightly report task sends it): this never raises for mail.
    """
    from sapnhap.reports import outbox
    from sapnhap.reports.mail import render_assessment_email

    profiles = profile_source(source, connection)
    key = f"assessments/{source.id}/{storage.safe_run_id(run_id)}/profile.json"
    storage.put_json(services.s3, key, profiles)
    counts = {name: p.get("row_count", 0) for name, p in profiles.items()}
    findings = {name: p.get("findings", []) for name, p in profiles.items()}
    with psycopg.connect(services.platform_dsn) as conn, conn.transaction():
        conn.execute(
            """INSERT INTO ops.assessments (source_id, run_id, profile_key, row_counts, findings, emailed_to)
               VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (source_id, run_id) DO NOTHING""",
            (source.id, run_id, key, Jsonb(counts), Jsonb(findings), source.owners),
        )
        # One message to all the source's owners, as the assessment was always sent.
        message = render_assessment_email(profiles, source, from_addr=services.smtp.from_addr)
        outbox.enqueue(conn, kind=outbox.ASSESSMENT, dedup_key=outbox.assessment_key(source.id),
                       run_id=run_id, recipient=", ".join(source.owners), msg=message, meta={"source_id": source.id})
    delivery = outbox.deliver_pending(services.platform_dsn, services.smtp, kinds=(outbox.ASSESSMENT,))
    if delivery.error:
        log.warning("assessment of %s stored; its email waits in ops.outbox (mail server: %s)", source.id, delivery.error)
    log.info("assessed %s: %s rows per dataset; profile at %s", source.id, counts, key)
    return {"source_id": source.id, "profile_key": key, "row_counts": counts,
            "email_sent": any(d["dedup_key"] == outbox.assessment_key(source.id) for d in delivery.sent)}


def assessment_step(services: Services, source: Source, connection: str, *, run_id: str) -> dict:
    """The per-source assessment task: assess a source never assessed before, else nothing.

    Its mail never blocks anything: the email goes through the outbox (see :func:`assess_source`).
    """
    if not needs_assessment(services, source):
        return {"source_id": source.id, "assessed": False}
    return {**assess_source(services, source, connection, run_id=run_id), "assessed": True}
