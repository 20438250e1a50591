"""Prepare: the platform is at this code's schema, the reference data is published, the bucket is ready,
and the run is open in ``ops.runs``."""

from __future__ import annotations

import sapnhap
from sapnhap import db, ops, storage
from sapnhap.services import Services


def prepare_run(services: Services, run_id: str) -> dict:
    """Check the platform schema is at this code's revision, publish the reference data, open the run.

    No DDL: the nightly runs as the loader role; ``python -m sapnhap migrate`` (the owner) changes
    the schema. A platform behind this code fails here with :class:`~sapnhap.migrations.SchemaVersionError`.
    """
    from sapnhap.migrations import check_schema
    from sapnhap.reference import load_reference
    from sapnhap.reference.platform import publish_reference

    check_schema(db.dsn_for(services.platform_dsn, "prepare"))
    ref = load_reference()
    publish_reference(db.dsn_for(services.platform_dsn, "prepare"), ref)
    storage.ensure_bucket(services.s3, retention_days=storage.retention_days_from_env(),
                          object_lock=storage.object_lock_from_env())
    with db.connect(services.platform_dsn, "prepare") as conn:
        ops.open_run(conn, run_id=run_id, code_version=sapnhap.__version__, crosswalk_version=ref.version)
    return {"run_id": run_id, "crosswalk_version": ref.version}
