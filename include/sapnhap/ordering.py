"""Batches of one (source, dataset) commit in cursor order, one run at a time.

A **lease** (a row of ``ops.batch_leases``) is taken by the extract and released by the load's
commit, so no two runs read and load the same rows at once. A run that finds the lease held by
another run that is still running **fails at once** with :class:`BatchLockedError` (it does not
wait: Airflow retries the task later, and the worker slot is not tied up). The lease is taken
over:

- by a later attempt of the same run (a retried or cleared task);
- when the holding run is no longer running (its ``ops.runs`` row ended, or it has none);
- when the lease expired: ``SAPNHAP_BATCH_LEASE_HOURS`` (default 12) after it was taken, for a
  killed run whose ``ops.runs`` row still says running.

At load, inside the load's transaction, a batch is refused (nothing written) when another run
took its lease over, or when its extract started below a cursor another batch has committed
since, or before another batch of the same source and dataset committed
(:class:`StaleBatchError`). The committed cursor never moves backwards.
"""

from __future__ import annotations

import logging
import os

import psycopg

from sapnhap import ops
from sapnhap.extract import later_cursor

log = logging.getLogger(__name__)

DEFAULT_LEASE_HOURS = 12.0


class BatchLockedError(RuntimeError):
    """Another run holds the (source, dataset) lease; nothing was extracted or loaded."""


class StaleBatchError(RuntimeError):
    """A batch extracted before another batch committed a later cursor; loading it would go backwards."""


def lease_hours() -> float:
    """Hours after which a lease of a run that never ended can be taken over."""
    value = os.environ.get("SAPNHAP_BATCH_LEASE_HOURS", str(DEFAULT_LEASE_HOURS))
    try:
        hours = float(value)
    except ValueError:
        raise ValueError(f"SAPNHAP_BATCH_LEASE_HOURS={value!r}: expected a number of hours") from None
    if hours <= 0:
        raise ValueError(f"SAPNHAP_BATCH_LEASE_HOURS={value!r}: must be positive")
    return hours


def take_lease(conn: psycopg.Connection, *, source_id: str, dataset: str, run_id: str, batch_id: str) -> str:
    """Take the (source, dataset) lease for ``run_id`` and commit it, or raise :class:`BatchLockedError`.

    Returns when it was taken (the database's clock, ISO text): the batch's extract starts then.
    """
    with conn.transaction():
        held = ops.lease_holder(conn, source_id=source_id, dataset=dataset)
        if held is not None and held[0] != run_id:
            holder, taken_at, expires_at, expired, running = held
            if running and not expired:
                raise BatchLockedError(
                    f"{source_id}/{dataset}: run {holder} holds the extract-to-load lease since {taken_at:%Y-%m-%d %H:%M:%S %Z} "
                    f"(until it loads or ends, at the latest {expires_at:%Y-%m-%d %H:%M:%S %Z}); run {run_id} "
                    f"extracted nothing. Retry after that run finishes."
                )
            log.warning("%s/%s: lease of run %s taken over by run %s (%s)", source_id, dataset, holder, run_id,
                        "lease expired" if expired else "that run is no longer running")
        taken = ops.write_lease(conn, source_id=source_id, dataset=dataset, run_id=run_id, batch_id=batch_id,
                                seconds=lease_hours() * 3600)
    return taken.isoformat()


def release_lease(conn: psycopg.Connection, *, source_id: str, dataset: str, run_id: str) -> None:
    """Release the lease if ``run_id`` holds it (in the caller's transaction)."""
    ops.delete_lease(conn, source_id=source_id, dataset=dataset, run_id=run_id)


def _strictly_later(a: str, b: str) -> bool:
    return a != b and later_cursor(a, b) == a


def check_load_order(conn: psycopg.Connection, *, source_id: str, dataset: str, run_id: str, batch_id: str,
                     cursor_from: str | None, extract_started_at: str | None = None) -> str | None:
    """Refuse a batch that would load out of order; return the committed cursor (row locked).

    Runs inside the load's transaction: the lease and cursor rows stay locked until it commits.
    ``extract_started_at`` (from :func:`take_lease`) also orders datasets without a cursor
    (export files, full extracts): another batch committed since then is newer.
    """
    lease = ops.lock_lease(conn, source_id=source_id, dataset=dataset)
    if lease is not None and lease[0] != run_id:
        raise BatchLockedError(
            f"{batch_id}: run {lease[0]} took the {source_id}/{dataset} lease over at "
            f"{lease[1]:%Y-%m-%d %H:%M:%S %Z} (this run had ended or its lease expired); this batch is not loaded, "
            f"nothing written. Its rows are read again by the next extract."
        )
    committed, committed_by = ops.lock_cursor(conn, source_id=source_id, dataset=dataset)
    if committed is not None and committed_by != batch_id and (
        cursor_from is None or _strictly_later(committed, cursor_from)
    ):
        raise StaleBatchError(
            f"{batch_id}: extracted from cursor {cursor_from!r}, but batch {committed_by} has since committed "
            f"cursor {committed!r}; loading this older extract would put records back to older versions and move "
            f"the cursor back. Refused, nothing written: the next extract reads these rows again."
        )
    if extract_started_at is not None:
        newer = ops.batch_committed_since(conn, source_id=source_id, dataset=dataset, other_than=batch_id,
                                          since=extract_started_at)
        if newer is not None:
            raise StaleBatchError(
                f"{batch_id}: extracted from {extract_started_at}, but batch {newer[0]} committed after that "
                f"({newer[1]:%Y-%m-%d %H:%M:%S %Z}); loading this older extract could put records back to older "
                f"versions. Refused, nothing written: the next extract reads these rows again."
            )
    return committed


def advance_cursor(conn: psycopg.Connection, *, source_id: str, dataset: str, batch_id: str,
                   committed: str | None, cursor_to: str | None) -> None:
    """Commit ``cursor_to`` as the dataset's cursor, never moving it backwards."""
    if cursor_to is None:
        return
    ops.write_cursor(conn, source_id=source_id, dataset=dataset, value=later_cursor(cursor_to, committed),
                     batch_id=batch_id)
