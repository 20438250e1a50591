"""Trying a new source is one command: the data team's own YAML and export folder run beside the demo's.

``make demo ARGS="--sources-dir DIR"`` = :func:`sapnhap_dev.runner.use_sources_dirs` + the nightly; this
runs the same set-up, then the nightly's stages on that source, an export spanning old 08 and 02.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg
import pytest
import yaml

from sapnhap.services import Services
from sapnhap.sources import DEFAULT_SOURCES_DIR, get_source
from sapnhap.sync.backup import backup_stage
from sapnhap.sync.extract import extract_stage
from sapnhap.sync.load import load_stage
from sapnhap.sync.prepare import prepare_run
from sapnhap.sync.transform import transform_stage
from sapnhap.sync.validate import validate_stage

pytestmark = pytest.mark.integration

SOURCE = {
    "id": "tq_hg_xa_thu",
    "name": "Dữ liệu xuất thử (xã của Tuyên Quang cũ và Hà Giang cũ)",
    "kind": "files",
    "conn_id": "legacy_tq_hg_xa_thu",
    "connection": {"path": "exports"},
    "old_units": {"province": ["08", "02"], "districts": ["075", "034"]},
    "owners": ["du-lieu@tuyenquang.gov.vn.example"],
    "datasets": {
        "residents": {
            "file_pattern": "nhan_khau_*.csv",
            "primary_key": ["Mã NK"],
            "date_format": "%d/%m/%Y",
            "columns": {"citizen_id": "Số CCCD", "full_name": "Họ và tên", "birth_date": "Ngày sinh",
                        "gender": "Giới tính", "old_commune_code": "Mã xã", "address_detail": "Thôn/Tổ"},
        }
    },
}

EXPORT = """Mã NK,Số CCCD,Họ và tên,Ngày sinh,Giới tính,Mã xã,Thôn/Tổ
NK1,008090000101,Nguyễn Văn An,01/02/1990,nam,02431,Thôn 1
NK2,002185000202,Lò Thị Bình,03/04/1985,nu,01153,Thôn Nà Ác
"""


@pytest.fixture
def own_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "nguon_cua_toi"
    (folder / "exports").mkdir(parents=True)
    (folder / f"{SOURCE['id']}.yaml").write_text(yaml.safe_dump(SOURCE, allow_unicode=True), encoding="utf-8")
    (folder / "exports" / "nhan_khau_2025-12-01.csv").write_text(EXPORT, encoding="utf-8")
    broken = {**SOURCE, "id": "tq_go_nham", "kind": "filez"}
    (folder / "tq_go_nham.yaml").write_text(yaml.safe_dump(broken, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("SAPNHAP_SOURCES_DIR", "")  # restored after the test
    monkeypatch.delenv("AIRFLOW_CONN_LEGACY_TQ_HG_XA_THU", raising=False)
    return folder


def test_own_sources_run_beside_the_demo_with_the_connection_declared_in_the_yaml(
    own_sources: Path, platform_dsn: str, s3_config
) -> None:
    from sapnhap_dev.runner import use_sources_dirs

    registry, connections = use_sources_dirs([own_sources])
    assert os.environ["SAPNHAP_SOURCES_DIR"].split(os.pathsep) == [str(DEFAULT_SOURCES_DIR), str(own_sources)]
    ids = {s.id for s in registry.sources}
    assert {"tq_hg_xa_thu", "tq_yenson_xa_exports", "hg_bacquang_sqlite"} <= ids  # beside the demo's
    assert [b.group_id for b in registry.invalid] == ["tq_go_nham"]  # a typo disables that file only
    assert list(connections) == ["legacy_tq_hg_xa_thu"]  # the demo's own come from its world
    assert json.loads(connections["legacy_tq_hg_xa_thu"]) == {
        "conn_type": "fs", "extra": {"path": str(own_sources / "exports")}}

    source = get_source("tq_hg_xa_thu")
    assert source.old_units.provinces == ["08", "02"]
    services = Services(platform_dsn=platform_dsn, s3=s3_config)
    prepare_run(services, "r1")
    batch = extract_stage(services, source, "residents", connections[source.conn_id], run_id="r1", run_date="2025-12-01")
    batch = backup_stage(services, source, validate_stage(services, source, transform_stage(services, source, batch)))
    result = load_stage(services, source, batch)
    assert result["status"] == "loaded" and result["extracted"] == 2
    with psycopg.connect(platform_dsn) as conn:
        rows = conn.execute(
            "SELECT old_province_code, new_province_code FROM core.residents WHERE source_id = %s ORDER BY 1",
            (source.id,)).fetchall()
    assert rows == [("02", "08"), ("08", "08")]  # both old provinces, one new Tuyên Quang
