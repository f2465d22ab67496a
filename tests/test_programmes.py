"""Programmes and budgets: creation rules, activation (docs/domain.md, rule 1), closing, amendments, ledger,
reconciliation."""

import pytest
from sqlalchemy import text

from marketplace.db import db, transaction, utcnow
from marketplace.programmes import ledger
from marketplace.signals import programme_closed
from tests.conftest import error_code, programme_payload


@pytest.fixture
def admin_headers(make_user, auth):
    return auth(make_user(role="admin"))


@pytest.fixture
def item_code(make_item):
    return make_item(code="HC-MEAL").code


def create(client, headers, payload):
    return client.post("/api/v1/programmes", json=payload, headers=headers)


def test_admin_creates_a_draft_programme(client, admin_headers, item_code):
    response = create(client, admin_headers, programme_payload([item_code]))
    assert response.status_code == 201
    body = response.get_json()
    assert body["status"] == "draft"
    assert body["items"] == [{"item_code": "HC-MEAL", "unit_price_fen": 1200, "monthly_quota": 4,
                              "min_duration_minutes": None}]
    assert body["anomaly_parameters"] is None
    assert body["settlement_rules"][0] == {"min_score": 0, "pay_percent": 60}
    ledger_body = client.get(f"/api/v1/programmes/{body['id']}/ledger", headers=admin_headers).get_json()
    assert ledger_body == {"allocated_fen": 0, "committed_fen": 0, "redeemed_fen": 0, "settled_fen": 0,
                           "released_fen": 0, "available_fen": 0, "deducted_fen": 0}


@pytest.mark.parametrize(("overrides", "field"), [
    ({"ends_on": "2025-12-31"}, "ends_on"),
    ({"ends_on": "2035-01-01"}, "ends_on"),
    ({"region_code": "5101"}, "region_code"),
    ({"region_code": "990101"}, "region_code"),
    ({"reserved_share_percent": 101}, "reserved_share_percent"),
    ({"copay_percent": {"default": -1}}, "copay_percent"),
    ({"copay_percent": {"low_income": 5}}, "copay_percent"),
    ({"copay_percent": {"default": 10, "rich": 5}}, "copay_percent"),
    ({"eligibility": {"min_age": 200}}, "eligibility"),
    ({"eligibility": {"tags_any": ["famous"]}}, "eligibility"),
    ({"items": []}, "items"),
    ({"items": [{"item_code": "NOPE", "unit_price_fen": 100, "monthly_quota": 1}]}, "items"),
    ({"items": [{"item_code": "HC-MEAL", "unit_price_fen": 0, "monthly_quota": 1}]}, "items"),
    ({"items": [{"item_code": "HC-MEAL", "unit_price_fen": 100, "monthly_quota": 0}]}, "items"),
    ({"items": [{"item_code": "HC-MEAL", "unit_price_fen": 100, "monthly_quota": 1000}]}, "items"),
    ({"items": [{"item_code": "HC-MEAL", "unit_price_fen": 100, "monthly_quota": 1}] * 2}, "items"),
    ({"settlement_rules": []}, "settlement_rules"),
    ({"settlement_rules": [{"min_score": 50, "pay_percent": 100}]}, "settlement_rules"),
    ({"settlement_rules": [{"min_score": 0, "pay_percent": 100}, {"min_score": 80, "pay_percent": 50}]},
     "settlement_rules"),
    ({"settlement_rules": [{"min_score": 0, "pay_percent": 50}, {"min_score": 0, "pay_percent": 60}]},
     "settlement_rules"),
    ({"settlement_rules": [{"min_score": 0, "pay_percent": 150}]}, "settlement_rules"),
    ({"rating_window_days": 0}, "rating_window_days"),
    ({"reversal_window_hours": -1}, "reversal_window_hours"),
])
def test_a_programme_that_breaks_a_rule_is_refused_naming_the_field(client, admin_headers, item_code, overrides,
                                                                     field):
    response = create(client, admin_headers, programme_payload([item_code], **overrides))
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]["fields"]
    assert client.get("/api/v1/programmes", headers=admin_headers).get_json()["total"] == 0


def test_listing_and_reading_follow_roles_and_region_scope(client, make_user, auth, make_programme):
    inside = make_programme(region_code="510131")
    city_wide = make_programme(region_code="510100")
    elsewhere = make_programme(region_code="310101")
    admin, auditor = auth(make_user(role="admin")), auth(make_user(role="auditor"))
    county = auth(make_user(role="admin", region_code="510131"))
    city = auth(make_user(role="admin", region_code="5101"))

    def ids(headers):
        return [p["id"] for p in client.get("/api/v1/programmes", headers=headers).get_json()["items"]]

    assert ids(admin) == ids(auditor) == [inside.id, city_wide.id, elsewhere.id]
    assert ids(county) == [inside.id]
    assert ids(city) == [inside.id, city_wide.id]
    assert client.get(f"/api/v1/programmes/{elsewhere.id}", headers=county).status_code == 403
    assert client.get(f"/api/v1/programmes/{city_wide.id}", headers=county).status_code == 403
    assert client.get(f"/api/v1/programmes/{inside.id}", headers=county).status_code == 200
    assert client.get("/api/v1/programmes/99999", headers=admin).status_code == 404
    assert client.get("/api/v1/programmes").status_code == 401
    out_of_scope_budget = client.post(f"/api/v1/programmes/{elsewhere.id}/budget", headers=county,
                                      json={"amount_fen": 100, "reason": "not mine"})
    assert out_of_scope_budget.status_code == 403


def test_a_scoped_admin_cannot_create_a_programme_outside_the_region(client, make_user, auth, item_code):
    county = auth(make_user(role="admin", region_code="510131"))
    response = create(client, county, programme_payload([item_code], region_code="310101"))
    assert response.status_code == 403
    assert create(client, county, programme_payload([item_code])).status_code == 201


def test_auditors_cannot_change_programmes(client, make_user, auth, item_code, make_programme):
    auditor = auth(make_user(role="auditor"))
    assert create(client, auditor, programme_payload([item_code])).status_code == 403
    programme = make_programme(budget_fen=1000)
    assert client.post(f"/api/v1/programmes/{programme.id}/activate", headers=auditor).status_code == 403


def test_no_budget_no_activation(client, admin_headers, make_programme):
    programme = make_programme()
    response = client.post(f"/api/v1/programmes/{programme.id}/activate", headers=admin_headers)
    assert response.status_code == 409
    assert error_code(response) == "no_budget"
    budget = client.post(f"/api/v1/programmes/{programme.id}/budget", headers=admin_headers,
                         json={"amount_fen": 500_000, "reason": "2026 appropriation"})
    assert budget.status_code == 200
    assert budget.get_json()["allocated_fen"] == 500_000
    activated = client.post(f"/api/v1/programmes/{programme.id}/activate", headers=admin_headers)
    assert activated.status_code == 200
    assert activated.get_json()["status"] == "active"
    again = client.post(f"/api/v1/programmes/{programme.id}/activate", headers=admin_headers)
    assert again.status_code == 409
    assert error_code(again) == "invalid_transition"


def test_a_budget_fully_taken_back_leaves_nothing_to_activate_with(client, admin_headers, make_programme):
    programme = make_programme(budget_fen=1000)
    back = client.post(f"/api/v1/programmes/{programme.id}/budget", headers=admin_headers,
                       json={"amount_fen": -1000, "reason": "budget withdrawn"})
    assert back.status_code == 200
    assert error_code(client.post(f"/api/v1/programmes/{programme.id}/activate", headers=admin_headers)) == "no_budget"


def test_a_reduction_may_not_go_below_what_is_committed(client, app, admin_headers, make_programme):
    programme = make_programme(budget_fen=10_000, activate=True)
    with app.app_context(), transaction():
        ledger.commit_budget(programme_id=programme.id, amount_fen=7_000, now=utcnow())
    too_much = client.post(f"/api/v1/programmes/{programme.id}/budget", headers=admin_headers,
                           json={"amount_fen": -3_001, "reason": "cut"})
    assert too_much.status_code == 409
    assert error_code(too_much) == "budget_below_committed"
    assert too_much.get_json()["error"]["details"]["available_fen"] == 3_000
    exact = client.post(f"/api/v1/programmes/{programme.id}/budget", headers=admin_headers,
                        json={"amount_fen": -3_000, "reason": "cut to the bone"})
    assert exact.status_code == 200
    assert exact.get_json() == {"allocated_fen": 7_000, "committed_fen": 7_000, "redeemed_fen": 0, "settled_fen": 0,
                                "released_fen": 0, "available_fen": 0, "deducted_fen": 0}


@pytest.mark.parametrize("body", [{"amount_fen": 0, "reason": "nothing"}, {"amount_fen": 100},
                                  {"amount_fen": 1.5, "reason": "fraction"}, {"amount_fen": 10**13, "reason": "big"},
                                  {"amount_fen": 100, "reason": ""}])
def test_a_malformed_amendment_is_refused(client, admin_headers, make_programme, body):
    programme = make_programme()
    response = client.post(f"/api/v1/programmes/{programme.id}/budget", headers=admin_headers, json=body)
    assert response.status_code == 422
    assert client.get(f"/api/v1/programmes/{programme.id}/ledger", headers=admin_headers).get_json()[
        "allocated_fen"] == 0


def test_closing_sends_the_signal_once_and_refuses_later_changes(client, admin_headers, make_programme):
    programme = make_programme(budget_fen=1000, activate=True)
    received = []

    def receiver(sender, **kwargs):
        received.append((sender.id, kwargs["actor"].username))

    programme_closed.connect(receiver)
    try:
        response = client.post(f"/api/v1/programmes/{programme.id}/close", headers=admin_headers)
    finally:
        programme_closed.disconnect(receiver)
    assert response.status_code == 200
    assert response.get_json()["status"] == "closed"
    assert [sender for sender, _ in received] == [programme.id]
    again = client.post(f"/api/v1/programmes/{programme.id}/close", headers=admin_headers)
    assert error_code(again) == "invalid_transition"
    more = client.post(f"/api/v1/programmes/{programme.id}/budget", headers=admin_headers,
                       json={"amount_fen": 100, "reason": "too late"})
    assert more.status_code == 409
    assert error_code(more) == "programme_closed"


def test_every_budget_change_is_audited(client, admin_headers, make_programme):
    programme = make_programme()
    client.post(f"/api/v1/programmes/{programme.id}/budget", headers=admin_headers,
                json={"amount_fen": 2500, "reason": "supplementary appropriation"})
    client.post(f"/api/v1/programmes/{programme.id}/activate", headers=admin_headers)
    events = client.get(f"/api/v1/audit?entity=programme&entity_id={programme.id}", headers=admin_headers).get_json()
    actions = [event["action"] for event in events["items"]]
    assert actions == ["programme.activated", "programme.budget_amended", "programme.created"]
    assert events["items"][1]["data"]["reason"] == "supplementary appropriation"


def test_the_ledger_checks_hold_after_raw_movements(client, app, admin_headers, make_programme):
    programme = make_programme(budget_fen=50_000, activate=True)
    with app.app_context(), transaction():
        ledger.commit_budget(programme_id=programme.id, amount_fen=20_000, now=utcnow())
        ledger.release_commitment(programme_id=programme.id, amount_fen=5_000, now=utcnow())
    # Raw commitments have no vouchers behind them, so only the vouchers domain's check objects.
    assert failed_checks(client, admin_headers, programme.id) == (False, {"committed_matches_issued_vouchers"})
    body = client.get(f"/api/v1/programmes/{programme.id}/reconciliation", headers=admin_headers).get_json()
    assert {check["name"] for check in body["checks"]} >= {
        "journal_entries_balanced", "guarded_available_matches_journal", "allocated_matches_amendments",
        "available_not_negative"}
    balances = client.get(f"/api/v1/programmes/{programme.id}/ledger", headers=admin_headers).get_json()
    assert balances == {"allocated_fen": 50_000, "committed_fen": 15_000, "redeemed_fen": 0, "settled_fen": 0,
                        "released_fen": 5_000, "available_fen": 35_000, "deducted_fen": 0}


def failed_checks(client, headers, programme_id):
    body = client.get(f"/api/v1/programmes/{programme_id}/reconciliation", headers=headers).get_json()
    return body["ok"], {check["name"] for check in body["checks"] if not check["ok"]}


def test_reconciliation_names_a_tampered_guarded_balance(client, app, admin_headers, make_programme):
    programme = make_programme(budget_fen=50_000)
    with app.app_context(), transaction():
        db.session.execute(text("UPDATE programme_budget SET available_fen = available_fen + 1"))
    assert failed_checks(client, admin_headers, programme.id) == (False, {"guarded_available_matches_journal"})


def test_reconciliation_names_an_unbalanced_journal_line(client, app, admin_headers, make_programme):
    programme = make_programme(budget_fen=50_000)
    with app.app_context(), transaction():
        db.session.execute(text("UPDATE journal_line SET amount_fen = amount_fen - 7 WHERE account = 'funding'"))
    ok, failed = failed_checks(client, admin_headers, programme.id)
    assert not ok
    assert "journal_entries_balanced" in failed
    assert "allocated_matches_amendments" in failed


def test_reconciliation_names_a_tampered_amendment(client, app, admin_headers, make_programme):
    programme = make_programme(budget_fen=50_000)
    with app.app_context(), transaction():
        db.session.execute(text("UPDATE budget_amendment SET amount_fen = 60000"))
    ok, failed = failed_checks(client, admin_headers, programme.id)
    assert (ok, failed) == (False, {"allocated_matches_amendments", "allocation_entries_match_amendments"})
