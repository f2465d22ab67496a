"""Apps in this process: their settings, their secrets, building one (optionally migrated), disposing of it.

Two kinds of settings:

- testing (no *secrets* given): APP_ENV=testing, TESTING, the fixed test secrets of
  marketplace.config — what the suite's apps run with;
- production (*secrets* given, e.g. `new_secrets()`): APP_ENV=production with those secrets, as
  deployed — what the real servers of the race, crash and benchmark runs use, and the apps that
  prepare their data in this process (same secrets, so voucher cards signed here verify there).

Both keep the login counters in memory and take any other setting as a keyword override.
"""

import logging
import secrets as _secrets
from pathlib import Path

from flask_migrate import upgrade

from marketplace.app import create_app
from marketplace.db import db


def new_secrets() -> dict:
    """Fresh SECRET_KEY, ID_HASH_KEY and TOKEN_KEYS, for an app that runs as in production."""
    return {"SECRET_KEY": _secrets.token_hex(32), "ID_HASH_KEY": _secrets.token_hex(32),
            "TOKEN_KEYS": f"1:{_secrets.token_hex(32)}"}


def app_config(database_url: str, *, secrets: dict | None = None, instance_path: Path | str | None = None,
               **overrides) -> dict:
    """Settings of an app on *database_url*: testing ones, or production ones with the given *secrets*."""
    environment = {"APP_ENV": "testing", "TESTING": True} if secrets is None else {"APP_ENV": "production", **secrets}
    config = {**environment, "DATABASE_URL": database_url, "RATELIMIT_STORAGE_URI": "memory://"}
    if instance_path is not None:
        config["INSTANCE_PATH"] = str(instance_path)
    return {**config, **overrides}


def make_app(database_url: str, *, instance_path: Path | str, secrets: dict | None = None, migrate: bool = False,
             **overrides):
    """An app in this process on *database_url* (settings: app_config); runs the migrations when *migrate*."""
    Path(instance_path).mkdir(parents=True, exist_ok=True)
    application = create_app(app_config(database_url, secrets=secrets, instance_path=instance_path, **overrides))
    if migrate:
        # Alembic's logging set-up prints every migration at INFO; nobody here wants to read them.
        logging.disable(logging.INFO)
        try:
            with application.app_context():
                upgrade()
        finally:
            logging.disable(logging.NOTSET)
    return application


def dispose(application) -> None:
    """Close *application*'s session and every connection of its pool."""
    with application.app_context():
        db.session.remove()
        db.engine.dispose()
