"""The "Sáp nhập" pages in the Airflow UI: a FastAPI app mounted in the API server at ``/sapnhap``.

Wiring only: every query and action is in :mod:`sapnhap.ui_queries`. Airflow mounts a plugin
app without its own authentication, so every route here resolves the caller with the API
server's own ``get_user`` (the ``_token`` JWT cookie of the UI, or a bearer token) and sends
anyone not logged in to Airflow's login page. Decisions and uploads need the right to edit
the nightly DAG and record the user's name.
"""

from __future__ import annotations

import datetime as dt
import logging
import mimetypes
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

log = logging.getLogger(__name__)

URL_PREFIX = "/sapnhap"
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("sapnhap_ui_templates")))
LOCAL_TZ = dt.timezone(dt.timedelta(hours=7), "ICT")
PAGES = (
    ("tonight", "Đêm qua"),
    ("quarantine", "Cách ly"),
    ("review", "Chờ quyết định"),
    ("lookup", "Tra cứu đơn vị"),
    ("docs", "Data Docs"),
)


def _local(value: dt.datetime | None) -> str:
    return value.astimezone(LOCAL_TZ).strftime("%d/%m/%Y %H:%M") if value else ""


TEMPLATES.env.filters["local"] = _local
TEMPLATES.env.filters["urlquote"] = lambda v: quote(str(v), safe="")


def _services():  # noqa: ANN202 - sapnhap.services.Services
    from sapnhap.airflow_support import services_from_airflow

    return services_from_airflow()


def _source_ids() -> list[str]:
    from sapnhap.sources import load_sources

    return [s.id for s in load_sources()]


class LoginRequired(Exception):  # noqa: N818 - control flow, not an error
    """The caller has no valid Airflow session: send them to the login page."""


async def current_user(request: Request):  # noqa: ANN201 - the auth manager's user type
    """The logged-in Airflow user, checked exactly like the API server checks its own routes."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.security import HTTPAuthorizationCredentials

    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    bearer = HTTPAuthorizationCredentials(scheme=scheme, credentials=token) if token else None
    try:
        return await get_user(request, None, bearer)
    except HTTPException as exc:
        if exc.status_code in (401, 403):
            raise LoginRequired from exc
        raise


def _can_act(user) -> bool:
    """Deciding and uploading change what the next run loads: the right to edit the nightly DAG."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    from sapnhap.ui_queries import NIGHTLY_DAG_ID

    return get_auth_manager().is_authorized_dag(method="PUT", details=DagDetails(id=NIGHTLY_DAG_ID), user=user)


def _same_origin(request: Request) -> None:
    """Refuse a form posted from another site (the session cookie would otherwise ride along)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin and urlsplit(origin).netloc != request.url.netloc:
        raise HTTPException(403, "Yêu cầu từ trang khác bị từ chối.")


User = Annotated[Any, Depends(current_user)]
FormText = Annotated[str, Form()]

app = FastAPI(title="Sáp nhập", docs_url=None, redoc_url=None, openapi_url=None)
# Public third-party styles and scripts only (Data Docs assets for offline viewing): no login needed.
app.mount("/static", StaticFiles(directory=Path(__file__).with_name("sapnhap_ui_static")), name="static")


@app.exception_handler(LoginRequired)
async def _to_login(request: Request, exc: LoginRequired) -> RedirectResponse:  # noqa: ARG001
    from airflow.api_fastapi.app import get_auth_manager

    return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)


@app.exception_handler(Exception)
async def _platform_unavailable(request: Request, exc: Exception) -> HTMLResponse:
    """The platform is unreachable or not created yet: say so in Vietnamese instead of a bare 500."""
    import psycopg

    if isinstance(exc, psycopg.errors.UndefinedTable):
        text = ("Nền tảng dữ liệu chưa được khởi tạo (chưa có lần chạy nào). "
                "Hãy chạy DAG sapnhap_nightly (hoặc `make demo`) rồi mở lại trang này.")
    elif isinstance(exc, psycopg.OperationalError):
        text = "Không kết nối được cơ sở dữ liệu của nền tảng (kết nối sapnhap_platform). Hãy báo quản trị hệ thống."
    else:
        log.exception("Sáp nhập page %s failed", request.url.path)
        text = "Trang gặp lỗi ngoài dự kiến; chi tiết đã được ghi vào nhật ký của Airflow API server."
    log.warning("Sáp nhập page %s: %s", request.url.path, type(exc).__name__)
    return HTMLResponse(f"<!doctype html><meta charset='utf-8'><title>Sáp nhập</title>"
                        f"<p style='font-family:sans-serif;padding:1rem'>{text}</p>", status_code=503)


def _render(request: Request, page: str, user, **context) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(
        request, f"{page}.html",
        {"pages": PAGES, "page": page, "user_name": user.get_name(), "can_act": _can_act(user),
         "can_trigger": _can_trigger(user), **context},
    )


@app.get("/", include_in_schema=False)
async def index(user: User) -> RedirectResponse:  # noqa: ARG001
    return RedirectResponse(f"{URL_PREFIX}/tonight", status_code=303)


@app.get("/tonight", response_class=HTMLResponse)
def tonight_page(request: Request, user: User, run_id: str | None = None, message: str | None = None,
                 error: str | None = None) -> HTMLResponse:
    from sapnhap.ui_queries import NIGHTLY_DAG_ID, tonight

    data = tonight(_services().platform_dsn, run_id)
    peak = max([t.extracted for t in data.trend] + [1])
    return _render(request, "tonight", user, data=data, peak=peak, dag_id=NIGHTLY_DAG_ID, message=message,
                   error=error)


def _filter(source_id: str | None, dataset: str | None, expectation: str | None, severity: str | None,
            source_key: str | None):  # noqa: ANN202
    from sapnhap.ui_queries import QuarantineFilter

    return QuarantineFilter(source_id or None, dataset or None, expectation or None, severity or None, source_key or None)


@app.get("/quarantine", response_class=HTMLResponse)
def quarantine_page(
    request: Request, user: User, source_id: str | None = None, dataset: str | None = None,
    expectation: str | None = None, severity: str | None = None, source_key: str | None = None,
    message: str | None = None, error: str | None = None,
) -> HTMLResponse:
    from sapnhap.ui_queries import (
        MAX_QUARANTINE_ROWS,
        open_quarantine,
        pending_corrections,
        quarantine_counts,
        quarantine_filter_choices,
    )

    services = _services()
    flt = _filter(source_id, dataset, expectation, severity, source_key)
    return _render(
        request, "quarantine", user, flt=flt, rows=open_quarantine(services.platform_dsn, flt),
        limit=MAX_QUARANTINE_ROWS, counts=quarantine_counts(services.platform_dsn),
        choices=quarantine_filter_choices(services.platform_dsn), sources=_source_ids(),
        pending=pending_corrections(services), message=message, error=error,
        query=str(request.url.query),
    )


@app.get("/quarantine.xlsx")
def quarantine_download(
    user: User, source_id: str | None = None, dataset: str | None = None,  # noqa: ARG001
    expectation: str | None = None, severity: str | None = None, source_key: str | None = None,
) -> Response:
    from sapnhap.reports.attachment import XLSX_TYPE
    from sapnhap.ui_queries import quarantine_xlsx

    data = quarantine_xlsx(_services().platform_dsn, _filter(source_id, dataset, expectation, severity, source_key))
    name = f"cach_ly_{source_id or 'tat_ca'}_{dt.datetime.now(LOCAL_TZ):%Y%m%d}.xlsx"
    return Response(data, media_type="/".join(XLSX_TYPE),
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@app.post("/quarantine/upload")
async def quarantine_upload(
    request: Request, source_id: FormText, file: Annotated[UploadFile, Form()], user: User,
) -> RedirectResponse:
    from sapnhap.ui_queries import MAX_UPLOAD_BYTES, UploadError, upload_correction

    _same_origin(request)
    if not _can_act(user):
        raise HTTPException(403, "Tài khoản này chỉ được xem, không được gửi tệp sửa.")
    data = await file.read(MAX_UPLOAD_BYTES + 1)
    try:
        key = upload_correction(_services(), _source_ids(), source_id, file.filename or "", data,
                                uploaded_by=user.get_name())
    except UploadError as exc:
        return RedirectResponse(f"{URL_PREFIX}/quarantine?source_id={quote(source_id)}&error={quote(str(exc))}",
                                status_code=303)
    log.info("correction file for %s uploaded to %s by %s", source_id, key, user.get_name())
    msg = f"Đã nhận tệp {key}; lần chạy tới của {source_id} sẽ áp dụng các giá trị sửa."
    return RedirectResponse(f"{URL_PREFIX}/quarantine?source_id={quote(source_id)}&message={quote(msg)}",
                            status_code=303)


@app.get("/review", response_class=HTMLResponse)
def review_page(request: Request, user: User, message: str | None = None, error: str | None = None) -> HTMLResponse:
    from sapnhap.ui_queries import recent_decisions, review_groups

    dsn = _services().platform_dsn
    return _render(request, "review", user, groups=review_groups(dsn), decisions=recent_decisions(dsn),
                   message=message, error=error)


@app.post("/review/decide")
def review_decide(
    request: Request, group_id: FormText, new_commune_code: FormText, user: User,
) -> RedirectResponse:
    from sapnhap.ui_queries import decide_group

    _same_origin(request)
    if not _can_act(user):
        raise HTTPException(403, "Tài khoản này chỉ được xem, không được quyết định.")
    try:
        n = decide_group(_services().platform_dsn, group_id, new_commune_code, decided_by=user.get_name())
    except (KeyError, ValueError) as exc:
        err = "Nhóm này đã được quyết định hoặc không còn." if isinstance(exc, KeyError) else \
            f"Xã/phường mới {new_commune_code} không phải là nơi nhận của xã cũ này."
        return RedirectResponse(f"{URL_PREFIX}/review?error={quote(err)}", status_code=303)
    log.info("review group %s: %d records -> %s, decided by %s", group_id, n, new_commune_code, user.get_name())
    msg = f"Đã ghi quyết định cho {n} bản ghi (người quyết định: {user.get_name()}); áp dụng ở lần chạy tới."
    return RedirectResponse(f"{URL_PREFIX}/review?message={quote(msg)}", status_code=303)


def _can_trigger(user) -> bool:  # noqa: ANN001
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    from sapnhap.ui_queries import NIGHTLY_DAG_ID

    return get_auth_manager().is_authorized_dag(method="POST", access_entity=DagAccessEntity.RUN,
                                                details=DagDetails(id=NIGHTLY_DAG_ID), user=user)


def _runs_one_source() -> bool:
    """Whether the deployed nightly DAG takes the ``sources`` param (else a run would sync every source)."""
    from airflow.models.serialized_dag import SerializedDagModel

    from sapnhap.ui_queries import NIGHTLY_DAG_ID

    dag = SerializedDagModel.get_dag(NIGHTLY_DAG_ID)
    return dag is not None and "sources" in dag.params


@app.post("/run-source")
def run_source(request: Request, user: User, source_id: FormText, back: Annotated[str, Form()] = "tonight",
               ) -> RedirectResponse:
    """Run the nightly DAG now for one source (its ``sources`` param): applies decisions and corrections at once."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.exceptions import AirflowException
    from airflow.utils.types import DagRunTriggeredByType

    from sapnhap.ui_queries import NIGHTLY_DAG_ID

    _same_origin(request)
    page = back if back in {slug for slug, _ in PAGES} else "tonight"
    if not _can_trigger(user):
        raise HTTPException(403, "Tài khoản này không được chạy DAG.")
    if source_id not in _source_ids():
        raise HTTPException(404, f"Không có hệ thống nguồn '{source_id}'.")
    if not _runs_one_source():
        err = (f"DAG {NIGHTLY_DAG_ID} đang chạy chưa có tham số 'sources' (chưa chọn được một nguồn): "
               "hãy chờ lần chạy đêm nay.")
        return RedirectResponse(f"{URL_PREFIX}/{page}?error={quote(err)}", status_code=303)
    try:
        run = trigger_dag(NIGHTLY_DAG_ID, triggered_by=DagRunTriggeredByType.UI, triggering_user_name=user.get_name(),
                          conf={"sources": [source_id]}, note=f"Sáp nhập: chạy ngay {source_id} ({user.get_name()})")
    except AirflowException as exc:
        log.warning("could not trigger %s for %s: %s", NIGHTLY_DAG_ID, source_id, exc)
        err = f"Chưa chạy được: DAG {NIGHTLY_DAG_ID} chưa được nạp vào Airflow."
        return RedirectResponse(f"{URL_PREFIX}/{page}?error={quote(err)}", status_code=303)
    log.info("%s triggered %s for %s: %s", user.get_name(), NIGHTLY_DAG_ID, source_id, run.run_id if run else None)
    msg = f"Đã yêu cầu chạy {NIGHTLY_DAG_ID} cho {source_id} (lần chạy {run.run_id if run else ''})."
    return RedirectResponse(f"{URL_PREFIX}/{page}?message={quote(msg)}", status_code=303)


@app.get("/lookup", response_class=HTMLResponse)
def lookup_page(request: Request, user: User, q: str | None = None,
                as_of: Annotated[dt.date | None, Query()] = None) -> HTMLResponse:
    from sapnhap.ui_queries import lookup_units

    as_of = as_of or dt.datetime.now(LOCAL_TZ).date()
    result = lookup_units(_services().platform_dsn, q, as_of) if q and q.strip() else None
    return _render(request, "lookup", user, q=q or "", as_of=as_of, result=result)


@app.get("/docs", response_class=HTMLResponse)
def docs_page(request: Request, user: User, run_id: str | None = None) -> HTMLResponse:
    from sapnhap.ui_queries import tonight

    data = tonight(_services().platform_dsn, run_id)
    return _render(request, "docs", user, data=data)


@app.get("/bucket/{key:path}")
def bucket_object(key: str, user: User) -> Response:  # noqa: ARG001
    """Data Docs pages, batch manifests and handover records, read from the bucket."""
    from sapnhap import storage
    from sapnhap.ui_queries import DATA_DOCS_DIR, bucket_key_allowed, offline_data_docs

    if not bucket_key_allowed(key):
        raise HTTPException(404)
    try:
        data = storage.get_bytes(_services().s3, key)
    except Exception as exc:  # noqa: BLE001 - a missing object is a 404 for the browser
        raise HTTPException(404, "Không có tệp này trong kho sao lưu.") from exc
    media = mimetypes.guess_type(key)[0] or "application/octet-stream"
    if media == "text/html" and f"/{DATA_DOCS_DIR}" in key:
        data = offline_data_docs(data.decode("utf-8"), f"{URL_PREFIX}/static/gx").encode("utf-8")
    if media.startswith("text/") or media == "application/json":
        media += "; charset=utf-8"
    return Response(data, media_type=media)


class SapnhapPlugin(AirflowPlugin):
    """The data team's pages: last night, quarantine, review queue, lookup, Data Docs."""

    name = "sapnhap"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Sáp nhập"}]
    # "Sáp nhập" (last night) is a button of its own in the UI's navigation; every page is also
    # under Plugins > Sáp nhập. Hrefs are relative to the UI's base URL (no leading slash).
    external_views = [
        {"name": "Sáp nhập", "href": f"{URL_PREFIX.lstrip('/')}/tonight", "url_route": "sapnhap",
         "destination": "nav", "nav_top_level": True},
        *[{"name": title, "href": f"{URL_PREFIX.lstrip('/')}/{page}", "url_route": f"sapnhap-{page}",
           "destination": "nav", "category": "Sáp nhập"} for page, title in PAGES],
    ]
