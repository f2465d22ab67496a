"""Privacy: after a full scenario, no valid ID number, password or login token is anywhere in the
database (every row of every table, on both backends; on SQLite also the raw file and its WAL) or in
the logs; and no console page, for any role, shows a recipient's personal data to someone who may not
see it (public pages: nobody's, not even a provider's contact person)."""

import html
import io
import json
import random
import re

import pytest
from sqlalchemy import MetaData, select

from marketplace.auth.models import User
from marketplace.db import db
from marketplace.demo import demo_recipient
from marketplace.recipients.idnumber import check_character
from providers.service import applications
from tests.conftest import PASSWORD
from tests.support.console import login_page
from vouchers.models import AnomalyFlag, AnomalyFlagRedemption, Redemption

ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")


def valid_id_numbers(text: str) -> set[str]:
    return {match for match in ID_NUMBER.findall(text) if check_character(match[:17]) == match[17].upper()}


def database_text(app) -> str:
    with app.app_context():
        metadata = MetaData()
        metadata.reflect(bind=db.engine)
        parts = []
        with db.engine.connect() as connection:
            for table in metadata.sorted_tables:
                for row in connection.execute(select(table)):
                    parts.append(" ".join(str(value) for value in row))
        return "\n".join(parts)


def test_no_id_number_password_or_token_is_stored_or_logged(app, client, make_user, auth, caplog, capfd):
    caplog.set_level("DEBUG")
    admin = make_user()
    headers = auth(admin)
    rng = random.Random(11)
    people = [demo_recipient(index, rng) for index in range(6)]
    for person in people[:3]:
        assert client.post("/api/v1/recipients", json=person, headers=headers).status_code == 201
    rows = "\n".join(",".join([p["name"], p["id_number"], p["phone"] or "", p["region_code"], p["address"],
                               ";".join(p["tags"])]) for p in people[3:])
    upload = io.BytesIO(("name,id_number,phone,region_code,address,tags\n" + rows + "\n").encode())
    imported = client.post("/api/v1/recipients/import", data={"file": (upload, "people.csv")}, headers=headers,
                           content_type="multipart/form-data")
    assert imported.get_json()["created"] == 3
    # Refusals must not leak the number either: a duplicate, and a number with a wrong check character.
    assert client.post("/api/v1/recipients", json=people[0], headers=headers).status_code == 409
    broken = {**people[1], "id_number": people[1]["id_number"][:17] + ("0" if people[1]["id_number"][17] != "0"
                                                                       else "1")}
    assert client.post("/api/v1/recipients", json=broken, headers=headers).status_code == 422
    account = client.post("/api/v1/recipients/1/account", json={"username": "privacy-resident",
                                                               "password": "resident secret 42"}, headers=headers)
    assert account.status_code == 201
    login = client.post("/api/v1/auth/token", json={"username": "privacy-resident", "password": "resident secret 42"})
    token = login.get_json()["token"]
    cookie_login = client.post("/api/v1/auth/login", json={"username": admin.username, "password": PASSWORD})
    csrf = cookie_login.get_json()["csrf_token"]
    client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    client.post("/api/v1/auth/token", json={"username": "privacy-resident", "password": "wrong password!"})

    secrets = {"resident secret 42", PASSWORD, "wrong password!", token, csrf, headers["Authorization"][7:]}
    stored = database_text(app)
    if app.config["DATABASE_URL"].startswith("sqlite:///"):
        path = app.config["DATABASE_URL"].removeprefix("sqlite:///")
        for suffix in ("", "-wal"):
            try:
                with open(path + suffix, "rb") as handle:
                    stored += handle.read().decode("utf-8", "replace")
            except FileNotFoundError:
                pass
    logged = caplog.text + "".join(capfd.readouterr())
    for where, text in (("database", stored), ("logs", logged)):
        assert valid_id_numbers(text) == set(), where
        assert [secret for secret in secrets if secret in text] == [], where
    # The masked forms are there, which shows the scan saw the recipients at all.
    assert people[0]["id_number"][:6] + "********" + people[0]["id_number"][-4:] in stored


def test_the_json_logs_carry_no_personal_data_whatever_the_requests_carried(app, client, build, json_logs):
    """Production's logs (JSON, from DEBUG up) while requests carry ID numbers, names, phones, passwords,
    tokens and short codes in their bodies, query strings and headers: none of it is written."""
    admin = build.admin()
    headers = build.headers(admin)
    people = [demo_recipient(index, random.Random(29)) for index in range(3)]
    for person in people[:2]:
        assert client.post("/api/v1/recipients", json=person, headers=headers).status_code == 201
    assert client.post("/api/v1/recipients", json=people[0], headers=headers).status_code == 409
    wrong = "0" if people[2]["id_number"][17] != "0" else "1"
    assert client.post("/api/v1/recipients", json={**people[2], "id_number": people[2]["id_number"][:17] + wrong},
                       headers=headers).status_code == 422
    assert client.post("/api/v1/recipients/lookup", json={"id_number": people[1]["id_number"]},
                       headers=headers).status_code == 200
    for query in (people[0]["name"], people[1]["phone"], people[2]["id_number"]):
        assert client.get("/api/v1/recipients", query_string={"q": query}, headers=headers).status_code == 200
    assert login_page(client, admin.username, PASSWORD).status_code == 302
    assert client.get("/staff/recipients", query_string={"q": people[0]["name"]}).status_code == 200
    client.post("/api/v1/auth/token", json={"username": admin.username, "password": "wrong password!"})

    world = build.world()
    build.issue(world.programme, build.period())
    build.choose_all(world, world.p1)
    provider = build.headers(world.p1.user)
    alice = build.headers(world.alice.user)
    code = client.post("/api/v1/me/presence-code", headers=alice).get_json()
    assert client.post("/api/v1/redemptions", json={"short_code": code["short_code"], "item_code": world.meal},
                       headers=provider).status_code == 201
    assert client.post("/api/v1/redemptions", json={"presence_token": code["token"], "item_code": world.meal},
                       headers=provider).status_code == 409
    other = f"{(int(code['short_code']) + 50_000_000) % 100_000_000:08d}"
    assert client.post("/api/v1/redemptions", json={"short_code": other, "item_code": world.meal},
                       headers=provider).status_code == 422
    assert client.get("/api/v1/me/presence-code.png", query_string={"token": code["token"]},
                      headers=alice).status_code in (200, 404)

    lines = json_logs()
    written = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines)
    secrets = {PASSWORD, "wrong password!", code["token"], code["short_code"], other, *(value[7:] for value in (
        headers["Authorization"], provider["Authorization"], alice["Authorization"]))}
    for person in people:
        secrets |= {person["name"], person["id_number"], person["phone"], person["address"]}
    assert valid_id_numbers(written) == set()
    assert sorted(secret for secret in secrets if secret and secret in written) == []
    # The capture saw the requests: an access line each, by URL rule.
    routes = {line.get("route") for line in lines if line["logger"] == "marketplace.access"}
    assert {"/api/v1/recipients", "/api/v1/recipients/lookup", "/api/v1/redemptions", "/staff/recipients",
            "/login"} <= routes


# --- every console page, for every role -------------------------------------------------------------
#
# The pages are discovered from the app's URL map, so a page added later is walked too; its path
# arguments are filled from the scenario (PAGE_ARGUMENTS: a new kind of argument needs a line there).
#
# Who may see what of a recipient (never the full ID number, which is not even stored):
#   anonymous          nothing — no recipient's name, phone or masked ID; no provider's contact person or phone
#   recipient          their own name, phone and masked ID; nothing of anyone else
#   provider staff     name and phone of the provider's own clients (who chose it); no masked ID
#   admin, auditor     name, phone and masked ID of recipients in their region (an unscoped one: everyone)
# Logged-in viewers may see providers' contacts (the registry shows them to every logged-in actor).

OUTSIDE_REGION = "510132"  # the scenario's programme and the county admin's scope are 510131


def _spaced_phones(phone: str) -> set[str]:
    """A phone as written and as pages might format it: 139 1234 5678, 139-1234-5678."""
    if len(phone) != 11:
        return {phone}
    return {phone, f"{phone[:3]} {phone[3:7]} {phone[7:]}", f"{phone[:3]}-{phone[3:7]}-{phone[7:]}"}


def personal_data(recipient) -> dict[str, set[str]]:
    """What identifies *recipient*, by kind."""
    return {"name": {recipient.name}, "phone": _spaced_phones(recipient.phone),
            "masked_id": {recipient.id_number_masked}, "id_number": {recipient.id_number}}


def found_in(text: str, values: set[str]) -> bool:
    return any(value in text for value in values)


@pytest.fixture
def walk_scene(build):
    """The full scenario, one recipient outside the programme's region (with a login), and a login for
    every kind of viewer."""
    full = build.full_scenario()
    outsider = build.recipient(name="端木桂香", phone="13711112222", region_code=OUTSIDE_REGION, login=True)
    complaint = build.complain(full.providers[1], redemption=full.settled)  # r0's bath by p2
    viewers = {
        "anonymous": None,
        "recipient": full.recipients[0].user,
        "provider": full.providers[0].user,
        "admin": full.approver,
        "county_admin": build.admin(region_code="510131"),
        "auditor": build.auditor(),
    }
    staff = build.user(role="provider", provider_id=full.providers[0].id)  # a scanning login of p1
    newcomer = build.provider(items=[full.meal])  # applies to join the programme (the staff programme pages)
    application = build.run(lambda: applications.apply(programme_id=full.programme, note=None, actor=db.session.get(
        User, newcomer.user.id), now=build.now()).id)
    flag = build.run(lambda: _planted_flag(full))  # a market-integrity flag about two of its services
    return {"full": full, "outsider": outsider, "complaint": complaint, "viewers": viewers, "staff": staff,
            "application": application, "flag": flag}


def _planted_flag(full) -> int:
    redemptions = [db.session.get(Redemption, r.id) for r in (full.settled, full.unsettled)]
    flag = AnomalyFlag(programme_id=full.programme, period=f"{redemptions[0].delivered_at:%Y-%m}",
                       rule="short_duration", severity="low", subject=f"provider:{redemptions[0].provider_id}",
                       provider_id=redemptions[0].provider_id, status="confirmed", created_at=redemptions[0].created_at,
                       evidence={"count": 2, "min_minutes": 30, "shortest": 5})
    db.session.add(flag)
    db.session.flush()
    for redemption in redemptions:
        db.session.add(AnomalyFlagRedemption(flag_id=flag.id, redemption_id=redemption.id))
    return flag.id


def allowed_kinds(viewer: str, recipient, scene) -> set[str]:
    """The kinds of *recipient*'s personal data that *viewer* may see (the table above)."""
    full = scene["full"]
    if viewer == "recipient":
        return {"name", "phone", "masked_id"} if recipient.id == full.recipients[0].id else set()
    if viewer == "provider":
        clients = {r.id for r in full.recipients}  # every recipient of the scenario chose p1 for an item
        return {"name", "phone"} if recipient.id in clients else set()
    if viewer in ("admin", "auditor"):
        return {"name", "phone", "masked_id"}
    if viewer == "county_admin":
        return {"name", "phone", "masked_id"} if recipient.id != scene["outsider"].id else set()
    return set()


def page_arguments(scene) -> dict[str, list]:
    """Values for each path argument of a page: every value listed is visited."""
    full = scene["full"]
    return {
        "programme_id": [full.programme],
        "provider_id": [provider.id for provider in full.providers],
        "recipient_id": [full.recipients[0].id, full.recipients[1].id, scene["outsider"].id],
        "item_code": [full.meal, full.bath],
        "settlement_id": [full.paid, full.approved, full.draft],
        "complaint_id": [scene["complaint"]],
        "redemption_id": [full.settled.id, full.unsettled.id],
        "voucher_id": [full.issued_voucher],
        "user_id": [scene["staff"].id, full.providers[1].user.id, full.recipients[0].user.id],
        "application_id": [scene["application"]],
        "flag_id": [scene["flag"]],
    }


# Query strings worth visiting beyond the bare page ({meal}, {bath}: the items; {p1}…{p3}: the providers).
CHOICES = ["?provider_id={p1}", "?provider_id={p2}", "?provider_id={p3}"]
PAGE_QUERIES = {"/public/rankings": ["?item_code={meal}", "?item_code={bath}&region_code=510131"],
                "/public/providers": ["?page=1"],
                "/me/providers/<item_code>/choose": CHOICES,
                "/staff/recipients/<int:recipient_id>/act/providers/<item_code>/choose": CHOICES}
NOT_PAGES = {"static_files.serve", "web.preferences",  # files; a redirect that sets a preference
             "metrics.scrape"}  # Prometheus text (labels are routes and codes; its access: test_metrics.py)


def console_pages(app, scene) -> list[str]:
    """Every GET page of the console (not /api/), its arguments filled from the scene."""
    arguments = page_arguments(scene)
    full = scene["full"]
    urls = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.rule.startswith("/api/") or rule.endpoint in NOT_PAGES:
            continue
        unknown = sorted(set(rule.arguments) - set(arguments))
        assert not unknown, f"{rule.rule}: add values for {unknown} to page_arguments() in tests/test_privacy.py"
        paths = [rule.rule]
        for name in sorted(rule.arguments):
            paths = [re.sub(rf"<(?:[a-z]+:)?{name}>", str(value), path) for path in paths
                     for value in arguments[name]]
        for path in paths:
            urls.append(path)
            urls.extend(path + query.format(meal=full.meal, bath=full.bath, p1=full.providers[0].id,
                                            p2=full.providers[1].id, p3=full.providers[2].id)
                        for query in PAGE_QUERIES.get(rule.rule, []))
    return urls


def test_the_leak_search_finds_what_it_looks_for(walk_scene):
    r0 = walk_scene["full"].recipients[0]
    data = personal_data(r0)
    page = f"<td>{r0.name}</td><td>{r0.phone[:3]} {r0.phone[3:7]} {r0.phone[7:]}</td><td>{r0.id_number_masked}</td>"
    assert [kind for kind, values in data.items() if found_in(page, values)] == ["name", "phone", "masked_id"]
    assert valid_id_numbers(f"<p>{r0.id_number}</p>") == {r0.id_number}


def test_no_console_page_shows_personal_data_to_someone_who_may_not_see_it(app, walk_scene):
    full, outsider = walk_scene["full"], walk_scene["outsider"]
    people = [*full.recipients, outsider]
    contacts = {value for provider in full.providers
                for value in (provider.legal_representative, provider.phone, provider.phone.replace("-", ""))}
    urls = console_pages(app, walk_scene)
    answered: dict[str, dict[str, int]] = {}
    problems = []
    for viewer, user in walk_scene["viewers"].items():
        client = app.test_client()
        if user is not None:
            assert login_page(client, user.username, PASSWORD).status_code == 302, viewer
        answered[viewer] = {}
        for url in urls:
            response = client.get(url)
            assert response.status_code < 500, (viewer, url, response.status_code)
            answered[viewer][url] = response.status_code
            shown_as_text = response.mimetype.startswith("text/")
            text = html.unescape(response.get_data(as_text=True)) if shown_as_text else ""
            response.close()  # a download (an XLSX statement) lets go of its temporary file
            if not shown_as_text:
                continue
            if valid_id_numbers(text):
                problems.append((viewer, url, "a full ID number"))
            for person in people:
                shown = {kind for kind, values in personal_data(person).items() if found_in(text, values)}
                for kind in sorted(shown - allowed_kinds(viewer, person, walk_scene)):
                    problems.append((viewer, url, f"{kind} of recipient {person.id}"))
            if viewer == "anonymous" and found_in(text, contacts):
                problems.append((viewer, url, "a provider's contact person or phone"))
    assert problems == []

    # The walk saw the pages: every public page answered everyone, each role reached its home.
    public = ["/", "/public/providers", "/public/rankings", "/public/catalogue",
              f"/public/programmes/{full.programme}"]
    for viewer in walk_scene["viewers"]:
        assert all(answered[viewer][url] == 200 for url in public), (viewer, answered[viewer])
    assert answered["admin"]["/staff"] == answered["auditor"]["/staff"] == 200
    assert answered["anonymous"]["/staff"] == 302
