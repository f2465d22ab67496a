"""Every route in the URL map, called as every role: each gets exactly what docs/domain.md#roles-and-four-eyes grants,
no more.

The table below is written from docs/domain.md#roles-and-four-eyes (not read back from the code): a role outside a
route's set must be turned away (401 anonymous, 403 otherwise) before anything else happens; a role inside it
must never be (any other status — 404 for the made-up ids, 422 for the empty bodies — is fine).
"""


import pytest

from marketplace.demo import demo_credit_code
from tests.conftest import PASSWORD

ANYONE = frozenset({"anonymous", "recipient", "provider", "auditor", "admin"})
USERS = frozenset({"recipient", "provider", "auditor", "admin"})
READERS = frozenset({"admin", "auditor"})

GRANTS = {
    ("GET", "/api/v1/anomalies"): {"admin", "auditor", "provider"},
    ("GET", "/api/v1/anomalies/<int:anomaly_id>"): {"admin", "auditor", "provider"},
    ("POST", "/api/v1/anomalies/<int:anomaly_id>/confirm"): {"admin"},
    ("POST", "/api/v1/anomalies/<int:anomaly_id>/dismiss"): {"admin"},
    ("GET", "/api/v1/audit"): READERS,
    ("GET", "/api/v1/audit/verify"): READERS,
    ("POST", "/api/v1/auth/login"): ANYONE,
    ("POST", "/api/v1/auth/logout"): ANYONE,
    ("POST", "/api/v1/auth/token"): ANYONE,
    ("DELETE", "/api/v1/auth/token"): USERS,
    ("GET", "/api/v1/catalogue/categories"): ANYONE,
    ("GET", "/api/v1/catalogue/items"): ANYONE,
    ("POST", "/api/v1/catalogue/items"): {"admin"},
    ("PATCH", "/api/v1/catalogue/items/<string:code>"): {"admin"},
    ("GET", "/api/v1/catalogue/negative-list"): ANYONE,
    ("GET", "/api/v1/complaints"): USERS,
    ("POST", "/api/v1/complaints"): {"recipient", "admin"},
    ("GET", "/api/v1/complaints/<int:complaint_id>"): USERS,
    ("POST", "/api/v1/complaints/<int:complaint_id>/resolve"): {"admin"},
    ("POST", "/api/v1/complaints/<int:complaint_id>/answer"): {"provider"},
    ("GET", "/api/v1/health"): ANYONE,
    ("GET", "/api/v1/health/ready"): ANYONE,
    ("GET", "/api/v1/me"): USERS,
    ("POST", "/api/v1/me/presence-code"): {"recipient"},
    ("GET", "/api/v1/me/presence-code.png"): {"recipient"},
    ("GET", "/api/v1/openapi.json"): ANYONE,
    ("GET", "/api/v1/programme-applications"): {"admin", "auditor", "provider"},
    ("POST", "/api/v1/programme-applications/<int:application_id>/accept"): {"admin"},
    ("POST", "/api/v1/programme-applications/<int:application_id>/refuse"): {"admin"},
    ("GET", "/api/v1/docs"): ANYONE,
    ("GET", "/api/v1/programmes"): READERS,
    ("POST", "/api/v1/programmes"): {"admin"},
    ("GET", "/api/v1/programmes/<int:programme_id>"): READERS,
    ("POST", "/api/v1/programmes/<int:programme_id>/applications"): {"provider"},
    ("POST", "/api/v1/programmes/<int:programme_id>/activate"): {"admin"},
    ("PUT", "/api/v1/programmes/<int:programme_id>/anomaly-parameters"): {"admin"},
    ("POST", "/api/v1/programmes/<int:programme_id>/budget"): {"admin"},
    ("POST", "/api/v1/programmes/<int:programme_id>/close"): {"admin"},
    ("GET", "/api/v1/programmes/<int:programme_id>/dashboard"): READERS,
    ("POST", "/api/v1/programmes/<int:programme_id>/expire"): {"admin"},
    ("POST", "/api/v1/programmes/<int:programme_id>/issuance"): {"admin"},
    ("GET", "/api/v1/programmes/<int:programme_id>/ledger"): READERS,
    ("GET", "/api/v1/programmes/<int:programme_id>/providers"): ANYONE,
    ("POST", "/api/v1/programmes/<int:programme_id>/providers"): {"admin"},
    ("GET", "/api/v1/programmes/<int:programme_id>/reconciliation"): READERS,
    ("POST", "/api/v1/programmes/<int:programme_id>/anomalies/detect"): {"admin"},
    ("POST", "/api/v1/programmes/<int:programme_id>/settlements"): {"admin"},
    ("GET", "/api/v1/programmes/<int:programme_id>/switching"): READERS,
    ("GET", "/api/v1/providers"): ANYONE,
    ("POST", "/api/v1/providers"): {"anonymous", "admin"},
    ("GET", "/api/v1/providers/<int:provider_id>"): ANYONE,
    ("POST", "/api/v1/providers/<int:provider_id>/approve"): {"admin"},
    ("POST", "/api/v1/providers/<int:provider_id>/suspend"): {"admin"},
    ("POST", "/api/v1/providers/<int:provider_id>/reinstate"): {"admin"},
    ("POST", "/api/v1/providers/<int:provider_id>/revoke"): {"admin"},
    ("GET", "/api/v1/providers/<int:provider_id>/enrolments"): {"admin", "auditor", "provider"},
    ("GET", "/api/v1/providers/<int:provider_id>/status-history"): {"admin", "auditor", "provider"},
    ("GET", "/api/v1/providers/<int:provider_id>/logins"): {"admin", "auditor", "provider"},
    ("POST", "/api/v1/providers/<int:provider_id>/logins"): {"admin", "provider"},
    ("GET", "/api/v1/public/programmes"): ANYONE,
    ("GET", "/api/v1/public/programmes/<int:programme_id>"): ANYONE,
    ("GET", "/api/v1/public/providers"): ANYONE,
    ("GET", "/api/v1/public/settlements"): ANYONE,
    ("GET", "/api/v1/rankings"): ANYONE,
    ("GET", "/api/v1/recipients"): {"admin", "recipient"},
    ("POST", "/api/v1/recipients"): {"admin"},
    ("POST", "/api/v1/recipients/import"): {"admin"},
    ("POST", "/api/v1/recipients/lookup"): {"admin"},
    ("GET", "/api/v1/recipients/<int:recipient_id>"): {"admin", "recipient"},
    ("PATCH", "/api/v1/recipients/<int:recipient_id>"): {"admin"},
    ("POST", "/api/v1/recipients/<int:recipient_id>/account"): {"admin"},
    ("GET", "/api/v1/recipients/<int:recipient_id>/choices"): {"admin", "recipient"},
    ("PUT", "/api/v1/recipients/<int:recipient_id>/choices"): {"admin", "recipient"},
    ("GET", "/api/v1/redemptions"): {"admin", "auditor", "provider"},
    ("POST", "/api/v1/redemptions"): {"provider"},
    ("GET", "/api/v1/redemptions/<int:redemption_id>"): {"admin", "auditor", "provider"},
    ("POST", "/api/v1/redemptions/<int:redemption_id>/rating"): {"recipient", "admin"},
    ("POST", "/api/v1/redemptions/<int:redemption_id>/reverse"): {"provider", "admin"},
    ("GET", "/api/v1/settlements"): {"admin", "auditor", "provider"},
    ("GET", "/api/v1/settlements/<int:settlement_id>"): {"admin", "auditor", "provider"},
    ("DELETE", "/api/v1/settlements/<int:settlement_id>"): {"admin"},
    ("POST", "/api/v1/settlements/<int:settlement_id>/approve"): {"admin"},
    ("POST", "/api/v1/settlements/<int:settlement_id>/pay"): {"admin"},
    ("GET", "/api/v1/settlements/<int:settlement_id>/statement.csv"): {"admin", "auditor", "provider"},
    ("GET", "/api/v1/settlements/<int:settlement_id>/statement.xlsx"): {"admin", "auditor", "provider"},
    ("POST", "/api/v1/users"): {"admin"},
    ("POST", "/api/v1/users/<int:user_id>/deactivate"): {"admin", "provider"},
    ("POST", "/api/v1/users/<int:user_id>/reactivate"): {"admin", "provider"},
    ("GET", "/api/v1/vouchers"): {"admin", "recipient"},
    ("POST", "/api/v1/vouchers"): {"admin"},
    ("GET", "/api/v1/vouchers/<int:voucher_id>"): {"admin", "recipient"},
    ("GET", "/api/v1/vouchers/<int:voucher_id>/card.png"): {"admin", "recipient"},
    ("GET", "/api/v1/vouchers/<int:voucher_id>/card.svg"): {"admin", "recipient"},
    ("POST", "/api/v1/vouchers/<int:voucher_id>/revoke"): {"admin"},
}
# Bodies that pass validation where a role check happens only after it (self-registration).
BODIES = {
    ("POST", "/api/v1/providers"): lambda: {
        "name": "矩阵测试服务社", "kind": "social_organisation", "credit_code": demo_credit_code("52", "MA7X9K2P"),
        "legal_representative": "李四", "phone": "13900000000", "address": "蒲江县", "region_codes": ["510131"],
        "item_codes": ["HC-MATRIX"], "capacity": 10, "account": {"username": "matrix-provider", "password": PASSWORD}},
}
SKIPPED = {"/api/v1/docs/assets/<path:filename>"}


def api_routes(app):
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1") or rule.rule in SKIPPED:
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield method, rule.rule


def test_the_table_covers_every_route_in_the_url_map(app):
    assert set(api_routes(app)) == set(GRANTS)


@pytest.fixture
def role_headers(build, token_for):
    item = build.item(code="HC-MATRIX")
    recipient = build.recipient(login=True)
    # Approved, so that a refusal of its scan can only come from the role gate, not its status.
    provider = build.provider(items=[item], kind="enterprise", login=True)
    users = {"admin": build.admin(), "recipient": recipient.user, "auditor": build.auditor(),
             "provider": provider.user}
    headers = {role: {"Authorization": f"Bearer {token_for(user)}"} for role, user in users.items()}
    return headers | {"anonymous": {}}


def call(client, method, rule, headers):
    path = rule
    for name in ("programme_id", "provider_id", "recipient_id", "redemption_id", "settlement_id", "voucher_id",
                 "complaint_id", "application_id", "user_id", "anomaly_id"):
        path = path.replace(f"<int:{name}>", "999999")
    body = BODIES.get((method, rule), dict)()
    if method in ("POST", "PUT", "PATCH"):
        return client.open(path, method=method, json=body, headers=headers)
    return client.open(path, method=method, headers=headers)


def test_every_role_gets_exactly_what_api_md_grants(app, client, role_headers):
    wrong = []
    # Logging out revokes the token, so those two go last.
    revoking = {("DELETE", "/api/v1/auth/token"), ("POST", "/api/v1/auth/logout")}
    for method, rule in sorted(api_routes(app), key=lambda route: (route in revoking, route)):
        for role in sorted(ANYONE):
            status = call(client, method, rule, role_headers[role]).status_code
            if role in GRANTS[(method, rule)]:
                if status in (401, 403) or status >= 500:
                    wrong.append(f"{role} {method} {rule}: {status}, expected to be let in")
            elif status != (401 if role == "anonymous" else 403):
                wrong.append(f"{role} {method} {rule}: {status}, expected {401 if role == 'anonymous' else 403}")
    assert wrong == [], "\n".join(wrong)
