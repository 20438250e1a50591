"""Portal pages (trang, bài viết của cổng thông tin cũ, 687 appendix II.1): the schema and the checks of its batches.

A page or article of an old commune/district portal, keyed by its URL. The helper column the
date check reads is derived by :mod:`sapnhap.portal`.

Adding a dataset is adding a file like this one and registering it in ``sapnhap/datasets/__init__.py``
(see docs/architecture.md, "A dataset in one file").
"""

from __future__ import annotations

from sapnhap.datasets.schema import Column, Dataset

PAGE_KINDS = ("page", "article")
PAGE_STATUSES = ("published", "hidden")
URL_REGEX = (r"^https?://[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
             r"(?::\d{1,5})?(?:/[^\s#]*)?$")

PORTAL_PAGES = Dataset(
    name="portal_pages",
    title_vi="Trang, bài viết của cổng thông tin điện tử cũ",
    natural_key=("url",),
    record_date="published_date",
    # A split commune's pages go to the province portal's archive (sapnhap.portal): no decision per page.
    split_review=False,
    statuses=PAGE_STATUSES,
    columns=(
        Column("url", "text", required=True, description="Địa chỉ (URL) của trang ở cổng cũ"),
        Column("title", "text", required=True, description="Tiêu đề"),
        Column("kind", "text", required=True, description="Loại: page (trang) / article (bài viết)"),
        Column("old_commune_code", "code5", required=True, description="Mã xã cũ của cổng"),
        Column("published_date", "date", required=True, description="Ngày đăng"),
        Column("summary", "text", description="Tóm tắt"),
        Column("status", "text", required=True, description="Trạng thái: published / hidden"),
        Column("updated_at", "timestamp", description="Cập nhật lần cuối ở cổng cũ"),
    ),
)

DATASET = PORTAL_PAGES


def transformed_checks(generic: list[dict]) -> list[dict]:
    """The transformed suite of portal pages: the generic checks without the split-commune review
    (not a defect here), then its own: a well-formed URL, a kind, a status, a plausible date."""
    from sapnhap.portal import H_PUBLISHED_DATE_PLAUSIBLE
    from sapnhap.quality.checks import enum as _enum
    from sapnhap.quality.checks import expectation as _exp

    return [
        *[e for e in generic if e["meta"]["check"] != "mapping_status.review"],
        _exp(
            "expect_column_values_to_match_regex",
            {"column": "url", "regex": URL_REGEX},
            check="format.url",
            severity="block",
            notes="The redirect map sends an old URL to its new page; a URL that is not http(s)://host/path can never be requested.",
            reason_vi="Địa chỉ trang (URL) không hợp lệ.",
            fix_vi="Sửa địa chỉ trang trong danh sách trang của cổng cũ (dạng https://ten-mien/duong-dan).",
            column="url",
        ),
        _enum("kind", PAGE_KINDS, notes="Pages and articles are archived the same way but listed apart on the new portal.",
              reason_vi="Loại trang không thuộc danh mục chuẩn (trang/bài viết)."),
        _enum("status", PAGE_STATUSES, notes="Hidden pages keep their redirect but are not listed on the new portal.",
              reason_vi="Trạng thái trang không thuộc danh mục chuẩn."),
        _exp(
            "expect_column_values_to_be_in_set",
            {"column": H_PUBLISHED_DATE_PLAUSIBLE, "value_set": [True]},
            check="plausible.published_date",
            severity="block",
            notes=("Vietnam joined the internet on 1997-11-19: no portal page is older, none is published in the "
                   "future, and none after its own last update."),
            reason_vi="Ngày đăng không hợp lý (trước 19/11/1997, sau ngày hiện tại hoặc sau ngày cập nhật).",
            fix_vi="Sửa ngày đăng của trang trên cổng cũ.",
            column="published_date",
        ),
    ]
