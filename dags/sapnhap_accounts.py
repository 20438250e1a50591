"""
### Accounts, permissions and official mail re-mapped to the new units (R12, R18)

Runs after the nightly sync has changed what it reads (scheduled on the `core.accounts` and
`core.mail_directory` table assets; the nightly's **publish** task emits an event per changed table
once the night's loads are done). From `core.accounts` and `core.mail_directory`:

1. **build**: match the same officials across legacy systems (citizen ID, else name + birth date +
   new unit; uncertain pairs only listed), re-map legacy roles by `role_rules.yaml`, give every
   person one official address, forward every old address, list the directory; the `accounts.*`
   tables are replaced in one transaction.
2. **export**: directory (CSV, LDIF) and forwarding map (CSV) to `exports/accounts/<date>/`.
3. **review**: one masked Vietnamese email per new unit to its owner: orphaned, widened, merged and
   dormant accounts, and uncertain matches.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, get_current_context, task

from sapnhap.airflow_support import core_asset, default_args

# Either table changing is reason to rebuild (the build replaces the accounts.* tables whole).
NEEDS = core_asset("accounts") | core_asset("mail_directory")
LOCAL_TZ = "Asia/Ho_Chi_Minh"


def _run() -> tuple[str, object]:
    ctx = get_current_context()
    when = ctx.get("logical_date") or ctx["dag_run"].run_after
    # Under the scheduler a triggered run's dates are plain datetimes (pendulum only under `dags test`).
    return ctx["dag_run"].run_id, pendulum.instance(when).in_timezone(LOCAL_TZ).date()


@dag(
    dag_id="sapnhap_accounts",
    schedule=NEEDS,
    start_date=pendulum.datetime(2025, 7, 1, tz=LOCAL_TZ),
    catchup=False,
    max_active_runs=1,  # each run replaces the accounts.* tables whole
    default_args=default_args(),
    tags=["sapnhap", "accounts", "permissions", "mail"],
    doc_md=__doc__,
)
def sapnhap_accounts() -> None:
    @task
    def build() -> dict:
        from sapnhap.accounts.pipeline import build_stage
        from sapnhap.airflow_support import services_from_airflow

        run_id, as_of = _run()
        return build_stage(services_from_airflow(), run_id=run_id, as_of=as_of)

    @task
    def export(built: dict) -> dict:
        from sapnhap.accounts.pipeline import export_stage
        from sapnhap.airflow_support import services_from_airflow

        run_id, as_of = _run()
        return export_stage(services_from_airflow(), run_id=built["run_id"], as_of=as_of)

    @task
    def review(built: dict) -> dict:
        from sapnhap.accounts.pipeline import review_stage
        from sapnhap.airflow_support import services_from_airflow

        _, as_of = _run()
        return review_stage(services_from_airflow(), run_id=built["run_id"], as_of=as_of)

    built = build()
    export(built)
    review(built)


sapnhap_accounts()
