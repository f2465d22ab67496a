"""The schema comes only from the migrations, and the migrations match the models."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from marketplace.app import create_app
from marketplace.db import db
from tests.support.apps import app_config
from tests.support.databases import fresh_database


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
