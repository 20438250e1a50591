"""Portal content merged under the new units and its redirect map: every old URL -> exactly one live URL."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from sapnhap.portal import (
    PortalError,
    check_redirects,
    export_redirects,
    merge_content,
    nginx_map,
    normalize_url,
    redirect_map,
)
from sapnhap.reference import load_reference

REF = load_reference("nso-2025.07")
# Old Hà Giang (02) communes now in Tuyên Quang (08): 00691, 00692, 00697 merge into new 00691;
# 00688 is split (00691 | 00694).
PAGES = pd.DataFrame(
    [
        ("http://xa00691.hagiang.gov.vn/tin-tuc/le-hoi-2024/", "Lễ hội 2024", "00691", "2024-03-01"),
        ("http://xa00692.hagiang.gov.vn/tin-tuc/le-hoi-2024", "Lễ hội 2024", "00692", "2024-03-02"),
        ("HTTP://XA00697.HAGIANG.GOV.VN:80/thu-tuc?id=7", "Thủ tục", "00697", "2023-05-01"),
        ("http://xa00688.hagiang.gov.vn/gioi-thieu", "Giới thiệu", "00688", "2022-01-01"),
        ("http://xa00691.hagiang.gov.vn/tin-tuc/le-hoi-2024", "Lễ hội 2024 (bản sao)", "00691", "2024-03-01"),
    ],
    columns=["old_url", "title", "old_commune_code", "published_at"],
)


def _merged() -> pd.DataFrame:
    return merge_content(PAGES, REF)


def test_content_moves_under_the_new_commune_without_collisions():
    merged = _merged()
    same_path = merged[merged["old_url"].str.endswith("/tin-tuc/le-hoi-2024")]
    # Two old communes had the same path: under the new commune they stay apart by old commune code.
    assert same_path["new_url"].nunique() == 2
    assert set(same_path["new_commune_code"]) == {"00691"}
    assert all(u.startswith("https://") and "/luu-tru/" in u for u in merged["new_url"])


def test_a_split_communes_pages_go_to_the_province_archive_not_a_guessed_commune():
    split = _merged().set_index("old_commune_code").loc["00688"]
    assert split["new_commune_code"] is None
    assert split["new_url"] == "https://tuyenquang.gov.vn/luu-tru/00688/gioi-thieu"


def test_every_old_url_redirects_to_exactly_one_live_url_in_one_hop():
    merged = _merged()
    redirects = redirect_map(merged, valid_from=date(2025, 12, 1), days=365)
    assert redirects["old_url"].is_unique and len(redirects) == 4  # the duplicate listing collapses
    assert check_redirects(redirects, live_urls=set(merged["new_url"])) == []
    assert (redirects["valid_to"] == date(2026, 12, 1)).all()
    # The check can fail: a target that is not live, and a chain.
    broken = redirects.copy()
    broken.loc[0, "new_url"] = broken.loc[1, "old_url"]
    problems = check_redirects(broken, live_urls=set(merged["new_url"]))
    assert len(problems) == 1 and "a chain" in problems[0]
    assert check_redirects(redirects, live_urls=set()) and all("not a live URL" in p for p in
                                                                 check_redirects(redirects, live_urls=set()))


def test_an_old_url_claimed_by_two_different_pages_is_an_error():
    pages = pd.concat([PAGES, PAGES.iloc[[0]].assign(old_commune_code="00692")], ignore_index=True)
    with pytest.raises(PortalError, match="listed with 2 different pages"):
        redirect_map(merge_content(pages, REF), valid_from=date(2025, 12, 1), days=365)


def test_nginx_map_and_csv_are_importable(tmp_path):
    redirects = redirect_map(_merged(), valid_from=date(2025, 12, 1), days=365)
    map_path, csv_path = export_redirects(redirects, tmp_path)
    back = pd.read_csv(csv_path, dtype=str)
    assert back["old_url"].tolist() == redirects["old_url"].tolist()
    text = map_path.read_text(encoding="utf-8")
    assert text == nginx_map(redirects)
    assert text.startswith("# sapnhap: old portal URLs -> new portal URLs, valid 2025-12-01 .. 2026-12-01\n")
    assert text.count(";") == len(redirects) + 1 and text.rstrip().endswith("}")
    assert '"http://xa00697.hagiang.gov.vn/thu-tuc?id=7" "https://' in text


def test_urls_are_normalized_and_bad_ones_named():
    assert normalize_url("HTTPS://Example.VN:443/a/") == "https://example.vn/a"
    with pytest.raises(PortalError, match="'ftp://x': not an http"):
        normalize_url("ftp://x")
    with pytest.raises(PortalError, match="old_commune_code '99999'"):
        merge_content(PAGES.assign(old_commune_code="99999"), REF)
