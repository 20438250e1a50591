"""Permission review reports per new unit (R12), emailed to the unit owners in Vietnamese.

One email per new unit (a new commune's office, or the provincial Department of Home Affairs
for former district staff and officials whose commune is undecided): accounts orphaned,
accounts whose reach widened, duplicate accounts merged, dormant accounts, uncertain person
matches. Personal data is masked (:mod:`sapnhap.quality.masking`): initials for names,
3 + 3 digits never shown (no citizen ID at all), user names and addresses shortened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from email.message import EmailMessage

import pandas as pd

from sapnhap.accounts.directory import load_policy
from sapnhap.accounts.units import commune_slugs, province_names
from sapnhap.quality.masking import mask_name
from sapnhap.reports import outbox
from sapnhap.reports.mail import SUBJECT_PREFIX, new_message, render_template
from sapnhap.reports.model import mask_email, scrub_text
from sapnhap.services import Services

log = logging.getLogger(__name__)

WIDENING_VI = {"province": "phạm vi mở rộng ra toàn tỉnh", "merged_communes": "xã mới gồm nhiều xã cũ"}
OUTCOME_VI = {"mapped": "đã chuyển", "merged": "đã gộp", "orphaned": "mồ côi"}


@dataclass
class UnitReview:
    """What one new unit's owner reviews (every text already masked)."""

    unit: str  # 'c:<new commune>' or 'p:<new province>'
    unit_name: str
    owner: str
    orphaned: list[dict] = field(default_factory=list)
    widened: list[dict] = field(default_factory=list)
    merged: list[dict] = field(default_factory=list)
    dormant: list[dict] = field(default_factory=list)
    uncertain: list[dict] = field(default_factory=list)
    counts: dict = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.orphaned or self.widened or self.merged or self.dormant or self.uncertain)


def mask_username(values: pd.Series) -> pd.Series:
    """'annv.00703' -> 'an***': a user name often spells its owner's name."""
    text = values.astype("string")
    return (text.str.slice(0, 2) + "***").astype(object).where(text.notna(), None)


def mask_address(values: pd.Series) -> pd.Series:
    text = values.astype("string")
    return text.map(lambda a: mask_email(a) if isinstance(a, str) else None, na_action="ignore").astype(object)


def unit_owners(units: pd.Series, ref, policy: dict | None = None) -> pd.DataFrame:  # noqa: ANN001 - Reference
    """Owner address and Vietnamese name of each report unit ('c:<code>' / 'p:<code>')."""
    policy = policy or load_policy()
    slugs = commune_slugs(ref).set_index("code")
    provinces = province_names(ref)
    rows = []
    for unit in sorted(set(units.dropna())):  # distinct units: a few hundred per province
        kind, code = unit.split(":", 1)
        if kind == "c":
            province = slugs.loc[code, "province_code"]
            domain = policy["provinces"][province]["domain"]
            owner = policy["commune_owner"].format(slug=slugs.loc[code, "slug"], domain=domain)
            name = f"{slugs.loc[code, 'name']} ({provinces.get(province, province)})"
        else:
            owner = policy["provinces"][code]["province_owner"]
            name = f"{provinces.get(code, code)}: cán bộ cấp huyện cũ và xã chưa xác định"
        rows.append({"unit": unit, "owner": owner, "unit_name": name})
    return pd.DataFrame(rows, columns=["unit", "owner", "unit_name"])


def build_unit_reviews(legacy: pd.DataFrame, assignments: pd.DataFrame, orphans: pd.DataFrame, review: pd.DataFrame,
                       people: pd.DataFrame, ref, policy: dict | None = None) -> list[UnitReview]:  # noqa: ANN001
    """One :class:`UnitReview` per report unit that has something to review (masked, pure)."""
    legacy = legacy.copy()
    legacy["name_masked"] = mask_name(legacy["full_name"]) if "full_name" in legacy else None
    if "full_name" not in legacy:
        names = people.set_index("person_id")["full_name"]
        legacy["name_masked"] = mask_name(legacy["person_id"].map(names))
    legacy["user_masked"] = mask_username(legacy["username"])
    legacy["new_user_masked"] = mask_username(legacy["new_username"])
    units = pd.concat([legacy["report_unit"], people["report_unit"]])
    owners = unit_owners(units, ref, policy).set_index("unit")
    person_unit = people.set_index("person_id")["report_unit"]
    person_name = mask_name(people.set_index("person_id")["full_name"])

    orphan_roles = orphans.groupby(["system_code", "username"])["legacy_role"].agg(
        lambda r: ", ".join(sorted(x for x in r if isinstance(x, str))) or "(không có vai trò)")
    orphan_why = orphans.groupby(["system_code", "username"])["reason_vi"].agg(lambda r: " ".join(sorted(set(r))))
    wide = assignments[assignments["widened"]].groupby(["system_code", "username"]).agg(
        new_roles=("new_role", lambda r: ", ".join(sorted(set(r)))),
        widening=("widening", lambda w: "; ".join(sorted({WIDENING_VI.get(x, x) for x in w if isinstance(x, str)}))),
        old_reach=("old_reach", "max"), new_reach=("new_reach", "sum"),
    )
    reviews = []
    for unit, owner in owners.iterrows():  # one email per unit
        mine = legacy[legacy["report_unit"] == unit]
        r = UnitReview(unit=unit, unit_name=owner["unit_name"], owner=owner["owner"])
        for row in mine[mine["outcome"] == "orphaned"].itertuples():
            key = (row.system_code, row.username)
            r.orphaned.append({"name": row.name_masked, "system": row.system_code, "user": row.user_masked,
                               "roles": orphan_roles.get(key, ""), "reason": orphan_why.get(key, "")})
        for row in mine.itertuples():
            key = (row.system_code, row.username)
            if key in wide.index:
                w = wide.loc[key]
                r.widened.append({"name": row.name_masked, "system": row.system_code, "user": row.user_masked,
                                  "new_roles": w["new_roles"], "why": w["widening"],
                                  "old_reach": int(w["old_reach"]), "new_reach": int(w["new_reach"])})
        for row in mine[mine["outcome"] == "merged"].itertuples():
            r.merged.append({"name": row.name_masked, "system": row.system_code, "user": row.user_masked,
                             "into": row.new_user_masked,
                             "same_system": "có" if row.duplicate_in_system else ""})
        for row in mine[mine["dormant"]].itertuples():
            last = row.last_login
            r.dormant.append({"name": row.name_masked, "system": row.system_code, "user": row.user_masked,
                              "last_login": "chưa từng đăng nhập" if pd.isna(last) else pd.Timestamp(last).strftime("%d/%m/%Y"),
                              "outcome": OUTCOME_VI.get(row.outcome, row.outcome)})
        if len(review):
            touch = review[(review["person_id_a"].map(person_unit) == unit) | (review["person_id_b"].map(person_unit) == unit)]
            for row in touch.itertuples():
                r.uncertain.append({"a": person_name.get(row.person_id_a), "b": person_name.get(row.person_id_b),
                                    "reason": row.reason_vi, "review_id": row.review_id})
        r.counts = {"legacy": len(mine), "orphaned": len(r.orphaned), "widened": len(r.widened),
                    "merged": len(r.merged), "dormant": len(r.dormant), "uncertain": len(r.uncertain)}
        if not r.empty:
            reviews.append(r)
    return reviews


def build_review_email(review: UnitReview, *, from_addr: str, as_of: str, run_id: str) -> EmailMessage:
    """The review email of one unit: HTML + plain text, Vietnamese, masked."""
    subject = (f"{SUBJECT_PREFIX} Rà soát tài khoản và phân quyền theo đơn vị mới: {review.unit_name} — "
               f"{review.counts['orphaned']} mồ côi, {review.counts['widened']} mở rộng phạm vi")
    context = {"r": review, "subject": subject, "as_of": as_of, "run_id": run_id}
    msg = new_message(subject, from_addr, review.owner, run_id=run_id)
    text = render_template("permission_review.txt.j2", **context)
    html = render_template("permission_review.html.j2", **context)
    # Belt and braces: any 9-12 digit run left in the text is masked as an ID.
    msg.set_content(scrub_text(text) or "", cte="quoted-printable")
    msg.add_alternative(scrub_text(html) or "", subtype="html", cte="quoted-printable")
    return msg


def send_permission_reviews(services: Services, *, run_id: str | None = None, as_of: str | None = None) -> dict:
    """Email each unit owner the permission review of the latest accounts run (or ``run_id``).

    Reads ``accounts.*`` from the platform; stores each email in ``ops.outbox`` (kind
    ``permission_review``), then sends what is pending. Returns ``{"run_id", "sent": [{"to",
    "unit", "subject", counts...}], "reviews"}`` (``sent``: delivered by this call); a mail server
    that refuses raises :class:`sapnhap.reports.ReportDeliveryError` and the rest stays pending for
    the task's retry.
    """
    import psycopg

    from sapnhap.accounts.platform import read_table
    from sapnhap.reference import load_reference

    with psycopg.connect(services.platform_dsn) as conn:
        row = conn.execute(
            "SELECT run_id, as_of FROM accounts.runs WHERE (%s::text IS NULL OR run_id = %s) ORDER BY built_at DESC LIMIT 1",
            (run_id, run_id),
        ).fetchone()
    if row is None:
        raise RuntimeError(f"no accounts run {run_id or '(latest)'} in accounts.runs")
    run_id, built_as_of = row
    as_of = as_of or built_as_of.strftime("%d/%m/%Y")
    legacy = read_table(services.platform_dsn, "legacy_accounts")
    people = read_table(services.platform_dsn, "people")
    legacy = legacy.merge(people[["person_id", "full_name"]], on="person_id", how="left")
    reviews = build_unit_reviews(
        legacy, read_table(services.platform_dsn, "role_assignments"), read_table(services.platform_dsn, "orphaned_roles"),
        read_table(services.platform_dsn, "match_review"), people, load_reference(),
    )
    messages = [build_review_email(r, from_addr=services.smtp.from_addr, as_of=as_of, run_id=run_id) for r in reviews]
    # Through the outbox: stored before any SMTP traffic, once per (accounts run, owner, unit), sent
    # once; a retried task sends only what is still pending (a partial send resumes, never repeats).
    keys = [review_key(run_id, r.owner, r.unit) for r in reviews]
    with psycopg.connect(services.platform_dsn) as conn:
        for key, msg in zip(keys, messages, strict=True):
            outbox.enqueue(conn, kind=PERMISSION_REVIEW, dedup_key=key, run_id=run_id, recipient=str(msg["To"]), msg=msg)
    delivery = outbox.deliver_pending(services.platform_dsn, services.smtp, kinds=(PERMISSION_REVIEW,))
    delivered = {d["dedup_key"] for d in delivery.sent}
    sent = [{"to": r.owner, "unit": r.unit, "subject": str(m["Subject"]), **r.counts}
            for r, m, k in zip(reviews, messages, keys, strict=True) if k in delivered]
    log.info("accounts run %s: %d permission reviews sent (%s)", run_id, len(sent),
             ", ".join(mask_email(s["to"]) for s in sent[:10]))
    outbox.raise_if_undelivered(delivery, services.smtp, what="permission reviews")
    return {"run_id": run_id, "sent": sent, "reviews": len(reviews)}


PERMISSION_REVIEW = "permission_review"  # its kind in ops.outbox


def review_key(run_id: str, owner: str, unit: str) -> str:
    """The outbox key of one unit's permission review: one per (accounts run, owner, unit)."""
    return f"{PERMISSION_REVIEW}|{run_id}|{owner.strip().lower()}|{unit}"
