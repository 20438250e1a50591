"""Pure parts of the Sáp nhập pages' queries: what the bucket proxy serves, how review groups form."""

from __future__ import annotations

import pytest

from sapnhap.ui_queries import DatasetOutcome, _detail_of, bucket_key_allowed, group_id_of

BATCH = "backups/src/dossiers/2026-11-20/run_1/"


@pytest.mark.parametrize(
    ("key", "allowed"),
    [
        (BATCH + "data_docs/index.html", True),
        (BATCH + "data_docs/static/styles/data_docs_default_styles.css", True),
        (BATCH + "manifest.json", True),
        ("handover/run_1/034.html", True),
        (BATCH + "raw.parquet", False),  # personal data: never through the UI
        (BATCH + "quarantine.parquet", False),
        ("landing/corrections/src/file.xlsx", False),
        ("handover/run_1/../../landing/x.html", False),
        ("/etc/passwd", False),
        ("", False),
    ],
)
def test_the_bucket_proxy_serves_only_docs_manifests_and_handover(key: str, allowed: bool) -> None:
    assert bucket_key_allowed(key) is allowed


def test_review_groups_are_per_old_commune_and_village_whatever_the_accents() -> None:
    assert _detail_of("Thôn Nà Lừa, Xã Việt Lâm, Huyện Vị Xuyên") == "Thôn Nà Lừa"
    assert _detail_of(None) is None
    assert group_id_of("00967", "Thôn Nà Lừa") == group_id_of("00967", "thon na lua")
    assert group_id_of("00967", "Thôn Nà Lừa") != group_id_of("00967", "Thôn Nà Lừa 2")
    assert group_id_of("00967", "Thôn Nà Lừa") != group_id_of("00688", "Thôn Nà Lừa")


def test_data_docs_sit_next_to_the_manifest() -> None:
    outcome = DatasetOutcome("src", "dossiers", "loaded", 1, 1, 0, 0, 0, 0, 0, 0, True, "pass",
                             BATCH + "manifest.json", None)
    assert outcome.data_docs_key == BATCH + "data_docs/index.html"
    assert DatasetOutcome("src", "dossiers", "extracted", 1, 0, 0, 0, 0, 0, 0, 0, None, None, None,
                          None).data_docs_key is None
    # A clean batch has no Data Docs (only a batch with a failing check gets them): no link to a missing page.
    assert DatasetOutcome("src", "dossiers", "loaded", 1, 1, 0, 0, 0, 0, 0, 0, True, "pass",
                          BATCH + "manifest.json", None, has_data_docs=False).data_docs_key is None


def test_every_data_docs_asset_is_bundled_and_rewritten() -> None:
    from sapnhap.ui_queries import DATA_DOCS_ASSETS, offline_data_docs
    from sapnhap_dev.embedded import PROJECT_ROOT

    bundle = PROJECT_ROOT / "plugins" / "sapnhap_ui_static" / "gx"
    for local in DATA_DOCS_ASSETS.values():
        assert (bundle / local).stat().st_size > 100, local
    page = "".join(f'<link href="{cdn}"><script src="{cdn}"></script>' for cdn in DATA_DOCS_ASSETS)
    offline = offline_data_docs(page + '<script src="https://cdn.jsdelivr.net/npm/vega@5"></script>', "/sapnhap/static/gx/")
    assert not any(cdn in offline for cdn in DATA_DOCS_ASSETS)
    assert offline.count('"/sapnhap/static/gx/') == 2 * len(DATA_DOCS_ASSETS)
