"""Platform sessions with lock, statement and idle-transaction timeouts sized per step.

Every session the pipeline opens on the platform database goes through :func:`connect`, so a
lock held by an analyst's query or a frozen worker makes the step fail fast with a clear error
(and Airflow retry it) instead of hanging until someone kills it. The timeouts are set as
session defaults through libpq ``options`` (not ``SET``, which a rolled-back first transaction
would undo). Sizes live in :data:`STEP_TIMEOUTS`; each can be overridden from the environment:
``SAPNHAP_LOCK_TIMEOUT_<STEP>``, ``SAPNHAP_STATEMENT_TIMEOUT_<STEP>`` and
``SAPNHAP_IDLE_TIMEOUT_<STEP>`` (e.g. ``SAPNHAP_STATEMENT_TIMEOUT_LOAD=90min``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo


@dataclass(frozen=True)
class Timeouts:
    """PostgreSQL durations (``500ms``, ``10s``, ``5min``, ``1h``; ``0`` disables) for one step."""

    lock: str
    statement: str
    idle_in_transaction: str


# lock: waiting for a table/row/advisory lock another session holds; statement: one query;
# idle_in_transaction: a session that stopped talking inside an open transaction (a frozen
# worker) is ended and its locks released.
STEP_TIMEOUTS: dict[str, Timeouts] = {
    "prepare": Timeouts("1min", "15min", "5min"),  # schema DDL and the reference publish
    "extract": Timeouts("30s", "2min", "2min"),  # bookkeeping only: the legacy read is another server
    "transform": Timeouts("30s", "5min", "2min"),  # decisions, split-commune review queue
    "validate": Timeouts("30s", "5min", "2min"),
    "backup": Timeouts("30s", "2min", "2min"),
    "load": Timeouts("30s", "1h", "10min"),  # one transaction per batch: COPY and merge of the whole batch
    "reconcile": Timeouts("30s", "5min", "2min"),
    "report": Timeouts("30s", "10min", "5min"),
    "handover": Timeouts("30s", "30min", "5min"),
    "default": Timeouts("30s", "15min", "5min"),
}

_DURATION = re.compile(r"^\d+\s*(ms|s|min|h|d)?$")


class PlatformTimeoutError(RuntimeError):
    """A platform statement waited longer than its step's lock or statement timeout; it was rolled back."""


def _duration(value: str, name: str) -> str:
    value = value.strip()
    if not _DURATION.match(value):
        raise ValueError(f"{name}={value!r}: expected a PostgreSQL duration such as 500ms, 30s, 5min or 1h")
    return value.replace(" ", "")


def timeouts_for(step: str) -> Timeouts:
    """The timeouts of ``step`` (unknown steps get ``default``), with environment overrides applied."""
    base = STEP_TIMEOUTS.get(step, STEP_TIMEOUTS["default"])
    suffix = re.sub(r"[^A-Z0-9]", "_", step.upper())
    values = {}
    for field, env in (("lock", "LOCK"), ("statement", "STATEMENT"), ("idle_in_transaction", "IDLE")):
        name = f"SAPNHAP_{env}_TIMEOUT_{suffix}"
        values[field] = _duration(os.environ.get(name, getattr(base, field)), name)
    return Timeouts(**values)


def session_options(step: str) -> str:
    """The libpq ``options`` string setting the step's timeouts and application name."""
    t = timeouts_for(step)
    return (f"-c lock_timeout={t.lock} -c statement_timeout={t.statement} "
            f"-c idle_in_transaction_session_timeout={t.idle_in_transaction}")


def dsn_for(dsn: str, step: str) -> str:
    """``dsn`` with the step's timeouts in its ``options``: for helpers that take a DSN and connect themselves."""
    params = conninfo_to_dict(dsn)
    options = " ".join(o for o in (params.get("options"), session_options(step)) if o)
    params.setdefault("application_name", f"sapnhap-{step}")
    return make_conninfo(**{**params, "options": options})


def connect(dsn: str, step: str, **kwargs: object) -> psycopg.Connection:
    """Open a platform session whose timeouts are those of ``step``; keyword arguments go to psycopg."""
    return psycopg.connect(dsn_for(dsn, step), **kwargs)


@contextmanager
def explain_timeouts(step: str, what: str) -> Iterator[None]:
    """Turn PostgreSQL's lock/statement timeout cancellations into :class:`PlatformTimeoutError` naming ``what``."""
    try:
        yield
    except psycopg.errors.LockNotAvailable as exc:
        t = timeouts_for(step)
        raise PlatformTimeoutError(
            f"{what}: waited longer than lock_timeout={t.lock} (step {step}) for a lock another session holds "
            f"on the platform; rolled back, nothing written. Find the holder in pg_locks/pg_stat_activity, "
            f"then retry (override with SAPNHAP_LOCK_TIMEOUT_{step.upper()})."
        ) from exc
    except psycopg.errors.QueryCanceled as exc:
        t = timeouts_for(step)
        raise PlatformTimeoutError(
            f"{what}: a statement ran longer than statement_timeout={t.statement} (step {step}) or was "
            f"cancelled; rolled back, nothing written (override with SAPNHAP_STATEMENT_TIMEOUT_{step.upper()})."
        ) from exc
