"""A programme's own thresholds for the market-integrity rules (`anomaly_parameters`, both databases): given when
the programme is created or replaced later with PUT /api/v1/programmes/{id}/anomaly-parameters (an admin in
scope, with a reason, audited), checked against the one rule table (marketplace.programmes.integrity), shown in
the programme's output; and docs/market-integrity.md, generated from that table, is current."""

import difflib
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from marketplace.audit.models import AuditEvent
from marketplace.db import db
from marketplace.programmes import integrity
from marketplace.programmes.cli import PAGE_PATH, REGENERATE, render_page
from marketplace.programmes.models import Programme
from tests.conftest import error_code, programme_payload

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROGRAMMES = "/api/v1/programmes"


@pytest.fixture
def admin_headers(build):
    return build.headers(build.admin())


@pytest.fixture
def meal(build):
    return build.item(name="助餐")


def _url(programme) -> str:
    return f"{PROGRAMMES}/{programme.id}/anomaly-parameters"


def _stored(build, programme) -> dict | None:
    return build.read(lambda: db.session.get(Programme, programme.id).anomaly_parameters)


def _set_events(build) -> list[dict]:
    return build.read(lambda: [json.loads(event.data) for event in db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "programme.anomaly_parameters_set").order_by(AuditEvent.id))])


def _programme_count(build) -> int:
    return build.read(lambda: db.session.scalar(select(func.count()).select_from(Programme)))


# Each a body's `anomaly_parameters` that the rule table refuses, and the field the refusal names.
REFUSED = [
    ({"no_such_rule": {}}, "anomaly_parameters.no_such_rule"),
    ({"month_end_burst": {"no_such_parameter": 1}}, "anomaly_parameters.month_end_burst.no_such_parameter"),
    ({"month_end_burst": {"z_threshold": -0.5}}, "anomaly_parameters.month_end_burst.z_threshold"),
    ({"month_end_burst": {"z_threshold": "3"}}, "anomaly_parameters.month_end_burst.z_threshold"),
    ({"month_end_burst": {"z_threshold": True}}, "anomaly_parameters.month_end_burst.z_threshold"),
    ({"month_end_burst": {"z_threshold": None}}, "anomaly_parameters.month_end_burst.z_threshold"),
    ({"month_end_burst": {"z_threshold": 1_000_001}}, "anomaly_parameters.month_end_burst.z_threshold"),
    ({"month_end_burst": {"last_days": 2.5}}, "anomaly_parameters.month_end_burst.last_days"),
    ({"month_end_burst": 4}, "anomaly_parameters.month_end_burst"),
]


# --- at creation ------------------------------------------------------------------------------------------

def test_a_programme_is_created_with_its_own_thresholds_and_shows_them(build, client, admin_headers, meal):
    overrides = {"month_end_burst": {"z_threshold": 4, "last_days": 5}, "typed_code_share": {"max_share_percent": 40}}
    created = client.post(PROGRAMMES, json=programme_payload([meal], anomaly_parameters=overrides),
                          headers=admin_headers)
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["anomaly_parameters"] == overrides
    assert client.get(f"{PROGRAMMES}/{body['id']}", headers=admin_headers).get_json()["anomaly_parameters"] == overrides
    stored = build.read(lambda: db.session.get(Programme, body["id"]).anomaly_parameters)
    assert integrity.parameters_for(stored, "month_end_burst") == {"last_days": 5, "z_threshold": 4,
                                                                   "min_services": 20}
    assert integrity.parameters_for(stored, "over_capacity") == {"tolerance_percent": 0}  # untouched: defaults


@pytest.mark.parametrize("given", [None, {}])
def test_without_thresholds_a_programme_takes_every_default(client, admin_headers, meal, given):
    payload = programme_payload([meal]) if given is None else programme_payload([meal], anomaly_parameters=given)
    created = client.post(PROGRAMMES, json=payload, headers=admin_headers)
    assert created.status_code == 201
    assert created.get_json()["anomaly_parameters"] is None


@pytest.mark.parametrize(("given", "field"), REFUSED)
def test_thresholds_the_rule_table_does_not_know_are_refused_and_nothing_is_created(build, client, admin_headers,
                                                                                    meal, given, field):
    refused = client.post(PROGRAMMES, json=programme_payload([meal], anomaly_parameters=given), headers=admin_headers)
    assert refused.status_code == 422
    assert error_code(refused) == "validation_error"
    assert field in refused.get_json()["error"]["details"]["fields"]
    assert _programme_count(build) == 0


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_not_a_number_and_infinity_are_refused(build, client, admin_headers, meal, number):
    """Python's JSON reader accepts them; neither the JSON column nor the rules' SQL could use them."""
    text = json.dumps(programme_payload([meal], anomaly_parameters={"month_end_burst": {"z_threshold": 0}}))
    text = text.replace('"z_threshold": 0', f'"z_threshold": {number}')
    refused = client.post(PROGRAMMES, data=text, headers={**admin_headers, "Content-Type": "application/json"})
    assert refused.status_code in (400, 422)
    assert _programme_count(build) == 0


def test_every_refusal_is_named_at_once(client, admin_headers, meal):
    given = {"month_end_burst": {"z_threshold": -1, "last_days": 1.5}, "nope": {}}
    fields = client.post(PROGRAMMES, json=programme_payload([meal], anomaly_parameters=given),
                         headers=admin_headers).get_json()["error"]["details"]["fields"]
    assert {"anomaly_parameters.month_end_burst.z_threshold", "anomaly_parameters.month_end_burst.last_days",
            "anomaly_parameters.nope"} <= set(fields)


# --- changed later ------------------------------------------------------------------------------------------

def test_an_admin_replaces_the_thresholds_with_a_reason_and_the_change_is_audited(build, client, admin_headers, meal):
    programme = build.programme(items=[meal], anomaly_parameters={"over_capacity": {"tolerance_percent": 10}})
    new = {"month_end_burst": {"z_threshold": 5}}
    answer = client.put(_url(programme), json={"anomaly_parameters": new, "reason": "本县机构少，放宽阈值"},
                        headers=admin_headers)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["anomaly_parameters"] == new  # replaced, not merged
    assert answer.get_json()["id"] == programme.id
    assert _stored(build, programme) == new
    assert _set_events(build) == [{"from": {"over_capacity": {"tolerance_percent": 10}}, "to": new,
                                   "reason": "本县机构少，放宽阈值"}]


@pytest.mark.parametrize("reset", [None, {}])
def test_null_or_an_empty_object_restores_every_default(build, client, admin_headers, meal, reset):
    programme = build.programme(items=[meal], anomaly_parameters={"month_end_burst": {"z_threshold": 5}})
    answer = client.put(_url(programme), json={"anomaly_parameters": reset, "reason": "恢复默认"},
                        headers=admin_headers)
    assert answer.status_code == 200
    assert answer.get_json()["anomaly_parameters"] is None
    assert _stored(build, programme) is None
    assert _set_events(build)[-1]["to"] is None


def test_the_same_thresholds_again_change_nothing_and_leave_no_event(build, client, admin_headers, meal):
    same = {"month_end_burst": {"z_threshold": 5}}
    programme = build.programme(items=[meal], anomaly_parameters=same)
    assert client.put(_url(programme), json={"anomaly_parameters": same, "reason": "核对"},
                      headers=admin_headers).status_code == 200
    assert _set_events(build) == []


@pytest.mark.parametrize(("given", "field"), REFUSED)
def test_a_refused_change_leaves_the_thresholds_as_they_were(build, client, admin_headers, meal, given, field):
    before = {"month_end_burst": {"z_threshold": 5}}
    programme = build.programme(items=[meal], anomaly_parameters=before)
    refused = client.put(_url(programme), json={"anomaly_parameters": given, "reason": "调整阈值"},
                         headers=admin_headers)
    assert refused.status_code == 422
    assert field in refused.get_json()["error"]["details"]["fields"]
    assert _stored(build, programme) == before
    assert _set_events(build) == []


@pytest.mark.parametrize("body", [{"anomaly_parameters": {}}, {"reason": "调整阈值"},
                                  {"anomaly_parameters": {}, "reason": " "},
                                  {"anomaly_parameters": [], "reason": "调整"}])
def test_a_change_needs_the_thresholds_and_a_reason(build, client, admin_headers, meal, body):
    programme = build.programme(items=[meal], anomaly_parameters={"month_end_burst": {"z_threshold": 5}})
    refused = client.put(_url(programme), json=body, headers=admin_headers)
    assert refused.status_code == 422
    assert _stored(build, programme) == {"month_end_burst": {"z_threshold": 5}}


def test_only_an_admin_whose_region_holds_the_programme_changes_the_thresholds(build, client, meal):
    programme = build.programme(items=[meal])
    body = {"anomaly_parameters": {"month_end_burst": {"z_threshold": 9}}, "reason": "调整阈值"}
    assert client.put(_url(programme), json=body).status_code == 401
    for user in (build.auditor(), build.admin(region_code="510129")):
        assert client.put(_url(programme), json=body, headers=build.headers(user)).status_code == 403
    provider = build.provider(items=[meal], login=True)
    assert client.put(_url(programme), json=body, headers=build.headers(provider.user)).status_code == 403
    assert _stored(build, programme) is None
    inside = client.put(_url(programme), json=body, headers=build.headers(build.admin(region_code="510100")))
    assert inside.status_code == 200


def test_an_unknown_programme_is_not_found(client, admin_headers):
    response = client.put(f"{PROGRAMMES}/999999/anomaly-parameters",
                          json={"anomaly_parameters": None, "reason": "调整阈值"}, headers=admin_headers)
    assert response.status_code == 404


# --- the rule table and its page ------------------------------------------------------------------------------

def test_every_rule_and_parameter_says_what_it_is():
    assert set(integrity.CHECKS) == set(integrity.RULES)
    assert set(integrity.RULE_NAMES) == set(integrity.RULES)
    assert set(integrity.PARAMETER_MEANINGS) == {(code, name) for code, rule in integrity.RULES.items()
                                                  for name in rule.parameters}
    assert {code for code, _kind in integrity.EXPLANATIONS} == set(integrity.RULES)


def test_every_default_passes_the_rule_tables_own_check():
    defaults = {code: dict(rule.parameters) for code, rule in integrity.RULES.items()}
    assert integrity.parameter_errors(defaults) == {}


def test_docs_market_integrity_md_is_the_page_generated_from_the_rule_table(app):
    path = PROJECT_ROOT / PAGE_PATH
    written = path.read_text(encoding="utf-8") if path.exists() else ""
    with app.app_context():
        expected = render_page()
    if written != expected:
        diff = "".join(list(difflib.unified_diff(written.splitlines(True), expected.splitlines(True), PAGE_PATH,
                                                 "generated"))[:40])
        pytest.fail(f"{PAGE_PATH} is out of date; regenerate it with `{REGENERATE}`\n{diff}", pytrace=False)


def test_the_page_names_every_rule_parameter_and_default(app):
    with app.app_context():
        page = render_page()
    for code, rule in integrity.RULES.items():
        assert f"\n### {code}\n" in page
        assert f"`{rule.severity}`" in page
        for name, default in rule.parameters.items():
            assert f"| `{name}` | {default} |" in page


def test_rules_doc_prints_the_page_and_writes_it(app, runner, tmp_path):
    with app.app_context():
        expected = render_page()
    printed = runner.invoke(args=["rules-doc"])
    assert printed.exit_code == 0, printed.output
    assert printed.output == expected
    target = tmp_path / "market-integrity.md"
    written = runner.invoke(args=["rules-doc", "--write", str(target)])
    assert written.exit_code == 0, written.output
    assert target.read_text(encoding="utf-8") == expected
    assert f"{len(integrity.RULES)} rules" in written.output
