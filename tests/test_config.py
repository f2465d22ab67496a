"""Configuration from the environment: fail closed in production, persistent secrets in development."""

import stat
from dataclasses import fields

import pytest

from marketplace.app import create_app
from marketplace.config import Config, ConfigError
from marketplace.db import db

# Random secrets, written out so that a failure shows the same ones (production refuses `aaaa…`).
STRONG_SECRET = "1f97c9142240382a68ba2312ae68e26063ef9c3112a291778e845ade98f121b5"
OTHER_SECRET = "f2ed681c15f727edbc61ac67f108a1e29eac6ada2c0123ed94487efb1aa0366f"
# Every secret production insists on (TOKEN_KEYS is "kid:secret,..." and signs voucher cards).
PRODUCTION_SECRETS = {"SECRET_KEY": STRONG_SECRET,
                      "ID_HASH_KEY": "790ae4ff4b2d36e3e108cd505e971c8aac13c54a100e46dcd7f10cd4dbe3b81b",
                      "TOKEN_KEYS": "1:de5ce1c15cdf223be8562360796f6667edeba058dbc8943fc08889ae062445ed"}


@pytest.fixture
def environment(monkeypatch, tmp_path):
    """A clean environment: none of the app's settings set, the instance folder in *tmp_path*."""
    for field in fields(Config):
        monkeypatch.delenv(field.name, raising=False)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'config-test.sqlite3'}")
    return monkeypatch


@pytest.fixture
def built_apps():
    apps = []
    yield apps
    for application in apps:
        with application.app_context():
            db.engine.dispose()


def build(built_apps, config=None):
    application = create_app(config)
    built_apps.append(application)
    return application


def test_production_without_secret_key_refuses_to_start(environment):
    environment.setenv("APP_ENV", "production")
    environment.setenv("ID_HASH_KEY", STRONG_SECRET)
    with pytest.raises(ConfigError, match="SECRET_KEY is not set") as refused:
        create_app()
    assert "export SECRET_KEY=" in str(refused.value)


def test_production_without_id_hash_key_refuses_to_start(environment):
    environment.setenv("APP_ENV", "production")
    environment.setenv("SECRET_KEY", STRONG_SECRET)
    with pytest.raises(ConfigError, match="ID_HASH_KEY is not set"):
        create_app()


def test_unset_environment_is_production_and_refuses_to_start_without_secrets(environment):
    with pytest.raises(ConfigError, match="SECRET_KEY is not set"):
        create_app()


def test_empty_secret_key_counts_as_unset(environment):
    environment.setenv("APP_ENV", "production")
    environment.setenv("SECRET_KEY", "")
    environment.setenv("ID_HASH_KEY", STRONG_SECRET)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app()


def test_production_with_its_secrets_starts_with_secure_cookies(environment, built_apps):
    environment.setenv("APP_ENV", "production")
    for name, value in PRODUCTION_SECRETS.items():
        environment.setenv(name, value)
    application = build(built_apps)
    assert application.config["SECRET_KEY"] == STRONG_SECRET
    assert application.config["SESSION_COOKIE_SECURE"] is True
    assert application.config["SESSION_COOKIE_HTTPONLY"] is True


def test_unknown_environment_is_refused(environment):
    environment.setenv("APP_ENV", "staging")
    environment.setenv("SECRET_KEY", STRONG_SECRET)
    environment.setenv("ID_HASH_KEY", STRONG_SECRET)
    with pytest.raises(ConfigError, match="APP_ENV must be one of production, development, testing; got 'staging'"):
        create_app()


def test_unknown_environment_given_in_code_is_refused(environment):
    with pytest.raises(ConfigError, match="APP_ENV"):
        create_app({"APP_ENV": "prod"})


def test_non_integer_setting_is_refused_naming_it(environment):
    environment.setenv("APP_ENV", "testing")
    environment.setenv("TOKEN_TTL_SECONDS", "eight hours")
    with pytest.raises(ConfigError, match="TOKEN_TTL_SECONDS must be an integer"):
        create_app()


def test_integer_settings_are_read_from_the_environment(environment, built_apps):
    environment.setenv("APP_ENV", "testing")
    environment.setenv("LOGIN_FAILURES_PER_USERNAME", "7")
    assert build(built_apps).config["LOGIN_FAILURES_PER_USERNAME"] == 7


def test_the_wrong_short_code_limit_is_read_from_the_environment(environment, built_apps):
    environment.setenv("APP_ENV", "testing")
    environment.setenv("SHORT_CODE_FAILURES_PER_LOGIN", "4")
    environment.setenv("SHORT_CODE_FAILURE_WINDOW_SECONDS", "120")
    config = build(built_apps).config
    assert (config["SHORT_CODE_FAILURES_PER_LOGIN"], config["SHORT_CODE_FAILURE_WINDOW_SECONDS"]) == (4, 120)


def test_development_keeps_a_persistent_secret_in_the_instance_folder(environment, tmp_path, built_apps):
    environment.setenv("APP_ENV", "development")
    first = build(built_apps)
    second = build(built_apps)
    secret_file = tmp_path / "instance" / "secret_key.dev"
    assert secret_file.exists()
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"] == secret_file.read_text().strip()
    assert len(first.config["SECRET_KEY"]) >= 64
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert first.config["SESSION_COOKIE_SECURE"] is False


def test_development_secrets_differ_between_instance_folders_and_keys(environment, tmp_path, built_apps):
    environment.setenv("APP_ENV", "development")
    first = build(built_apps)
    environment.setenv("INSTANCE_PATH", str(tmp_path / "elsewhere"))
    other = build(built_apps)
    assert first.config["SECRET_KEY"] != other.config["SECRET_KEY"]
    assert first.config["ID_HASH_KEY"] != first.config["SECRET_KEY"]
    assert (tmp_path / "instance" / "id_hash_key.dev").exists()


def test_development_secret_from_the_environment_wins(environment, tmp_path, built_apps):
    environment.setenv("APP_ENV", "development")
    environment.setenv("SECRET_KEY", STRONG_SECRET)
    assert build(built_apps).config["SECRET_KEY"] == STRONG_SECRET
    assert not (tmp_path / "instance" / "secret_key.dev").exists()


def test_database_defaults_to_sqlite_in_the_instance_folder(environment, tmp_path, built_apps):
    environment.delenv("DATABASE_URL")
    environment.setenv("APP_ENV", "testing")
    application = build(built_apps)
    assert application.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'instance' / 'marketplace.sqlite3'}"


def test_settings_given_to_the_factory_override_the_environment(environment, built_apps):
    environment.setenv("APP_ENV", "production")
    application = build(built_apps, {"APP_ENV": "testing", "TOKEN_TTL_SECONDS": 60})
    assert application.config["TOKEN_TTL_SECONDS"] == 60
    assert application.config["SECRET_KEY"]


# --- secrets are checked when the app starts -------------------------------------------------------

def production(environment, **overrides):
    """Production settings with valid secrets, some replaced by *overrides* (None: unset)."""
    environment.setenv("APP_ENV", "production")
    for name, value in {**PRODUCTION_SECRETS, **overrides}.items():
        if value is None:
            environment.delenv(name, raising=False)
        else:
            environment.setenv(name, value)


KEY = "227be8b3f1bda6757377b4dc862c3d4b0be743efde0d001ae0ce116a783f9efb"


@pytest.mark.parametrize(("token_keys", "problem"), [
    ("k1:" + KEY, "key id 'k1'"),  # the 500 of issue 14: int('k1') at the first presence code
    ("256:" + KEY, "key id '256'"),
    ("-1:" + KEY, "key id '-1'"),
    ("1_0:" + KEY, "key id '1_0'"),
    (":" + KEY, "key id ''"),
    ("1", "no secret"),
    ("1:", "no secret"),
    ("1:" + KEY + ",", "entry 2 is empty"),
    ("1:" + KEY + ",,2:" + KEY, "entry 2 is empty"),
    ("1:" + KEY + ",1:" + OTHER_SECRET, "key id 1 twice"),
    ("7:" + KEY + ", 07:" + OTHER_SECRET, "key id 7 twice"),
])
@pytest.mark.parametrize("env", ["production", "development", "testing"])
def test_malformed_token_keys_refuse_to_start_naming_the_variable_and_the_fix(environment, env, token_keys,
                                                                               problem):
    production(environment, TOKEN_KEYS=token_keys)
    environment.setenv("APP_ENV", env)
    with pytest.raises(ConfigError) as refused:
        create_app()
    message = str(refused.value)
    assert message.startswith("TOKEN_KEYS")
    assert problem in message
    assert "kid:secret" in message
    assert KEY not in message  # never a secret in a log
    assert OTHER_SECRET not in message


@pytest.mark.parametrize("token_keys", ["0:" + KEY, "255:" + KEY, "2:" + KEY + ",1:" + OTHER_SECRET,
                                        " 3:" + KEY + " , 4:" + OTHER_SECRET + " "])
def test_well_formed_token_keys_start_and_sign(environment, built_apps, token_keys):
    from vouchers import tokens

    production(environment, TOKEN_KEYS=token_keys)
    application = build(built_apps)
    with application.app_context():
        assert tokens.read_voucher_token(tokens.voucher_token(42)) == 42


@pytest.mark.parametrize("name", ["SECRET_KEY", "ID_HASH_KEY"])
def test_production_refuses_a_short_secret_naming_it(environment, name):
    production(environment, **{name: "x" * 31})
    with pytest.raises(ConfigError, match=f"^{name} is 31 bytes long; production needs at least 32") as refused:
        create_app()
    assert f"export {name}=" in str(refused.value)
    assert "x" * 31 not in str(refused.value)


def test_production_refuses_a_short_token_key_naming_its_id(environment):
    production(environment, TOKEN_KEYS=f"2:{'x' * 16},1:{KEY}")
    with pytest.raises(ConfigError, match="^TOKEN_KEYS key 2 is 16 bytes long; production needs at least 32"):
        create_app()


def test_secrets_of_32_bytes_are_enough_in_production(environment, built_apps):
    production(environment, SECRET_KEY="56355c66e4a715b59ad3b074103bbcb9",
               ID_HASH_KEY="6f55cbafae8c1d6c1dc8382ee6c80753",
               TOKEN_KEYS="1:589d063950671fe65bb0bf88d61080a4")
    assert len(build(built_apps).config["SECRET_KEY"]) == 32


def test_short_secrets_are_allowed_outside_production(environment, built_apps):
    environment.setenv("APP_ENV", "development")
    environment.setenv("SECRET_KEY", "short")
    environment.setenv("TOKEN_KEYS", "1:short")
    assert build(built_apps).config["SECRET_KEY"] == "short"


@pytest.mark.parametrize("env", ["production", "development"])
def test_id_hash_key_equal_to_secret_key_refuses_to_start(environment, env):
    production(environment, ID_HASH_KEY=STRONG_SECRET)
    environment.setenv("APP_ENV", env)
    with pytest.raises(ConfigError, match="^ID_HASH_KEY equals SECRET_KEY") as refused:
        create_app()
    message = str(refused.value)
    assert "export SECRET_KEY=" in message  # change SECRET_KEY: the blind index depends on ID_HASH_KEY
    assert STRONG_SECRET not in message


def test_a_development_key_from_the_environment_equal_to_the_kept_one_is_refused(environment, tmp_path,
                                                                                built_apps):
    environment.setenv("APP_ENV", "development")
    build(built_apps)  # writes the development secrets
    kept = (tmp_path / "instance" / "secret_key.dev").read_text().strip()
    environment.setenv("ID_HASH_KEY", kept)
    with pytest.raises(ConfigError, match="ID_HASH_KEY equals SECRET_KEY"):
        create_app()


@pytest.mark.parametrize("name", ["LOGIN_FAILURES_PER_USERNAME_AND_CLIENT", "LOGIN_FAILURES_PER_CLIENT",
                                  "LOGIN_FAILURES_PER_USERNAME", "LOGIN_FAILURE_WINDOW_SECONDS",
                                  "SHORT_CODE_FAILURES_PER_LOGIN", "SHORT_CODE_FAILURE_WINDOW_SECONDS"])
def test_throttling_settings_must_be_positive(environment, name):
    environment.setenv("APP_ENV", "testing")
    environment.setenv(name, "0")
    with pytest.raises(ConfigError, match=f"^{name} must be at least 1"):
        create_app()
