"""The role matrix's second half: with real objects that belong to one recipient, one provider and one
region, "another recipient", "another provider" and an admin of another region are turned away (403 or
404) from every route that names them, while the owners themselves get in.

(`test_role_matrix.py` checks the role gate of every route with made-up ids.)
"""

import pytest

from marketplace.db import db, utcnow
from vouchers.models import AnomalyFlag, AnomalyFlagRedemption, Voucher

REFUSED = (403, 404)


@pytest.fixture
def owned(build):
    world = build.world()
    build.issue(world.programme, build.period())
    build.choose(world.alice, world.programme, world.meal, world.p1)
    voucher = build.vouchers(Voucher.recipient_id == world.alice.id, Voucher.item_code == world.meal)[0]
    redemption = build.redeem(world.p1, voucher=voucher.id)
    second = build.vouchers(Voucher.recipient_id == world.alice.id, Voucher.item_code == world.meal,
                            Voucher.status == "issued")[0]
    drafts = build.settle(world.programme, build.period(), by=world.admin)
    complaint = build.complain(world.p1, recipient=world.alice, by=world.admin, text="来晚了")
    staff = build.user(role="provider", provider_id=world.p1.id)
    flag = build.run(lambda: _confirmed_flag(world, build.period(), redemption.id))
    ids = {"programme_id": world.programme.id, "recipient_id": world.alice.id, "voucher_id": second.id,
           "redemption_id": redemption.id, "settlement_id": drafts[0], "complaint_id": complaint,
           "provider_id": world.p1.id, "user_id": staff.id, "anomaly_id": flag}
    who = {
        "owner recipient": build.headers(world.alice.user),
        "another recipient": build.headers(world.bob.user),
        "owner provider": build.headers(world.p1.user),
        "another provider": build.headers(world.p2.user),
        "admin": build.headers(world.admin),
        "admin of another region": build.headers(build.admin(region_code="310101")),
    }
    return ids, who


def _confirmed_flag(world, period: str, redemption_id: int) -> int:
    """A confirmed anomaly flag about p1's redemption (detection is not what is tested here)."""
    flag = AnomalyFlag(programme_id=world.programme.id, period=period, rule="short_duration", severity="low",
                       subject=f"provider:{world.p1.id}", provider_id=world.p1.id, recipient_id=world.alice.id,
                       evidence={"count": 1, "min_minutes": 30, "shortest": 5}, status="confirmed",
                       created_at=utcnow(), decided_at=utcnow(), decided_by=world.admin.id, reason="核实属实")
    db.session.add(flag)
    db.session.flush()
    db.session.add(AnomalyFlagRedemption(flag_id=flag.id, redemption_id=redemption_id))
    return flag.id


# (method, path, body, the identity that owns it and must get in, the outsiders that must not)
CASES = [
    ("GET", "/api/v1/recipients/{recipient_id}", None, "owner recipient", ["another recipient"]),
    ("GET", "/api/v1/recipients/{recipient_id}", None, "admin", ["admin of another region"]),
    ("PATCH", "/api/v1/recipients/{recipient_id}", {"address": "蒲江县鹤山街道1号"}, "admin",
     ["admin of another region"]),
    ("GET", "/api/v1/recipients/{recipient_id}/choices", None, "owner recipient",
     ["another recipient", "admin of another region"]),
    ("PUT", "/api/v1/recipients/{recipient_id}/choices", "choice", "owner recipient",
     ["another recipient", "admin of another region"]),
    ("GET", "/api/v1/vouchers/{voucher_id}", None, "owner recipient", ["another recipient", "admin of another region"]),
    ("GET", "/api/v1/vouchers/{voucher_id}/card.png", None, "owner recipient",
     ["another recipient", "admin of another region"]),
    ("GET", "/api/v1/vouchers/{voucher_id}/card.svg", None, "owner recipient",
     ["another recipient", "admin of another region"]),
    ("GET", "/api/v1/redemptions/{redemption_id}", None, "owner provider",
     ["another provider", "admin of another region"]),
    ("POST", "/api/v1/redemptions/{redemption_id}/rating", {"score": 5}, None, ["another recipient"]),
    ("POST", "/api/v1/redemptions/{redemption_id}/rating", {"score": 4, "source": "phone_followup"}, None,
     ["admin of another region"]),
    ("POST", "/api/v1/redemptions/{redemption_id}/reverse", {"reason": "scanned by mistake"}, None,
     ["another provider", "admin of another region"]),
    ("GET", "/api/v1/settlements/{settlement_id}", None, "owner provider",
     ["another provider", "admin of another region"]),
    ("GET", "/api/v1/settlements/{settlement_id}/statement.csv", None, "owner provider",
     ["another provider", "admin of another region"]),
    ("GET", "/api/v1/settlements/{settlement_id}/statement.xlsx", None, "owner provider",
     ["another provider", "admin of another region"]),
    ("POST", "/api/v1/settlements/{settlement_id}/approve", None, None, ["admin of another region"]),
    ("POST", "/api/v1/settlements/{settlement_id}/pay", {"payment_reference": "X-1"}, None,
     ["admin of another region"]),
    ("DELETE", "/api/v1/settlements/{settlement_id}", None, None, ["admin of another region"]),
    ("GET", "/api/v1/complaints/{complaint_id}", None, "owner recipient",
     ["another recipient", "another provider", "admin of another region"]),
    ("POST", "/api/v1/complaints/{complaint_id}/resolve", {"resolution": "已核实", "upheld": True}, None,
     ["admin of another region"]),
    ("POST", "/api/v1/complaints/{complaint_id}/answer", {"answer": "已向老人道歉"}, None, ["another provider"]),
    ("GET", "/api/v1/providers/{provider_id}/enrolments", None, "owner provider", ["another provider"]),
    ("GET", "/api/v1/providers/{provider_id}/status-history", None, "owner provider", ["another provider"]),
    ("GET", "/api/v1/providers/{provider_id}/logins", None, "owner provider",
     ["another provider", "admin of another region"]),
    ("POST", "/api/v1/providers/{provider_id}/logins", {"username": "outsider-made", "password": "a fine passphrase 7"},
     None, ["another provider", "admin of another region"]),
    ("POST", "/api/v1/users/{user_id}/deactivate", {"reason": "不是我的人"}, None,
     ["another provider", "admin of another region", "another recipient"]),
    ("POST", "/api/v1/users/{user_id}/reactivate", {"reason": "不是我的人"}, None,
     ["another provider", "admin of another region", "another recipient"]),
    ("GET", "/api/v1/programmes/{programme_id}", None, "admin", ["admin of another region"]),
    ("GET", "/api/v1/programmes/{programme_id}/ledger", None, "admin", ["admin of another region"]),
    ("GET", "/api/v1/programmes/{programme_id}/reconciliation", None, "admin", ["admin of another region"]),
    ("GET", "/api/v1/programmes/{programme_id}/dashboard", None, "admin", ["admin of another region"]),
    ("POST", "/api/v1/programmes/{programme_id}/budget", {"amount_fen": 100, "reason": "more money"}, None,
     ["admin of another region"]),
    ("POST", "/api/v1/programmes/{programme_id}/issuance", {"period": "2026-12"}, None, ["admin of another region"]),
    ("POST", "/api/v1/programmes/{programme_id}/expire", None, None, ["admin of another region"]),
    ("POST", "/api/v1/programmes/{programme_id}/close", None, None, ["admin of another region"]),
    ("POST", "/api/v1/vouchers/{voucher_id}/revoke", {"reason": "not mine to revoke"}, None,
     ["admin of another region"]),
    ("GET", "/api/v1/anomalies/{anomaly_id}", None, "owner provider", ["another provider", "admin of another region"]),
    ("GET", "/api/v1/anomalies/{anomaly_id}", None, "admin", ["admin of another region"]),
    ("POST", "/api/v1/anomalies/{anomaly_id}/confirm", {"reason": "不是我的辖区"}, None, ["admin of another region"]),
    ("POST", "/api/v1/anomalies/{anomaly_id}/dismiss", {"reason": "不是我的辖区"}, None, ["admin of another region"]),
]


def test_outsiders_are_turned_away_from_what_belongs_to_others(client, owned):
    ids, who = owned
    wrong = []
    for method, template, body, owner, outsiders in CASES:
        path = template.format(**ids)
        if body == "choice":
            body = {"programme_id": ids["programme_id"], "item_code": "x", "provider_id": ids["provider_id"]}
        for outsider in outsiders:
            with client.open(path, method=method, json=body, headers=who[outsider]) as response:
                if response.status_code not in REFUSED:
                    wrong.append(f"{outsider} {method} {path}: {response.status_code}")
        if owner is not None and method == "GET":
            with client.open(path, method=method, headers=who[owner]) as response:
                status = response.status_code
            if status != 200:
                wrong.append(f"{owner} {method} {path}: {status}, expected 200")
    assert wrong == [], "\n".join(wrong)


def test_nothing_an_outsider_tried_changed_anything(client, owned):
    ids, who = owned
    before = client.get(f"/api/v1/programmes/{ids['programme_id']}/ledger", headers=who["admin"]).get_json()
    test_outsiders_are_turned_away_from_what_belongs_to_others(client, owned)
    after = client.get(f"/api/v1/programmes/{ids['programme_id']}/ledger", headers=who["admin"]).get_json()
    assert after == before
    settlement = client.get(f"/api/v1/settlements/{ids['settlement_id']}", headers=who["admin"]).get_json()
    assert settlement["status"] == "draft"
    assert client.get(f"/api/v1/redemptions/{ids['redemption_id']}", headers=who["admin"]).get_json()[
        "status"] == "completed"
    assert client.get(f"/api/v1/anomalies/{ids['anomaly_id']}", headers=who["admin"]).get_json()[
        "status"] == "confirmed"
