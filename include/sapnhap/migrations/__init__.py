"""Platform migrations (Alembic): every change of the platform schema is a numbered revision.

``python -m sapnhap migrate`` applies them as the platform's owner role (the compose init
container and the embedded default run it), then (re)grants the least-privilege roles. The
nightly runs as the loader role, does no DDL, and its ``prepare`` task only checks that the
platform is at the revision this code was written for (:func:`check_schema`).

The applied revision is kept in ``ops.schema_version``. Revisions live in ``versions/``; how to
write one is in ``docs/schema-changes.md``.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parent
VERSION_SCHEMA = "ops"
VERSION_TABLE = "schema_version"


class SchemaVersionError(RuntimeError):
    """The platform schema is not at the revision this code needs; names both and the fix."""


def _config(dsn: str, version_locations: list[Path] | None = None):  # noqa: ANN202 - alembic Config
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    locations = [MIGRATIONS_DIR / "versions", *(version_locations or [])]
    cfg.set_main_option("version_locations", " ".join(str(p) for p in locations))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["dsn"] = dsn
    return cfg


def head(version_locations: list[Path] | None = None) -> str:
    """The newest revision this code knows."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config("", version_locations)).get_current_head()


def revisions(version_locations: list[Path] | None = None) -> list[str]:
    """Every revision this code knows, oldest first."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(_config("", version_locations))
    return [s.revision for s in reversed(list(scripts.walk_revisions()))]


def current(dsn: str) -> str | None:
    """The revision the platform is at (None: no platform yet, or one created before migrations)."""
    with psycopg.connect(dsn) as conn:
        table = conn.execute("SELECT to_regclass(%s)", (f"{VERSION_SCHEMA}.{VERSION_TABLE}",)).fetchone()[0]
        if table is None:
            return None
        row = conn.execute(f"SELECT version_num FROM {VERSION_SCHEMA}.{VERSION_TABLE}").fetchone()
    return row[0] if row else None


def upgrade(dsn: str, revision: str = "head", *, version_locations: list[Path] | None = None,
            repair: bool = False) -> str:
    """Apply the migrations up to ``revision`` (one transaction, serialized by an advisory lock); return it.

    A platform created before migrations existed (by ``ensure_platform`` of release 0.1.0) is
    upgraded in place: revision 0001 is exactly that schema and only creates what is missing.

    ``repair``: replay every migration from the first, in the same single transaction, to bring
    back what was dropped by hand (a core table before a restore). This works because every
    migration only creates what is missing (``IF NOT EXISTS``, ``CREATE OR REPLACE``); function
    bodies are checked when the last migration that touches them has run, not before.
    """
    from alembic import command

    cfg = _config(dsn, version_locations)
    cfg.attributes["repair"] = repair
    command.upgrade(cfg, revision)
    return current(dsn) or ""


def check_schema(dsn: str) -> str:
    """Return the platform's revision, or raise :class:`SchemaVersionError` when it is not this code's head."""
    want = head()
    have = current(dsn)
    if have == want:
        return have
    fix = "run `python -m sapnhap migrate` with the platform owner's account (SAPNHAP_PLATFORM_URL)"
    if have is None:
        raise SchemaVersionError(f"the platform has no schema version (new, or created before migrations); "
                                 f"this code needs revision {want}: {fix}")
    if have not in revisions():
        raise SchemaVersionError(f"the platform is at revision {have}, newer than this code (head {want}): "
                                 "deploy the code that wrote that migration")
    raise SchemaVersionError(f"the platform schema is at revision {have}, behind this code's {want}: {fix}")
