"""The source registry: every demo file validates; a broken file is a clear error naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sapnhap.sources import SourceConfigError, load_sources, parse_source

GOOD = {
    "id": "hg_test_motcua",
    "name": "Hệ thống thử",
    "kind": "postgres",
    "conn_id": "legacy_hg_test_motcua",
    "old_units": {"province": "02"},
    "owners": ["it@hagiang.gov.vn.example"],
    "datasets": {
        "dossiers": {
            "table": "ho_so",
            "primary_key": ["id"],
            "cursor": "ngay_cap_nhat",
            "columns": {"dossier_code": "ma_ho_so", "received_date": "ngay_nhan", "status": "trang_thai"},
        }
    },
}


def _write(tmp_path: Path, body: dict, name: str | None = None) -> Path:
    path = tmp_path / f"{name or body['id']}.yaml"
    path.write_text(yaml.safe_dump(body, allow_unicode=True), encoding="utf-8")
    return path


def test_the_demo_registry_validates_and_doubles_as_the_inventory() -> None:
    sources = load_sources()
    assert len(sources) >= 4
    assert {s.kind for s in sources} >= {"postgres", "sqlite", "files"}
    assert all(s.owners and s.name and s.old_units.province in {"02", "08"} for s in sources)
    assert len({s.pool for s in sources}) == len({s.conn_id for s in sources})


def test_a_good_file_parses(tmp_path: Path) -> None:
    source = parse_source(_write(tmp_path, GOOD))
    assert source.datasets["dossiers"].cursor == "ngay_cap_nhat"
    assert source.pool == "pool_legacy_hg_test_motcua"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"datasets": {"dossierz": GOOD["datasets"]["dossiers"]}}, "unknown dataset 'dossierz'"),
        ({"datasets": {"dossiers": {**GOOD["datasets"]["dossiers"], "columns": {"dossier_kode": "x"}}}},
         "unknown canonical columns"),
        ({"datasets": {"dossiers": {**GOOD["datasets"]["dossiers"], "columns": {"status": "trang_thai"}}}},
         "natural key columns not mapped: \\['dossier_code'\\]"),
        ({"owners": ["not-an-address"]}, "not an email address"),
        ({"owners": []}, "at least one owner"),
        ({"kind": "oracle"}, "kind"),
        ({"old_units": {"province": "2"}}, "old province code has 2 digits"),
        ({"quality": {"warn_ratio": 0.6, "block_ratio": 0.5}}, "warn_ratio must not exceed block_ratio"),
        ({"datasets": {"dossiers": {**GOOD["datasets"]["dossiers"], "query": "SELECT 1"}}}, "exactly one of table"),
    ],
)
def test_a_broken_file_is_a_clear_error(tmp_path: Path, change: dict, message: str) -> None:
    path = _write(tmp_path, {**GOOD, **change})
    with pytest.raises(SourceConfigError, match=message) as err:
        parse_source(path)
    assert str(path) in str(err.value)


def test_the_file_name_is_the_source_id(tmp_path: Path) -> None:
    with pytest.raises(SourceConfigError, match="file name must be the source id"):
        parse_source(_write(tmp_path, GOOD, name="other_name"))


def test_not_yaml_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("id: [unclosed", encoding="utf-8")
    with pytest.raises(SourceConfigError, match="not valid YAML"):
        parse_source(path)
