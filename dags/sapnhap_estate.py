"""
### Report indicators and portal redirects of the new units (R19, 687 appendix II.1)

Runs after the nightly sync has changed what it reads (scheduled on the `core.indicator_values`
and `core.portal_pages` table assets; the nightly's **publish** task emits an event per changed
table once the night's loads are done). From the platform tables, never from the legacy files:

1. **indicators**: the old communes' values re-aggregated to the new communes and provinces
   (additive summed, split communes by the province's declared weights or "cannot be allocated",
   ratios recomputed from their parts), one CSV and one JSON per period with each value's
   composition, to `exports/indicators/<date>/`.
2. **redirects**: every old portal page under its new unit's portal, the redirect map old URL ->
   new URL for the declared period, proven (each old URL reaches exactly one live URL in one hop),
   as an nginx `map` file and a CSV, to `exports/portal/<date>/`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, get_current_context, task

from sapnhap.airflow_support import core_asset, default_args

# Either table changing is reason to rebuild; each task rebuilds its export whole.
NEEDS = core_asset("indicator_values") | core_asset("portal_pages")
LOCAL_TZ = "Asia/Ho_Chi_Minh"


def _as_of():  # noqa: ANN202 - datetime.date
    ctx = get_current_context()
    when = ctx.get("logical_date") or ctx["dag_run"].run_after
    # Under the scheduler a triggered run's dates are plain datetimes (pendulum only under `dags test`).
    return pendulum.instance(when).in_timezone(LOCAL_TZ).date()


@dag(
    dag_id="sapnhap_estate",
    schedule=NEEDS,
    start_date=pendulum.datetime(2025, 7, 1, tz=LOCAL_TZ),
    catchup=False,
    max_active_runs=1,  # each run rewrites the day's exports whole
    default_args=default_args(),
    tags=["sapnhap", "indicators", "portal"],
    doc_md=__doc__,
)
def sapnhap_estate() -> None:
    @task
    def indicators() -> dict:
        from sapnhap.airflow_support import services_from_airflow
        from sapnhap.indicators.publish import publish_indicators

        return publish_indicators(services_from_airflow(), as_of=_as_of())

    @task
    def redirects() -> dict:
        from sapnhap.airflow_support import services_from_airflow
        from sapnhap.portal import publish_redirects

        return publish_redirects(services_from_airflow(), as_of=_as_of())

    indicators()
    redirects()


sapnhap_estate()
