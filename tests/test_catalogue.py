"""Rules 2 and 3 (docs/domain.md): the guidance catalogue and the negative list."""

import pytest

from tests.conftest import error_code

ITEM = {"code": "HC-MEAL", "name": "助餐", "category_code": "basic_public", "unit": "餐",
        "standard_price_fen": 1500, "nature": "service"}


def test_the_six_categories_are_seeded_by_the_migrations(client):
    response = client.get("/api/v1/catalogue/categories")
    assert response.status_code == 200
    names = [category["name"] for category in response.get_json()]
    assert names == ["基本公共服务", "社会管理性服务", "行业管理与协调性服务", "技术性服务", "政府履职所需辅助性事项",
                     "其他适宜由社会力量承担的服务事项"]


def test_the_negative_list_names_each_forbidden_kind_with_a_reason(client):
    rules = {rule["code"]: rule for rule in client.get("/api/v1/catalogue/negative-list").get_json()}
    assert set(rules) == {"goods", "construction", "financing", "staff_hiring", "judicial", "administrative_penalty",
                          "administrative_coercion"}
    assert rules["staff_hiring"]["name"] == "岗位聘用"
    assert rules["judicial"]["name"] == "司法审判"
    assert all(rule["reason"] for rule in rules.values())


def test_admin_adds_a_service_item_and_anyone_lists_it(client, make_user, auth):
    response = client.post("/api/v1/catalogue/items", json=ITEM, headers=auth(make_user()))
    assert response.status_code == 201
    assert response.get_json()["code"] == "HC-MEAL"
    listed = client.get("/api/v1/catalogue/items").get_json()
    assert [item["name"] for item in listed] == ["助餐"]


@pytest.mark.parametrize("nature", ["goods", "construction", "financing", "staff_hiring", "judicial",
                                    "administrative_penalty", "administrative_coercion"])
def test_an_item_on_the_negative_list_is_refused_naming_the_rule(client, make_user, auth, nature):
    response = client.post("/api/v1/catalogue/items", json={**ITEM, "nature": nature}, headers=auth(make_user()))
    assert response.status_code == 422
    body = response.get_json()["error"]
    assert body["code"] == "negative_list"
    assert body["details"]["rule"]["code"] == nature
    assert body["details"]["rule"]["reason"]
    assert client.get("/api/v1/catalogue/items").get_json() == []


def test_an_unknown_nature_is_a_validation_error(client, make_user, auth):
    response = client.post("/api/v1/catalogue/items", json={**ITEM, "nature": "magic"}, headers=auth(make_user()))
    assert response.status_code == 422
    assert error_code(response) == "validation_error"


def test_an_item_needs_a_known_category_and_a_positive_price(client, make_user, auth):
    headers = auth(make_user())
    unknown_category = client.post("/api/v1/catalogue/items", json={**ITEM, "category_code": "x"}, headers=headers)
    assert unknown_category.status_code == 422
    assert "category_code" in unknown_category.get_json()["error"]["details"]["fields"]
    free = client.post("/api/v1/catalogue/items", json={**ITEM, "standard_price_fen": 0}, headers=headers)
    assert free.status_code == 422
    fractional = client.post("/api/v1/catalogue/items", json={**ITEM, "standard_price_fen": 15.5}, headers=headers)
    assert fractional.status_code == 422


def test_a_second_item_with_the_same_code_is_a_conflict(client, make_user, auth):
    headers = auth(make_user())
    assert client.post("/api/v1/catalogue/items", json=ITEM, headers=headers).status_code == 201
    again = client.post("/api/v1/catalogue/items", json=ITEM, headers=headers)
    assert again.status_code == 409
    assert error_code(again) == "duplicate_item"


def test_only_unscoped_admins_change_the_catalogue(client, make_user, auth):
    assert client.post("/api/v1/catalogue/items", json=ITEM).status_code == 401
    assert client.post("/api/v1/catalogue/items", json=ITEM, headers=auth(make_user(role="auditor"))).status_code == 403
    scoped = make_user(role="admin", region_code="510131")
    assert client.post("/api/v1/catalogue/items", json=ITEM, headers=auth(scoped)).status_code == 403
