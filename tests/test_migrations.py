"""The schema comes only from the migrations, and the migrations match the models."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from marketplace.app import create_app
from marketplace.db import db
from tests.support import apps
from tests.support.apps import app_config
from tests.support.databases import fresh_database
from tests.support.scenario import Builder


@pytest.fixture
def empty_database_url(backend, tmp_path):
    """A brand-new, empty database on the backend under test."""
    with fresh_database(backend, tmp_path, prefix="vm_migrations") as url:
        yield url


def test_migrations_upgrade_an_empty_database_to_exactly_the_models(empty_database_url, tmp_path):
    app = create_app(app_config(empty_database_url, INSTANCE_PATH=str(tmp_path)))
    with app.app_context():
        upgrade()
        with db.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), db.metadata)
        db.engine.dispose()
    assert differences == []


def test_migrations_downgrade_to_empty_and_upgrade_again(empty_database_url, tmp_path):
    app = create_app(app_config(empty_database_url, INSTANCE_PATH=str(tmp_path)))
    with app.app_context():
        upgrade()
        downgrade(revision="base")
        with db.engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) <= {"alembic_version"}
        upgrade()
        with db.engine.connect() as connection:
            assert "audit_head" in inspect(connection).get_table_names()
        db.engine.dispose()


COUNTED = ("redemption", "rating", "complaint", "settlement", "voucher", "choice_event", "audit_event", "journal_line")


def _counts(connection) -> dict:
    return {table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar() for table in COUNTED}


def test_migrations_keep_every_row_down_to_0007_and_up_again(empty_database_url, tmp_path):
    """On SQLite batch mode rebuilds tables that others reference (settlement in 0008, redemption in 0009): with
    rows pointing at them, the rebuild must neither delete through the references nor fail at the commit."""
    app = apps.make_app(empty_database_url, instance_path=tmp_path / "instance", migrate=True)
    try:
        build = Builder(app)
        scene = build.full_scenario()
        p1, r0 = scene.providers[0], scene.recipients[0]
        typed = build.redeem(p1, r0, scene.meal, typed=True)
        build.choose(r0, scene.programme, scene.meal, scene.providers[1], reason="other", note="想换一家")
        with app.app_context():
            with db.engine.connect() as connection:
                before = _counts(connection)
            downgrade(revision="0007")
            upgrade()
            with db.engine.connect() as connection:
                after = _counts(connection)
                presence = connection.execute(text("SELECT presence FROM redemption WHERE id = :id"),
                                              {"id": typed.id}).scalar()
                if connection.dialect.name == "sqlite":
                    assert connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
                    assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert after == before
        assert before["settlement"] == 3
        assert presence == "presence_code"  # the downgrade's reading of a typed code; the upgrade keeps it
    finally:
        apps.dispose(app)
