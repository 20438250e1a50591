"""Alembic environment of the platform: one psycopg connection, one transaction, one advisory lock."""

from __future__ import annotations

import psycopg
from alembic import context
from sqlalchemy import create_engine, pool, text

from sapnhap.migrations import VERSION_SCHEMA, VERSION_TABLE

config = context.config


def run_migrations_online() -> None:
    dsn = config.attributes["dsn"]
    # Any libpq DSN (key=value, URI, unix socket): the engine only borrows psycopg's connection.
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(dsn), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            version_table=VERSION_TABLE,
            version_table_schema=VERSION_SCHEMA,
            transactional_ddl=True,
            transaction_per_migration=False,
        )
        with context.begin_transaction():
            # Two migrators (init container restarted, two deployments) wait for each other.
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('sapnhap.migrate'))"))
            connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {VERSION_SCHEMA}"))
            if config.attributes.get("repair"):
                # Replay from the first revision: an early migration's lookup functions name the
                # columns of their time; the later migration that added columns recreates them.
                connection.execute(text("SET LOCAL check_function_bodies = off"))
                table = f"{VERSION_SCHEMA}.{VERSION_TABLE}"
                if connection.execute(text("SELECT to_regclass(:t)"), {"t": table}).scalar() is not None:
                    connection.execute(text(f"DELETE FROM {table}"))
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run `python -m sapnhap migrate`")
run_migrations_online()
