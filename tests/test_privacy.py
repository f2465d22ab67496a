"""Privacy: after a full scenario, no valid ID number, password or login token is anywhere in the
database (every row of every table, on both backends; on SQLite also the raw file and its WAL) or in
the logs."""

import io
import random
import re

from sqlalchemy import MetaData, select

from marketplace.db import db
from marketplace.demo import demo_recipient
from marketplace.recipients.idnumber import check_character
from tests.conftest import PASSWORD

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
