"""SQLite commits durably by default: `synchronous=FULL`, so an acknowledged redemption survives power
loss or an OS crash as it does on PostgreSQL (synchronous_commit=on). NORMAL only by choice."""

import pytest
from sqlalchemy import text

from marketplace.app import create_app
from marketplace.config import ConfigError
from marketplace.db import db
from tests.support.apps import app_config

FULL, NORMAL = 2, 1  # what PRAGMA synchronous answers


def synchronous_of(tmp_path, **overrides) -> int:
    application = create_app(app_config(f"sqlite:///{tmp_path / 'durable.sqlite3'}", instance_path=tmp_path,
                                        **overrides))
    with application.app_context():
        try:
            with db.engine.connect() as connection:
                return connection.execute(text("PRAGMA synchronous")).scalar()
        finally:
            db.engine.dispose()


def test_sqlite_commits_are_durable_by_default(tmp_path):
    assert synchronous_of(tmp_path) == FULL


def test_a_deployment_may_opt_into_normal(tmp_path):
    assert synchronous_of(tmp_path, SQLITE_SYNCHRONOUS="NORMAL") == NORMAL


def test_any_other_value_refuses_to_start(tmp_path):
    with pytest.raises(ConfigError, match="SQLITE_SYNCHRONOUS"):
        synchronous_of(tmp_path, SQLITE_SYNCHRONOUS="OFF")
