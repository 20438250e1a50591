"""Importing this module warms the process (see :mod:`sapnhap.preload`): the fork server of the
LocalExecutor's workers and the ``airflow celery worker`` process import it by name."""

from __future__ import annotations

import gc

from sapnhap.preload import warm

WARMED = warm()
# What was imported is never freed: keep the collector off those pages so forked processes keep
# sharing them instead of copying them (Airflow's Celery worker does the same for its modules).
gc.freeze()
