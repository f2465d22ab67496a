"""Benchmark 6: the web console's budgets (CONSOLE.md, "Budgets") on a county-sized dataset.

Data: the demo's five home-care items (助餐 助浴 助洁 助急 助医, with its prices and monthly quotas) in an
active programme of 蒲江县 (510131); `console_providers` providers (one in twenty suspended, each
offering four items), those serving the county enrolled; `console_recipients` recipients, each with
a provider chosen for every item; `console_months` months of redemptions (`console_redemptions_per_month`
a month, this month's so far in proportion, a third of them rated; complaints about last month's;
the audit events of every redemption, hash-chained as the app chains them), all loaded in bulk
(datagen.py); then through the service layer, as the product does it, this month's
vouchers for every eligible recipient (`issue_monthly`) and every earlier month settled, approved by a
second admin and paid. Logins: a region-limited admin of 510131, an auditor, the staff login of the
busiest provider and a recipient served by it.

Pages: every GET route of `app.url_map` that is not under /api/ or /static/ (nor a blueprint's static
files), so a page added later is measured without touching this file. Path parameters are filled with
real ids of that world (programme, item code, recipient, provider, redemption, settlement, complaint,
voucher, issuance, user, period; `<id>` from the segment before it). Each page is requested
anonymously, then as the role whose pages it lives among (/me → recipient, /provider → provider,
/staff → admin, then auditor), then as every other role, and measured as the first that gets 200. A
page that needs a query string (the confirmation of a choice: ?programme_id=…&provider_id=…) gets the
one of a link to it on the pages that answered. A page that cannot be
filled, that no role gets 200 from, or that is an action (GET /logout ends the session) is listed as
skipped with the reason.

Measured per page, through gunicorn (Stage.server: 2 workers; 4 threads each on PostgreSQL, 1 on
SQLite) with `Accept-Encoding: br, gzip` as a browser sends it:

- server time: `console_requests` requests (after `console_warmup`) on one keep-alive connection, one
  at a time (bench/loadgen.py), p50, p95 and max in ms — a lone user's wait, from writing the request
  to the last byte of the answer, over loopback — and "cold", the first warm-up request (what the
  first visitor waits while a page's caches are empty);
- first load: the bytes transferred (status line, headers and body as sent) for the HTML plus every
  stylesheet, script, image and icon it references and every url() in those stylesheets;
- later page: the HTML again, plus for each of those files what a browser holding it in its cache
  still transfers: nothing while it is fresh (`Cache-Control: max-age` > 0 or `immutable`), the 304
  answer to a conditional request when it must revalidate (`no-cache`, or no max-age, with an ETag or
  Last-Modified), the whole file otherwise;
- "gzip": what the same answers would weigh gzip-compressed (level 6), when the app sent them
  uncompressed — what a compressing reverse proxy would send.

Targets (CONSOLE.md): first load ≤ 100 kB, later page ≤ 30 kB (1 kB = 1,000 bytes), server time
p95 ≤ 50 ms, for every page.
"""

import gzip
import html
import re
import time
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from bench.common import TARGETS, Options, fmt, note, out, percentile, stage, table, verdict, write_result
from bench.datagen import (
    PROVIDER_REGIONS,
    Bulk,
    current_period,
    load_choices,
    load_complaints,
    load_providers,
    load_recipients,
    load_redeemed_month,
    load_redemption_audit,
    month_instants,
    provider_items,
    setup_programme,
)
from bench.loadgen import build_request, load
from marketplace.demo import DEMO_ITEMS

ITEMS = [(code, price, quota) for code, _name, _unit, _standard, price, quota in DEMO_ITEMS]
PASSWORD = "bench-console-password"
ROLES = ("anonymous", "recipient", "provider", "admin", "auditor")
HINTS = (("/me", "recipient"), ("/provider", "provider"), ("/staff", "admin"))
ACTIONS = {"/logout": "an action, not a page: GET /logout ends the session",
           "/staff/audit/verify": "an action, not a page: re-hashes the whole audit trail (minutes for a county's "
                                  "year; the nightly verification's job)"}
# Downloads (a list or a statement as a spreadsheet) grow with the rows they hold and may stream: not pages.
DOWNLOADS = (".csv", ".xlsx")
ACCEPT = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8", "Accept-Encoding": "br, gzip"}
KB = 1000
# A path parameter named <id> takes the entity of the segment before it: /staff/programmes/<id>.
SINGULAR = {"programmes": "programme", "recipients": "recipient", "providers": "provider", "items": "item",
            "redemptions": "redemption", "settlements": "settlement", "complaints": "complaint",
            "vouchers": "voucher", "issuances": "issuance", "users": "user", "anomalies": "anomaly"}


# --- the county ------------------------------------------------------------------------------------------

def periods_back(now, months: int) -> list[str]:
    """The *months* periods ending with the current one, oldest first."""
    year, month = (int(part) for part in current_period(now).split("-"))
    found = []
    for back in range(months - 1, -1, -1):
        total = year * 12 + month - 1 - back
        found.append(f"{total // 12:04d}-{total % 12 + 1:02d}")
    return found


def build_county(options: Options, staged) -> dict:
    """Load the county (see the module's docstring); return the ids the pages are filled with and the logins."""
    from marketplace.audit.service import verify_chain
    from marketplace.auth import service as auth_service
    from marketplace.db import db, transaction
    from marketplace.programmes.models import Programme
    from marketplace.recipients import service as recipient_service
    from marketplace.recipients.models import Recipient
    from vouchers.service import issuance, settlement

    app, admin, url, now = staged.app, staged.admin, staged.url, staged.now
    recipients_wanted = int(options.size("console_recipients"))
    per_month = int(options.size("console_redemptions_per_month"))
    periods = periods_back(now, int(options.size("console_months")))
    codes = [code for code, _price, _quota in ITEMS]
    prices = {code: price for code, price, _quota in ITEMS}
    programme_id = setup_programme(app, items=ITEMS, choice_required=True, budget_fen=10**12,
                                   eligibility={"min_age": 60, "tags_any": []}, now=now)
    with Bulk(url, checkpoints=not options.smoke) as bulk:
        approved = load_providers(bulk, int(options.size("console_providers")), codes, programme_id, now,
                                  items_each=4, unapproved_every=20)
        serving = [pid for pid in approved if PROVIDER_REGIONS[pid % len(PROVIDER_REGIONS)] in ("510131", "510100")]
        offered = provider_items(bulk, serving)
        recipients = load_recipients(bulk, recipients_wanted, now)
        choices = load_choices(bulk, programme_id=programme_id, recipients=recipients, offered=offered,
                               item_codes=codes, chosen_by=admin.id, now=now)
        redemptions, ratings, last_month = 0, 0, None
        for index, period in enumerate(periods):
            start, end = month_instants(period)
            count = per_month if end <= now else max(1, int(per_month * (now - start) / (end - start)))
            month = load_redeemed_month(bulk, programme_id=programme_id, period=period, count=count,
                                        provider_ids=serving, offered=offered, prices=prices, recipients=recipients,
                                        scanned_by=admin.id, now=now, rated_every=3, seed=index)
            redemptions, ratings = redemptions + count, ratings + month["ratings"]
            if end <= now:
                last_month = (period, month["first_redemption"], count)
        complaints = load_complaints(bulk, provider_ids=serving, first_redemption=last_month[1],
                                     redemptions=last_month[2], period=last_month[0], created_by=admin.id, now=now)
        first, last = bulk.execute("SELECT MIN(id), MAX(id) FROM redemption")[0]
        audited = load_redemption_audit(bulk, first_redemption=first, last_redemption=last, actor_id=admin.id,
                                        actor=admin.username)
        bulk.analyze()
    note(f"loaded {len(approved):,} approved providers ({len(serving):,} serving the county), "
         f"{recipients_wanted:,} recipients, {choices:,} choices, {redemptions:,} redemptions over "
         f"{len(periods)} months, {ratings:,} ratings, {complaints['complaints']:,} complaints, "
         f"{audited:,} audit events")

    with app.app_context():
        with transaction():
            approver = auth_service.create_user(username="bench-approver", password=PASSWORD, role="admin",
                                                actor=None, now=now)
            county = auth_service.create_user(username="bench-county", password=PASSWORD, role="admin",
                                              region_code="510131", actor=None, now=now)
            auditor = auth_service.create_user(username="bench-auditor", password=PASSWORD, role="auditor",
                                               actor=None, now=now)
        began = time.perf_counter()
        with transaction():
            issued = issuance.issue_monthly(programme=db.session.get(Programme, programme_id), period=periods[-1],
                                            actor=admin, now=now)
        note(f"issued this month's {issued.vouchers:,} vouchers in {time.perf_counter() - began:.0f}s")
        began, settled = time.perf_counter(), 0
        for period in periods[:-1]:
            with transaction():
                # detect=False: the bulk data's one scanning login would be one long anomaly, and detection
                # has a benchmark of its own (bench/anomalies.py).
                drafts = settlement.create_settlements(programme=db.session.get(Programme, programme_id),
                                                       period=period, evaluations={}, actor=admin, now=now,
                                                       detect=False)
                for draft in drafts:
                    settlement.approve(settlement=draft, actor=approver, now=now)
                    settlement.pay(settlement=draft, payment_reference=f"国库集中支付-{period}-{draft.provider_id}",
                                   actor=approver, now=now)
                settled += len(drafts)
        note(f"settled, approved and paid {settled:,} settlements of {len(periods) - 1} months in "
             f"{time.perf_counter() - began:.0f}s")
        ids = pick_ids(programme_id, periods)
        with transaction():
            staff = auth_service.create_user(username="bench-staff", password=PASSWORD, role="provider",
                                             provider_id=ids["provider"], actor=None, now=now)
            resident = recipient_service.create_account(recipient=db.session.get(Recipient, ids["recipient"]),
                                                        username="bench-recipient", password=PASSWORD, actor=None,
                                                        now=now)
        ids["user"] = staff.id
        chain_ok = verify_chain().ok if options.smoke else None  # re-hashing a year of events takes minutes
        logins = {"recipient": resident.username, "provider": staff.username, "admin": county.username,
                  "auditor": auditor.username}
        db.session.remove()
    return {"ids": ids, "logins": logins, "programme_id": programme_id, "recipients": recipients_wanted,
            "providers": len(approved), "redemptions": redemptions, "ratings": ratings, "months": len(periods),
            "vouchers_this_month": issued.vouchers, "settlements": settled, "audit_events": audited,
            "audit_chain_ok": chain_ok}


def pick_ids(programme_id: int, periods: list[str]) -> dict:
    """Real ids to fill path parameters with: the busiest provider, a recipient it served lately, …"""
    from sqlalchemy import func, select

    from marketplace.db import db
    from providers.models import Complaint
    from vouchers.models import Issuance, Redemption, Settlement, Voucher

    provider_id = db.session.execute(select(Redemption.provider_id, func.count()).group_by(Redemption.provider_id)
                                     .order_by(func.count().desc(), Redemption.provider_id).limit(1)).first()[0]
    redemption = db.session.scalar(select(Redemption).where(Redemption.provider_id == provider_id)
                                   .order_by(Redemption.id.desc()).limit(1))
    ids = {"programme": programme_id, "provider": provider_id, "recipient": redemption.recipient_id,
           "redemption": redemption.id, "item": redemption.item_code, "period": periods[-2] if len(periods) > 1
           else periods[-1]}
    ids["settlement"] = db.session.scalar(select(Settlement.id).where(Settlement.provider_id == provider_id)
                                          .order_by(Settlement.id.desc()).limit(1))
    ids["complaint"] = db.session.scalar(select(Complaint.id).where(Complaint.provider_id == provider_id)
                                         .order_by(Complaint.id.desc()).limit(1))
    ids["voucher"] = db.session.scalar(select(Voucher.id).where(Voucher.recipient_id == ids["recipient"],
                                                                Voucher.status == "issued")
                                       .order_by(Voucher.id.desc()).limit(1))
    ids["issuance"] = db.session.scalar(select(func.max(Issuance.id)))
    return {name: value for name, value in ids.items() if value is not None}


# --- the pages -------------------------------------------------------------------------------------------

def console_rules(app) -> list:
    """The GET routes that are console pages: not the API, not static files."""
    rules = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.rule.startswith(("/api/", "/static/")):
            continue
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        rules.append(rule)
    return sorted(rules, key=lambda rule: rule.rule)


def fill(rule, ids: dict) -> tuple[str | None, str | None]:
    """(path, None) with every parameter filled from *ids*, or (None, why not)."""
    segments = rule.rule.split("/")
    values = {}
    for name in rule.arguments:
        entity = name.removesuffix("_id").removesuffix("_code")
        if name == "id":
            position = next(i for i, segment in enumerate(segments) if re.fullmatch(rf"<(\w+:)?{name}>", segment))
            entity = SINGULAR.get(segments[position - 1], segments[position - 1]) if position else "id"
        if entity not in ids:
            return None, f"no value for <{name}> (known: {', '.join(sorted(ids))})"
        values[name] = ids[entity]
    built = rule.build(values, append_unknown=False)
    if built is None:
        return None, f"the values {values} do not build {rule.rule}"
    return built[1], None


def role_order(path: str) -> list[str]:
    """Anonymous first (pages for anyone are measured as the public sees them; the others redirect to
    /login), then the role whose pages *path* lives among, then the rest."""
    hinted = [role for prefix, role in HINTS if path == prefix or path.startswith(prefix + "/")]
    if hinted == ["admin"]:
        hinted.append("auditor")
    return ["anonymous", *hinted] + [role for role in ROLES if role not in hinted and role != "anonymous"]


def login(server, username: str) -> str:
    """A cookie session through the API (the console's session is the same cookie); returns the Cookie header."""
    reply = server.call("POST", "/api/v1/auth/login", json_body={"username": username, "password": PASSWORD})
    assert reply.status == 200, (username, reply.status, reply.body[:300])
    cookie = reply.headers.get("set-cookie", "").split(";", 1)[0]
    assert cookie, "the login set no cookie"
    return cookie


def headers_for(cookie: str | None) -> dict:
    return {**ACCEPT, **({"Cookie": cookie} if cookie else {})}


def wire_bytes(reply) -> int:
    """Status line, headers and body as transferred."""
    head = len(f"HTTP/1.1 {reply.status} OK\r\n") + sum(len(k) + len(v) + 4 for k, v in reply.headers.items()) + 2
    return head + len(reply.body)


def gzipped_bytes(reply) -> int:
    """What the answer would weigh gzip-compressed (unchanged if it is compressed already or empty)."""
    if reply.headers.get("content-encoding") or not reply.body:
        return wire_bytes(reply)
    return wire_bytes(reply) - len(reply.body) + len(gzip.compress(reply.body, 6)) + len("content-encoding: gzip\r\n")


class Assets(HTMLParser):
    """The stylesheets, scripts, images and icons a page references."""

    LINKS = {"stylesheet", "icon", "shortcut", "apple-touch-icon", "preload", "modulepreload", "manifest"}

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "link" and self.LINKS & set((attributes.get("rel") or "").lower().split()):
            self.found.append(attributes.get("href") or "")
        elif tag in ("script", "img", "source", "input") and attributes.get("src"):
            self.found.append(attributes["src"])


CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)['"]?\s*\)|@import\s+['"]([^'"]+)['"]""")


def readable(server, path: str, reply, cookie: str | None) -> str:
    """The text of *reply*: gunzipped, or asked for again uncompressed (brotli is not in the standard library)."""
    encoding = reply.headers.get("content-encoding")
    if encoding == "gzip":
        body = gzip.decompress(reply.body)
    elif encoding:
        body = server.call("GET", path, headers={"Cookie": cookie} if cookie else {}, record=False).body
    else:
        body = reply.body
    return body.decode("utf-8", "replace")


def referenced(server, page: str, reply, cookie: str | None) -> list[str]:
    """Same-site paths of the files *page* needs, stylesheets' url()s included."""
    paths, queue = [], []
    if "html" in reply.headers.get("content-type", ""):
        parser = Assets()
        parser.feed(readable(server, page, reply, cookie))
        queue = [urljoin(page, href) for href in parser.found if href and not href.startswith("data:")]
    while queue:
        target = queue.pop(0)
        parts = urlsplit(target)
        if parts.netloc and parts.netloc not in ("127.0.0.1", f"127.0.0.1:{server.port}"):
            paths.append(target)  # another site: counted as missing (CONSOLE.md: no CDN)
            continue
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if path in paths:
            continue
        paths.append(path)
        if path.split("?")[0].endswith(".css"):
            plain = server.call("GET", path, headers={"Cookie": cookie} if cookie else {}, record=False)
            for match in CSS_URL.finditer(readable(server, path, plain, cookie)):
                found = match.group(1) or match.group(2)
                if found and not found.startswith(("data:", "#")):
                    queue.append(urljoin(path, found))
    return paths


def fresh_in_cache(headers: dict) -> bool:
    control = headers.get("cache-control", "").lower()
    if "no-store" in control or "no-cache" in control:
        return False
    if "immutable" in control:
        return True
    age = re.search(r"max-age=(\d+)", control)
    return bool(age and int(age.group(1)) > 0)


def weigh(server, path: str, cookie: str | None) -> dict:
    """The page's bytes: first load, later page, and both as gzip would make them."""
    page = server.call("GET", path, headers=headers_for(cookie), record=False)
    content_type = page.headers.get("content-type", "")
    first, later = wire_bytes(page), wire_bytes(page)
    first_gz, later_gz = gzipped_bytes(page), gzipped_bytes(page)
    assets, problems = [], []
    for asset in referenced(server, path, page, cookie):
        if "://" in asset:
            problems.append(f"{asset} is on another site")
            continue
        reply = server.call("GET", asset, headers=headers_for(cookie), record=False)
        if reply.status != 200:
            problems.append(f"{asset} answered {reply.status}")
        size, size_gz = wire_bytes(reply), gzipped_bytes(reply)
        first, first_gz = first + size, first_gz + size_gz
        if fresh_in_cache(reply.headers):
            again = "cached"
        elif reply.headers.get("etag") or reply.headers.get("last-modified"):
            conditional = {key: value for key, value in (("If-None-Match", reply.headers.get("etag")),
                                                         ("If-Modified-Since", reply.headers.get("last-modified")))
                           if value}
            revalidated = server.call("GET", asset, headers={**headers_for(cookie), **conditional}, record=False)
            again = f"revalidated ({revalidated.status})"
            later, later_gz = later + wire_bytes(revalidated), later_gz + gzipped_bytes(revalidated)
        else:
            again = "fetched again"
            later, later_gz = later + size, later_gz + size_gz
        assets.append({"path": asset, "status": reply.status, "bytes": size, "gzip_bytes": size_gz,
                       "content_encoding": reply.headers.get("content-encoding"),
                       "cache_control": reply.headers.get("cache-control"), "later": again})
    return {"status": page.status, "content_type": content_type, "content_encoding": page.headers.get(
        "content-encoding"), "html_bytes": wire_bytes(page), "first_load_bytes": first, "later_bytes": later,
        "first_load_gzip_bytes": first_gz, "later_gzip_bytes": later_gz, "assets": assets, "problems": problems}


def server_time(server, path: str, cookie: str | None, *, warmup: int, requests: int, seconds: float) -> dict:
    """p50, p95 and max of *requests* requests after *warmup* ones; `cold_ms` is the very first (caches empty)."""
    request = build_request("GET", path, None, headers_for(cookie))
    warm, _sent = load(server.port, [request] * warmup, connections=1, duration=seconds)
    result, _sent = load(server.port, [request] * requests, connections=1, duration=seconds)
    summary = result.summary()
    p95 = percentile(result.latencies_ms, 95)
    return {"requests": len(result.latencies_ms), "p50_ms": summary["p50_ms"],
            "p95_ms": None if p95 is None else round(p95, 2), "max_ms": summary["max_ms"],
            "cold_ms": round(warm.latencies_ms[0], 2) if warm.latencies_ms else None,
            "statuses": summary["statuses"], "errors": summary["errors"] + warm.errors}


HREF = re.compile(r"""href=["']([^"']+)["']""")


def first_answer(server, path: str, roles: list[str], cookies: dict) -> tuple[str | None, dict, dict]:
    """(the first of *roles* that gets 200 from *path*, every role's status, the 200 page's text by role)."""
    answers, texts = {}, {}
    for role in roles:
        reply = server.call("GET", path, headers=headers_for(cookies.get(role)), record=False)
        answers[role] = reply.status
        if reply.status == 200:
            if "html" in reply.headers.get("content-type", ""):
                texts[role] = readable(server, path, reply, cookies.get(role))
            return role, answers, texts
    return None, answers, texts


def linked(path: str, texts: dict[str, str]) -> str | None:
    """A link on a page already seen to *path* with a query string (a page needing one, such as the
    confirmation of a choice: /me/providers/<item>/choose?programme_id=…&provider_id=…)."""
    for text in texts.values():
        for href in HREF.findall(text):
            parts = urlsplit(html.unescape(href))
            if parts.path == path and parts.query:
                return f"{parts.path}?{parts.query}"
    return None


def survey(app, server, ids: dict, cookies: dict) -> tuple[list[dict], list[dict]]:
    """Which pages there are, filled and matched with a role: (to measure, skipped).

    A page no role gets 200 from is tried once more with the query string of a link to it found on
    the pages that did answer (every role that answered 200 somewhere)."""
    pages, skipped, texts = [], [], {}
    for rule in console_rules(app):
        if rule.rule in ACTIONS:
            skipped.append({"page": rule.rule, "endpoint": rule.endpoint, "reason": ACTIONS[rule.rule]})
            continue
        if rule.rule.endswith(DOWNLOADS):
            skipped.append({"page": rule.rule, "endpoint": rule.endpoint,
                            "reason": "a download, not a page: its size and time grow with the rows it holds"})
            continue
        path, why = fill(rule, ids)
        if path is None:
            skipped.append({"page": rule.rule, "endpoint": rule.endpoint, "reason": why})
            continue
        role, answers, seen = first_answer(server, path, role_order(rule.rule), cookies)
        texts.update({(role_, path): text for role_, text in seen.items()})
        entry = {"page": rule.rule, "endpoint": rule.endpoint, "path": path, "role": role, "answers": answers}
        (pages if role else skipped).append(entry)
    for entry in [entry for entry in skipped if "answers" in entry]:
        answers = entry["answers"]
        statuses = ", ".join(f"{role} {status}" for role, status in answers.items())
        link = linked(entry["path"], texts)
        if link:
            role, again, _seen = first_answer(server, link, role_order(entry["page"]), cookies)
            if role:
                skipped.remove(entry)
                pages.append({**entry, "path": link, "role": role, "answers": {**answers, **{
                    f"{r} (with the link's query)": s for r, s in again.items()}}})
                continue
        if all(300 <= status < 400 for status in answers.values()):
            entry["reason"] = f"an action, not a page: every role is redirected ({statuses})"
        else:
            entry["reason"] = f"no role got 200: {statuses}" + (f"; nor with {link}" if link else
                                                                "; no page links to it with a query string")
    return sorted(pages, key=lambda entry: entry["page"]), skipped


def judge(entry: dict) -> dict:
    met = {"first_load": entry["first_load_bytes"] <= TARGETS["console_first_load_kb_max"] * KB,
           "later": entry["later_bytes"] <= TARGETS["console_later_kb_max"] * KB,
           "p95": entry["p95_ms"] is not None and entry["p95_ms"] <= TARGETS["console_p95_ms_max"]}
    return met


def run(options: Options, backend: str) -> dict:
    requests, warmup = int(options.size("console_requests")), int(options.size("console_warmup"))
    seconds = float(options.size("console_seconds"))
    out(f"\n== 6. console budgets ({backend}): {int(options.size('console_recipients')):,} recipients, "
        f"{int(options.size('console_months'))} months of {int(options.size('console_redemptions_per_month')):,} "
        f"redemptions; {requests} requests per page")
    with stage(options, backend, "console") as staged:
        built = time.perf_counter()
        world = build_county(options, staged)
        note(f"built in {time.perf_counter() - built:.0f}s")
        server = staged.server("console")
        server.start(migrate=False)
        try:
            cookies = {"anonymous": None} | {role: login(server, username) for role, username in
                                             world["logins"].items()}
            pages, skipped = survey(staged.app, server, world["ids"], cookies)
            for entry in pages:
                cookie = cookies[entry["role"]]
                entry.update(weigh(server, entry["path"], cookie))
                entry.update(server_time(server, entry["path"], cookie, warmup=warmup, requests=requests,
                                         seconds=seconds))
                entry["met"] = judge(entry)
            server_5xx = server.server_side_5xx()
        finally:
            server.stop()
    rows = [[backend, entry["page"], entry["role"], fmt(entry["p50_ms"], 1), fmt(entry["p95_ms"], 1),
             fmt(entry["max_ms"], 1), fmt(entry["cold_ms"], 1),
             fmt(entry["first_load_bytes"] / KB, 1), fmt(entry["later_bytes"] / KB, 1),
             "-" if entry["first_load_gzip_bytes"] == entry["first_load_bytes"] else
             f"{entry['first_load_gzip_bytes'] / KB:.1f} / {entry['later_gzip_bytes'] / KB:.1f}",
             len(entry["assets"]), entry["content_encoding"] or "none",
             "PASS" if all(entry["met"].values()) else "MISS " + ",".join(k for k, v in entry["met"].items() if not v)]
            for entry in pages]
    targets = {"first_load_kb_max": TARGETS["console_first_load_kb_max"], "later_kb_max":
               TARGETS["console_later_kb_max"], "p95_ms_max": TARGETS["console_p95_ms_max"]}
    if rows:
        out(table(["backend", "page", "as", "p50 ms", "p95 ms", "max ms", "cold ms", "first kB", "later kB",
                   "if gzipped", "files", "encoding",
                   f"budget ({targets['first_load_kb_max']} / {targets['later_kb_max']} kB, "
                   f"p95 {targets['p95_ms_max']:g} ms)"], rows))
    else:
        out("no console page to measure")
    for entry in pages:
        for problem in entry["problems"]:
            note(f"{entry['page']}: {problem}")
        if entry["errors"] or set(entry["statuses"]) != {"200"}:
            note(f"{entry['page']}: answers {entry['statuses']}, {entry['errors']} broken")
    for entry in skipped:
        note(f"skipped {entry['page']}: {entry['reason']}")
    if server_5xx:
        note(f"server answered 5xx: {server_5xx[:3]}")
    worst = max(pages, key=lambda entry: entry["p95_ms"] or 0, default=None)
    heaviest = max(pages, key=lambda entry: entry["first_load_bytes"], default=None)
    heaviest_later = max(pages, key=lambda entry: entry["later_bytes"], default=None)
    met = all(all(entry["met"].values()) for entry in pages) if pages else None
    clean = not server_5xx and all(not entry["errors"] and set(entry["statuses"]) == {"200"} and not entry["problems"]
                                   for entry in pages)
    if pages:
        out(f"{len(pages)} pages measured, {len(skipped)} skipped; worst p95 {fmt(worst['p95_ms'], 1)} ms "
            f"({worst['page']}), heaviest first load {heaviest['first_load_bytes'] / KB:.1f} kB "
            f"({heaviest['page']}), heaviest later page {heaviest_later['later_bytes'] / KB:.1f} kB: {verdict(met)}")
    write_result(options, "console", backend, {
        "world": {key: value for key, value in world.items() if key != "logins"}, "requests_per_page": requests,
        "targets": targets, "kb": KB, "pages": pages, "skipped": skipped, "server_5xx": server_5xx[:10],
        "clean": clean, "met": met})
    figure = (f"{len(pages)} pages: worst p95 {fmt(worst['p95_ms'], 1)} ms, first load ≤ "
              f"{heaviest['first_load_bytes'] / KB:.1f} kB, later ≤ {heaviest_later['later_bytes'] / KB:.1f} kB"
              if pages else "no page yet") + (f"; {len(skipped)} skipped" if skipped else "")
    return {"benchmark": "6. console", "backend": backend, "figure": figure,
            "ok": None if met is None else met and clean}
