"""Portal content of the old units merged under the new units, and the redirect map (687 appendix II.1).

Every page and article of an old commune/district portal moves to the portal of the new unit it
belongs to, under an archive path that keeps its old unit and its old path apart, so two old
portals never collide:

    https://<new commune slug>.<province domain>/luu-tru/<old commune code>/<old path>

A split commune's content cannot belong to one of its new communes by its code alone: it goes to
the province portal's archive (one live URL, never guessed among communes). The redirect map
(old URL -> new URL, valid for a declared period) is exported as an nginx ``map`` file and a CSV;
:func:`check_redirects` proves every old URL redirects to exactly one live URL, in one hop.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd

from sapnhap.accounts.directory import load_policy
from sapnhap.accounts.units import commune_slugs

PAGE_COLUMNS = ["old_url", "title", "old_commune_code", "published_at"]
REDIRECT_COLUMNS = ["old_url", "new_url", "old_commune_code", "new_commune_code", "new_province_code",
                    "valid_from", "valid_to"]
ARCHIVE = "luu-tru"


class PortalError(ValueError):
    """Content or a redirect map that cannot be published; the message names the URL and field."""


# Vietnam joined the internet on 1997-11-19: no portal page is older.
EARLIEST_PAGE = pd.Timestamp("1997-11-19")
H_PUBLISHED_DATE_PLAUSIBLE = "_q_published_date_plausible"


def page_helper_columns(df: pd.DataFrame, needed: set[str], today: date | None = None) -> dict[str, pd.Series]:
    """The quality stage's helper columns of portal pages (``sapnhap.quality.helpers``).

    ``_q_published_date_plausible``: published on or after :data:`EARLIEST_PAGE`, not after
    tomorrow, not after the page's own last update; empty when there is no date (its own check).
    """
    out: dict[str, pd.Series] = {}
    if H_PUBLISHED_DATE_PLAUSIBLE in needed and "published_date" in df.columns:
        published = pd.to_datetime(df["published_date"], errors="coerce")
        latest = pd.Timestamp(today or date.today()) + timedelta(days=1)
        ok = (published >= EARLIEST_PAGE) & (published <= latest)
        if "updated_at" in df.columns:
            updated = pd.to_datetime(df["updated_at"], errors="coerce").dt.normalize()
            ok &= updated.isna() | (published <= updated)
        out[H_PUBLISHED_DATE_PLAUSIBLE] = pd.Series(pd.array(ok.to_numpy(dtype=bool), dtype="boolean"),
                                                    index=df.index).where(published.notna(), pd.NA)
    return out


def normalize_url(url: str) -> str:
    """Scheme and host in lower case, no default port, no fragment, no trailing slash on the path."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PortalError(f"old_url {url!r}: not an http(s) URL")
    path = parts.path.rstrip("/") or ""
    query = f"?{parts.query}" if parts.query else ""
    port = f":{parts.port}" if parts.port and parts.port not in (80, 443) else ""
    return f"{parts.scheme.lower()}://{parts.hostname.lower()}{port}{path}{query}"


def merge_content(pages: pd.DataFrame, ref, policy: dict | None = None) -> pd.DataFrame:  # noqa: ANN001 - Reference
    """The old portals' pages under their new unit, each with its new URL.

    ``pages`` columns: old_url, title, old_commune_code, published_at. Returns them with
    new_province_code, new_commune_code (None for a split commune's pages: province archive) and new_url.
    """
    missing = [c for c in PAGE_COLUMNS if c not in pages.columns]
    if missing:
        raise PortalError(f"portal pages: missing columns {missing}")
    policy = policy or load_policy()
    out = pages.copy()
    out["old_url"] = out["old_url"].map(normalize_url)
    targets = ref.old_commune_targets.set_index("old_commune_code")
    known = out["old_commune_code"].isin(targets.index)
    if not known.all():
        bad = out.loc[~known].iloc[0]
        raise PortalError(f"{bad['old_url']}: old_commune_code {bad['old_commune_code']!r} is not an old commune")
    t = targets.loc[out["old_commune_code"]]
    out["new_province_code"] = t["new_province_code"].to_numpy()
    out["new_commune_code"] = t["new_commune_code"].where(~t["is_split"].astype(bool)).to_numpy()
    domains = {k: v["domain"] for k, v in policy["provinces"].items()}
    domain = out["new_province_code"].map(domains)
    if domain.isna().any():
        raise PortalError(f"no portal domain for new provinces {sorted(out.loc[domain.isna(), 'new_province_code'].unique())}")
    slug = out["new_commune_code"].map(commune_slugs(ref).set_index("code")["slug"])
    host = ("https://" + slug + "." + domain).where(slug.notna(), "https://" + domain)
    old_path = out["old_url"].map(lambda u: urlsplit(u).path.strip("/") + (f"?{urlsplit(u).query}" if urlsplit(u).query else ""))
    out["new_url"] = host + f"/{ARCHIVE}/" + out["old_commune_code"] + "/" + old_path
    out["new_url"] = out["new_url"].str.rstrip("/")
    out["new_commune_code"] = out["new_commune_code"].astype(object).where(out["new_commune_code"].notna(), None)
    return out.reset_index(drop=True)


def redirect_map(merged: pd.DataFrame, *, valid_from: date, days: int) -> pd.DataFrame:
    """One redirect per old URL; an old URL claimed by two different pages is an error, not a choice."""
    pairs = merged.drop_duplicates(["old_url", "new_url"])
    twice = pairs[pairs.duplicated("old_url", keep=False)]
    if len(twice):
        raise PortalError(f"{twice['old_url'].iloc[0]}: listed with {len(twice)} different pages")
    out = pairs[["old_url", "new_url", "old_commune_code", "new_commune_code", "new_province_code"]].copy()
    out["valid_from"] = valid_from
    out["valid_to"] = valid_from + timedelta(days=days)
    return out.sort_values("old_url", ignore_index=True)[REDIRECT_COLUMNS]


def check_redirects(redirects: pd.DataFrame, live_urls: set[str]) -> list[str]:
    """Problems of a redirect map: an old URL mapped twice, a target that is not live, a chain or a loop."""
    problems = []
    counts = redirects["old_url"].value_counts()
    problems += [f"{u}: redirects {n} ways" for u, n in counts[counts > 1].items()]
    olds = set(redirects["old_url"])
    for row in redirects.itertuples(index=False):
        if row.new_url == row.old_url:
            problems.append(f"{row.old_url}: redirects to itself")
        elif row.new_url in olds:
            problems.append(f"{row.old_url}: redirects to {row.new_url}, itself an old URL (a chain)")
        elif row.new_url not in live_urls:
            problems.append(f"{row.old_url}: target {row.new_url} is not a live URL")
    return problems


def nginx_map(redirects: pd.DataFrame, *, variable: str = "$sapnhap_redirect") -> str:
    """An nginx ``map`` block: include it in ``http {}`` and ``if ({variable}) {{ return 301 {variable}; }}``."""
    def q(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    first, last = redirects["valid_from"].min(), redirects["valid_to"].max()
    lines = [f"# sapnhap: old portal URLs -> new portal URLs, valid {first} .. {last}",
             f"map $scheme://$host$request_uri {variable} {{", "    default \"\";"]
    lines += [f"    {q(r.old_url)} {q(r.new_url)};" for r in redirects.itertuples(index=False)]
    lines.append("}")
    return "\n".join(lines) + "\n"


def export_redirects(redirects: pd.DataFrame, folder: Path) -> tuple[Path, Path]:
    """Write the redirect map as ``redirects.map`` (nginx) and ``redirects.csv``; returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    map_path, csv_path = folder / "redirects.map", folder / "redirects.csv"
    map_path.write_text(nginx_map(redirects), encoding="utf-8")
    redirects.to_csv(csv_path, index=False)
    return map_path, csv_path


# The declared period of the redirects: from the merger, for a year (as the mail forwarding).
REDIRECTS_VALID_FROM = date(2025, 7, 1)
REDIRECTS_DAYS = 365
EXPORT_PREFIX = "exports/portal"


def read_pages(dsn: str) -> pd.DataFrame:
    """The platform's portal pages (``core.portal_pages``) as :func:`merge_content` reads them.

    Every page, hidden ones included (an old link to it still has to land somewhere), and pages
    their portal no longer lists: an old URL keeps its redirect for the declared period.
    """
    from sapnhap import db

    with db.connect(dsn, "report") as conn:
        cur = conn.execute(
            """SELECT url AS old_url, title, old_commune_code, published_date AS published_at, kind, status
               FROM core.portal_pages ORDER BY url""")
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description], dtype=object)


def publish_redirects(services, *, as_of: date, valid_from: date = REDIRECTS_VALID_FROM,  # noqa: ANN001 - Services
                      days: int = REDIRECTS_DAYS) -> dict:
    """Build the redirect map from the platform's pages, prove it, store ``redirects.map`` (nginx)
    and ``redirects.csv`` under ``exports/portal/<as_of>/``; raise :class:`PortalError` when an
    old URL does not reach exactly one live URL in one hop."""
    import tempfile

    from sapnhap import storage
    from sapnhap.reference import load_reference

    pages = read_pages(services.platform_dsn)
    merged = merge_content(pages, load_reference())
    redirects = redirect_map(merged, valid_from=valid_from, days=days)
    problems = check_redirects(redirects, set(merged["new_url"]))
    if problems:
        raise PortalError(f"{len(problems)} redirects are wrong, e.g. {problems[0]}")
    prefix = f"{EXPORT_PREFIX}/{as_of.isoformat()}/"
    storage.ensure_bucket(services.s3)
    objects = {}
    with tempfile.TemporaryDirectory(prefix="sapnhap-portal-") as tmp:
        for path in export_redirects(redirects, Path(tmp)):
            kind = "text/csv" if path.suffix == ".csv" else "text/plain"
            obj = storage.put_file(services.s3, prefix + path.name, path, f"{kind}; charset=utf-8")
            storage.verify_object(services.s3, obj.as_dict())
            objects[path.name] = obj.as_dict()
    return {"pages": int(len(pages)), "old_urls": int(len(redirects)),
            "to_province_archive": int(redirects["new_commune_code"].isna().sum()), "objects": objects}
