"""Region scope, route by route: every route an admin can call on a region-scoped object, called as an admin
of the object's region and as an admin of a neighbouring county, on both databases.

One scenario lives in 蒲江县 (510131): programmes, providers, a recipient with vouchers, a choice,
redemptions, a settlement draft and a complaint. INSIDE is an admin of 成都市 (510100, which covers
510131), OUTSIDE an admin of 大邑县 (510129); a few rows use instead a county admin of 510131 facing a
city-wide programme, which is not inside a county's scope. Each row of ROWS is one test with a fresh
scenario: the outsider's request goes first and must be refused (403 `forbidden`) or, for a list, must
not show the object, and must leave everything as it was (the audit chain, the ledger, the objects an
unscoped admin reads); then INSIDE's request must succeed. Routes that check two objects (a programme
and a recipient) have a row per object, so that each check alone is needed. Only HTTP is asserted, so
the table keeps its meaning whichever module holds the policy. Rows marked `gap` are routes not
region-scoped today (xfail, strict: they turn into failures once fixed, and the mark must then go).
test_every_route_has_a_row_or_an_exemption makes a new route without a row fail the suite.
"""

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from types import SimpleNamespace

import pytest

from marketplace.demo import demo_credit_code
from marketplace.recipients.idnumber import check_character
from tests.conftest import PASSWORD
from tests.support.scenario import Builder

HOME, INSIDE, OUTSIDE = "510131", "510100", "510129"  # 蒲江县; 成都市 (covers 蒲江县); 大邑县


def _id_number(birth: date, number: int) -> str:
    first17 = f"{HOME}{birth:%Y%m%d}{number:03d}"
    return first17 + check_character(first17)


def _csv(s) -> dict:
    text = f"name,id_number,phone,region_code,address,tags\n赵玉兰,{_id_number(date(1946, 2, 3), 7)},,{HOME},,\n"
    return {"file": (io.BytesIO(text.encode()), "recipients.csv")}


# --- the scenario ------------------------------------------------------------------------------------

def _ok(response, status=200) -> dict:
    assert response.status_code == status, response.get_json()
    return response.get_json()


def build_scenario(app, client, *, extended: bool = False) -> SimpleNamespace:
    """Everything an admin route acts on, inside 510131; ids by name, plus root/inside/outside headers.

    *extended* adds, for routes that check two objects: a city-wide programme (510100, outside the scope of
    `county`, an admin of 510131), a programme of the outside admin's own county (510129), and a complaint
    for alice about a provider serving 510129 too (alice's region decides, not the provider's).
    """
    build = Builder(app)
    meal, bath = build.item(name="助餐", unit="餐", price=1500), build.item(name="助浴", unit="次", price=6000)
    items = [(meal, 1200, 4), (bath, 5000, 2)]
    programme = build.programme(items=items, region_code=HOME)                    # active, with a budget
    draft = build.programme(items=items, region_code=HOME, status="draft")        # budgeted, to activate
    city = build.programme(items=items, region_code=INSIDE, name="成都市居家养老服务券") if extended else None
    p1 = build.provider(items=[meal, bath], regions=(HOME,), enrol_in=[programme, city] if extended else [programme])
    p2 = build.provider(items=[meal, bath], regions=(HOME,), login=False)         # approved, not enrolled
    p3 = build.provider(items=[meal], regions=(HOME,), status="pending", login=False)
    p4 = build.provider(items=[meal], regions=(HOME,), status="suspended", login=False)
    alice = build.recipient(region_code=HOME)
    build.issue(programme, build.period())
    build.choose(alice, programme, meal, p1)
    root = build.headers(build.system_admin)
    vouchers = _ok(client.get(f"/api/v1/vouchers?recipient_id={alice.id}&per_page=500", headers=root))["items"]
    meals = [voucher["id"] for voucher in vouchers if voucher["item_code"] == meal]
    r1 = build.redeem(p1, voucher=meals[0]).id
    drafts = _ok(client.post(f"/api/v1/programmes/{programme.id}/settlements", json={"period": build.period()},
                             headers=root), 201)["items"]                          # drafted by root: r1
    r2 = build.redeem(p1, voucher=meals[1]).id                                     # unsettled
    complaint = _ok(client.post("/api/v1/complaints", headers=root, json={
        "provider_id": p1.id, "recipient_id": alice.id, "text": "送餐晚了一小时"}), 201)["id"]
    scenario = SimpleNamespace(
        programme=programme.id, draft=draft.id, meal=meal, bath=bath, p1=p1.id, p2=p2.id, p3=p3.id, p4=p4.id,
        recipient=alice.id, voucher=meals[2], r1=r1, r2=r2, settlement=drafts[0]["id"], complaint=complaint,
        period=build.period(), next_period=build.period(1), root=root, id_number=alice.id_number,
        id_tail=alice.id_number_masked[-4:], p1_login=p1.user.id,
        alice_login=build.user(role="recipient", recipient_id=alice.id).id,
        inside=build.headers(build.admin(region_code=INSIDE)),
        outside=build.headers(build.admin(region_code=OUTSIDE)))
    if extended:
        scenario.city = city.id
        scenario.dayi = build.programme(items=items, region_code=OUTSIDE, name="大邑县居家养老服务券").id
        scenario.county = build.headers(build.admin(region_code=HOME))
        scenario.p5 = build.provider(items=[meal], regions=(HOME, OUTSIDE), login=False).id
        scenario.complaint2 = _ok(client.post("/api/v1/complaints", headers=root, json={
            "provider_id": scenario.p5, "recipient_id": alice.id, "text": "服务时间不足"}), 201)["id"]
    return scenario


# --- the table ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    method: str
    path: str                              # {name} is an id of the scenario
    body: Callable | None = None           # scenario → JSON body (or multipart fields with form=True)
    ok: tuple[int, ...] = (200,)           # what INSIDE gets
    out: int = 403                         # what the outsider gets (403 forbidden; 404 not_found where existence
                                           # must not show; 200 for filtered answers)
    outsider: str = "outside"              # or "county": the 510131 admin, outside a city-wide programme
    out_body: Callable | None = None       # the outsider's own body, when it differs
    extended: bool = False                 # needs build_scenario(extended=True)
    out_json: Callable | None = None       # (body, scenario) → whether OUTSIDE's 200 shows nothing of 510131
    in_json: Callable | None = None        # (body, scenario) → whether INSIDE's answer shows it
    prepare: Callable | None = None        # (client, scenario) → bring the object to the state the row needs
    label: str = ""
    form: bool = False
    gap: str | None = None                 # not region-scoped today: xfail until fixed

    @property
    def route(self) -> str:
        return f"{self.method} {re.sub(r'{[^}]+}', '{id}', self.path.split('?')[0])}"

    @property
    def test_id(self) -> str:
        path = re.sub(r"{[^}]+}", "{id}", self.path)
        return f"{self.method} {path}" + (f" ({self.label})" if self.label else "")


def listed(key: str, field: str = "id") -> dict:
    """A list route: INSIDE's page holds the scenario's object *key*, OUTSIDE's does not."""
    def shows(body, s):
        return str(getattr(s, key)) in {str(item[field]) for item in body["items"]}
    return {"out": 200, "out_json": lambda body, s: not shows(body, s), "in_json": shows}


def _choose(programme: str):
    return lambda s: {"programme_id": getattr(s, programme), "item_code": s.bath, "provider_id": s.p1}


def _issue(programme: str):
    return lambda s: {"programme_id": getattr(s, programme), "recipient_id": s.recipient, "item_code": s.meal,
                      "count": 1}


def _apply(client, s):
    """p2 (approved, serving 510131, not enrolled) asks through its manager to join the programme."""
    build = Builder(client.application)
    manager = build.user(role="provider", provider_id=s.p2)  # its first login: the manager
    s.application = _ok(client.post(f"{P}/{s.programme}/applications", json={"note": "申请加入"},
                                     headers=build.headers(manager)), 201)["id"]


def _approve(client, s):
    _ok(client.post(f"/api/v1/settlements/{s.settlement}/approve", headers=s.inside))


def _deactivated(login: str):
    def prepare(client, s):
        _ok(client.post(f"/api/v1/users/{getattr(s, login)}/deactivate", json={"reason": "暂停使用"}, headers=s.root))
    return prepare


def _provider_body(s) -> dict:
    return {"name": "蒲江县鹤山养老服务中心", "kind": "social_organisation",
            "credit_code": demo_credit_code("52", "MA99Y9Y9"), "legal_representative": "李华", "phone": "028-88551234",
            "address": "蒲江县鹤山街道", "region_codes": [HOME], "item_codes": [s.meal], "capacity": 100}


def _programme_body(s) -> dict:
    return {"name": "蒲江县助浴服务券", "authority": "蒲江县民政局", "region_code": HOME, "starts_on": "2026-01-01",
            "ends_on": "2026-12-31", "items": [{"item_code": s.bath, "unit_price_fen": 5000, "monthly_quota": 1}],
            "eligibility": {"min_age": 60, "tags_any": []}, "copay_percent": {"default": 20},
            "reserved_share_percent": 30, "settlement_rules": [{"min_score": 0, "pay_percent": 100}],
            "rating_window_days": 30, "reversal_window_hours": 48, "choice_required": True}


P, V, R, S = "/api/v1/programmes", "/api/v1/vouchers", "/api/v1/redemptions", "/api/v1/settlements"
COUNTY = {"outsider": "county", "extended": True}

ROWS = [
    # programmes and budgets
    Row("GET", P + "?per_page=500", **listed("programme")),
    Row("POST", P, _programme_body, ok=(201,)),
    Row("GET", P + "/{programme}"),
    # A city-wide programme (510100) is not inside the scope of a county admin (510131), though its people are.
    Row("GET", P + "?per_page=500", **listed("city"), **COUNTY, label="city-wide, county admin"),
    Row("GET", P + "/{city}", **COUNTY, label="city-wide, county admin"),
    Row("POST", P + "/{programme}/budget", lambda s: {"amount_fen": 100_00, "reason": "追加预算"}),
    Row("POST", P + "/{draft}/activate"),
    Row("POST", P + "/{programme}/close"),
    Row("PUT", P + "/{programme}/anomaly-parameters",
        lambda s: {"anomaly_parameters": {"month_end_burst": {"z_threshold": 4}}, "reason": "本县机构少，放宽阈值"}),
    Row("GET", P + "/{programme}/ledger"),
    Row("GET", P + "/{programme}/reconciliation"),
    Row("GET", P + "/{programme}/dashboard"),
    Row("GET", P + "/{programme}/switching"),
    Row("POST", P + "/{programme}/anomalies/detect", lambda s: {"period": s.period}),
    Row("POST", P + "/{programme}/issuance", lambda s: {"period": s.next_period}),
    Row("POST", P + "/{programme}/expire"),
    Row("POST", P + "/{programme}/settlements", lambda s: {"period": s.period}, ok=(201,)),
    Row("POST", P + "/{programme}/providers", lambda s: {"provider_id": s.p2}, ok=(201,)),
    # Public for anonymous callers, yet refused to an admin of another county (get_programme checks scope).
    Row("GET", P + "/{programme}/providers"),
    # recipients and their choices
    Row("GET", "/api/v1/recipients?region_code=" + HOME + "&per_page=500", **listed("recipient")),
    Row("POST", "/api/v1/recipients", lambda s: {"name": "钱淑芬", "id_number": _id_number(date(1947, 4, 5), 8),
                                                 "region_code": HOME, "tags": []}, ok=(201,)),
    Row("POST", "/api/v1/recipients/import", _csv, form=True, out=200,
        out_json=lambda body, s: body["created"] == 0 and {e["field"] for e in body["errors"]} == {"region_code"},
        in_json=lambda body, s: body["created"] == 1, label="a row in 510131"),
    Row("GET", "/api/v1/recipients?q={id_tail}&per_page=500", **listed("recipient"), label="q= the ID number's tail"),
    # Found by ID number only inside the region; outside, as if nobody had it (404, not 403: no existence leak).
    Row("POST", "/api/v1/recipients/lookup", lambda s: {"id_number": s.id_number}, out=404),
    Row("GET", "/api/v1/recipients/{recipient}"),
    Row("PATCH", "/api/v1/recipients/{recipient}", lambda s: {"address": "蒲江县鹤山街道2村3组"}),
    Row("POST", "/api/v1/recipients/{recipient}/account", lambda s: {"username": "alice-login", "password": PASSWORD},
        ok=(201,)),
    Row("GET", "/api/v1/recipients/{recipient}/choices"),
    Row("PUT", "/api/v1/recipients/{recipient}/choices", _choose("programme")),
    Row("PUT", "/api/v1/recipients/{recipient}/choices", _choose("city"), **COUNTY,
        label="city-wide programme, county admin"),
    Row("PUT", "/api/v1/recipients/{recipient}/choices", _choose("programme"), out_body=_choose("dayi"),
        extended=True, label="outside admin naming their own programme"),
    Row("POST", "/api/v1/users", lambda s: {"username": "alice-2", "password": PASSWORD, "role": "recipient",
                                            "recipient_id": s.recipient}, ok=(201,), label="a recipient's login"),
    Row("POST", "/api/v1/users", lambda s: {"username": "p1-staff-2", "password": PASSWORD, "role": "provider",
                                            "provider_id": s.p1}, ok=(201,), label="a provider's login"),
    # Four eyes: no region-scoped admin creates an admin login, even of its own region.
    Row("POST", "/api/v1/users", lambda s: {"username": "puj-admin", "password": PASSWORD, "role": "admin",
                                            "region_code": HOME}, ok=(403,), label="an admin of 510131"),
    # vouchers
    Row("GET", V + "?programme_id={programme}&per_page=500", **listed("voucher")),
    Row("POST", V, _issue("programme"), ok=(201,)),
    Row("POST", V, _issue("city"), ok=(201,), **COUNTY, label="city-wide programme, county admin"),
    Row("POST", V, _issue("programme"), ok=(201,), out_body=_issue("dayi"), extended=True,
        label="outside admin naming their own programme"),
    Row("GET", V + "/{voucher}"),
    Row("GET", V + "/{voucher}/card.png"),
    Row("GET", V + "/{voucher}/card.svg"),
    Row("POST", V + "/{voucher}/revoke", lambda s: {"reason": "重复发放"}),
    # redemptions and ratings
    Row("GET", R + "?programme_id={programme}&per_page=500", **listed("r1")),
    Row("GET", R + "/{r1}"),
    Row("POST", R + "/{r2}/reverse", lambda s: {"reason": "扫码有误"}),
    Row("POST", R + "/{r2}/rating", lambda s: {"score": 4, "source": "phone_followup"}, ok=(201,)),
    # complaints
    Row("GET", "/api/v1/complaints?provider_id={p1}&per_page=500", **listed("complaint")),
    Row("POST", "/api/v1/complaints", lambda s: {"provider_id": s.p1, "recipient_id": s.recipient, "text": "态度差"},
        ok=(201,), label="for a recipient"),
    Row("POST", "/api/v1/complaints", lambda s: {"provider_id": s.p1, "redemption_id": s.r2, "text": "未上门"},
        ok=(201,), label="about a redemption"),
    Row("POST", "/api/v1/complaints", lambda s: {"provider_id": s.p1, "text": "收费不规范"}, ok=(201,),
        label="about a provider only"),
    Row("GET", "/api/v1/complaints/{complaint}"),
    # A complaint naming a recipient is in scope where the recipient lives, wherever its provider serves.
    Row("GET", "/api/v1/complaints?provider_id={p5}&per_page=500", **listed("complaint2"), extended=True,
        label="provider serving 510129 too"),
    Row("GET", "/api/v1/complaints/{complaint2}", extended=True, label="provider serving 510129 too"),
    Row("POST", "/api/v1/complaints", lambda s: {"provider_id": s.p5, "recipient_id": s.recipient, "text": "未上门"},
        ok=(201,), extended=True, label="provider serving 510129 too"),
    Row("POST", "/api/v1/complaints/{complaint}/resolve", lambda s: {"resolution": "已回访核实", "upheld": True}),
    # providers
    Row("POST", "/api/v1/providers", _provider_body, ok=(201,), label="registered by an admin"),
    Row("POST", "/api/v1/providers/{p3}/approve", lambda s: {"reason": "资质齐全"}),
    Row("POST", "/api/v1/providers/{p2}/suspend", lambda s: {"reason": "投诉核查"}),
    Row("POST", "/api/v1/providers/{p4}/reinstate", lambda s: {"reason": "整改完成"}),
    Row("POST", "/api/v1/providers/{p2}/revoke", lambda s: {"reason": "资质撤销"}),
    Row("GET", "/api/v1/providers?status=pending&per_page=500", **listed("p3")),
    Row("GET", "/api/v1/providers/{p3}"),
    Row("GET", "/api/v1/providers/{p1}/status-history"),
    Row("GET", "/api/v1/providers/{p1}/enrolments"),
    Row("GET", "/api/v1/providers/{p1}/logins"),
    Row("POST", "/api/v1/providers/{p1}/logins", lambda s: {"username": "p1-door", "password": PASSWORD}, ok=(201,)),
    # logins: a provider's where one of its regions overlaps, a recipient's where they live
    Row("POST", "/api/v1/users/{p1_login}/deactivate", lambda s: {"reason": "已离职"}, label="a provider's login"),
    Row("POST", "/api/v1/users/{alice_login}/deactivate", lambda s: {"reason": "已搬走"}, label="a recipient's login"),
    Row("POST", "/api/v1/users/{p1_login}/reactivate", lambda s: {"reason": "回来上班"},
        prepare=_deactivated("p1_login"), label="a provider's login"),
    Row("POST", "/api/v1/users/{alice_login}/reactivate", lambda s: {"reason": "搬回来了"},
        prepare=_deactivated("alice_login"), label="a recipient's login"),
    # applications to join a programme: things of their programme
    Row("GET", "/api/v1/programme-applications?per_page=500", **listed("application"), prepare=_apply),
    Row("POST", "/api/v1/programme-applications/{application}/accept", lambda s: {"reason": "资质齐全"},
        prepare=_apply),
    Row("POST", "/api/v1/programme-applications/{application}/refuse", lambda s: {"reason": "名额已满"},
        prepare=_apply),
    # settlements
    Row("GET", S + "?programme_id={programme}&per_page=500", **listed("settlement")),
    Row("GET", S + "/{settlement}"),
    Row("GET", S + "/{settlement}/statement.csv"),
    Row("GET", S + "/{settlement}/statement.xlsx"),
    Row("POST", S + "/{settlement}/approve"),
    Row("POST", S + "/{settlement}/pay", lambda s: {"payment_reference": "PAY-2026-0001"}, prepare=_approve),
    Row("DELETE", S + "/{settlement}", ok=(204,)),
    # the catalogue is shared by every region: no region-scoped admin may change it, inside or out
    Row("POST", "/api/v1/catalogue/items", lambda s: {"code": "HC-NEW", "name": "助洁", "category_code": "basic_public",
                                                      "unit": "次", "standard_price_fen": 3000, "nature": "service"},
        ok=(403,)),
    Row("PATCH", "/api/v1/catalogue/items/{meal}", lambda s: {"default_duration_minutes": 20}, ok=(403,)),
    # audit
    Row("GET", "/api/v1/audit?entity=recipient&entity_id={recipient}&per_page=500",
        **listed("recipient", field="entity_id")),
]

# Routes under /api/v1 without a row, each with the reason it needs none.
EXEMPT = {
    "GET /api/v1/audit/verify": "re-hashes the whole chain; answers counts and hashes, no region's objects",
    "POST /api/v1/auth/login": "authentication, no region-scoped object",
    "POST /api/v1/auth/logout": "authentication, no region-scoped object",
    "POST /api/v1/auth/token": "authentication, no region-scoped object",
    "DELETE /api/v1/auth/token": "authentication, no region-scoped object",
    "GET /api/v1/me": "the caller's own login",
    "POST /api/v1/me/presence-code": "recipients only, about themselves",
    "GET /api/v1/me/presence-code.png": "recipients only, about themselves",
    "GET /api/v1/catalogue/categories": "the catalogue is shared by every region (public)",
    "GET /api/v1/catalogue/items": "the catalogue is shared by every region (public)",
    "GET /api/v1/catalogue/negative-list": "the catalogue is shared by every region (public)",
    "GET /api/v1/health": "liveness, public",
    "GET /api/v1/health/ready": "readiness, public: checks with names and ok, no region's objects",
    # Flags need a planted flag this scenario does not build; each route is tested inside and outside the region
    # by tests/test_anomaly_flags.py::test_an_admin_of_another_region_neither_sees_nor_decides_the_programmes_flags.
    "GET /api/v1/anomalies": "tested in test_anomaly_flags.py (another region's admin lists nothing)",
    "GET /api/v1/anomalies/{id}": "tested in test_anomaly_flags.py (another region's admin: 403)",
    "POST /api/v1/anomalies/{id}/confirm": "tested in test_anomaly_flags.py (another region's admin: 403)",
    "POST /api/v1/anomalies/{id}/dismiss": "tested in test_anomaly_flags.py (another region's admin: 403)",
    "GET /api/v1/openapi.json": "API documentation, public",
    "GET /api/v1/docs": "API documentation, public",
    "GET /api/v1/docs/assets/{id}": "API documentation, public",
    "GET /api/v1/public/programmes": "public disclosure (信息公开), the same for everyone",
    "GET /api/v1/public/programmes/{id}": "public disclosure (信息公开), the same for everyone",
    "GET /api/v1/public/providers": "public disclosure (信息公开), the same for everyone",
    "GET /api/v1/public/settlements": "public disclosure (信息公开), the same for everyone",
    "GET /api/v1/rankings": "public ranking (优胜劣汰), the same for everyone",
    "POST /api/v1/redemptions": "providers only (a scan); admins cannot call it",
    "POST /api/v1/programmes/{id}/applications": "a provider's manager only, for its own provider; admins cannot "
                                                 "call it",
    "POST /api/v1/complaints/{id}/answer": "the complained-about provider's manager only; admins cannot call it",
}


PARAMS = [pytest.param(row, id=row.test_id, marks=[pytest.mark.xfail(strict=True, reason=row.gap)] if row.gap else [])
          for row in ROWS]


# --- the tests ---------------------------------------------------------------------------------------

def call(client, row: Row, s, headers, make_body=None):
    path = row.path.format(**vars(s))
    make_body = make_body or row.body
    body = make_body(s) if make_body else None
    if row.form:
        return client.open(path, method=row.method, data=body, headers=headers, content_type="multipart/form-data")
    return client.open(path, method=row.method, json=body, headers=headers)


def footprint(client, s, *, audit: bool) -> dict:
    """What an unscoped admin reads of the scenario: any change by a refused request shows here (every
    change of money, status or qualification extends the audit chain; money moves the ledger)."""
    paths = [f"{P}/{s.programme}/ledger", f"/api/v1/recipients/{s.recipient}/choices"]
    paths += [f"{base}?per_page=500" for base in (S, "/api/v1/recipients", "/api/v1/providers")]
    seen = {path: _ok(client.get(path, headers=s.root)) for path in paths}
    if audit:
        seen["audit events"] = _ok(client.get("/api/v1/audit/verify", headers=s.root))["events"]
    return seen


@pytest.mark.parametrize("row", PARAMS)
def test_outside_admin_is_refused_inside_admin_is_served(app, client, row):
    s = build_scenario(app, client, extended=row.extended)
    if row.prepare:
        row.prepare(client, s)
    refusal = row.out != 200  # a filtered answer (a list, an import) may still audit that it was asked
    before = footprint(client, s, audit=refusal)

    with call(client, row, s, getattr(s, row.outsider), row.out_body) as response:
        assert response.status_code == row.out, response.get_data(as_text=True)[:500]
        if refusal:
            assert response.get_json()["error"]["code"] == ("not_found" if row.out == 404 else "forbidden")
        else:
            assert row.out_json(response.get_json(), s), f"outside admin saw 510131: {response.get_json()}"
    assert footprint(client, s, audit=refusal) == before, "a refused request changed something"

    with call(client, row, s, s.inside) as response:
        assert response.status_code in row.ok, response.get_data(as_text=True)[:500]
        if row.in_json:
            assert row.in_json(response.get_json(), s), f"inside admin missed it: {response.get_json()}"


def test_every_route_has_a_row_or_an_exemption(app):
    """A new route under /api/v1 fails here until it gets a row in ROWS or a reason in EXEMPT."""
    routes = {f"{method} {re.sub(r'<[^>]+>', '{id}', rule.rule)}" for rule in app.url_map.iter_rules()
              if rule.rule.startswith("/api/v1/") for method in rule.methods - {"HEAD", "OPTIONS"}}
    covered = {row.route for row in ROWS}
    assert sorted(routes - covered - EXEMPT.keys()) == [], "routes with neither a row nor an exemption"
    assert sorted((covered | EXEMPT.keys()) - routes) == [], "rows or exemptions for routes that do not exist"
    assert covered.isdisjoint(EXEMPT), "a route both tested and exempted"
