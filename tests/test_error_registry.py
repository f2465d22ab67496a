"""The error registry: the error classes, docs/errors.md and the OpenAPI document name the same codes."""

import difflib
from collections import defaultdict
from pathlib import Path

import pytest

from marketplace.errors import (
    APPLICATION_PACKAGES,
    FRAMEWORK_ERRORS,
    SNAKE_CASE,
    DomainError,
    domain_error_classes,
    error_catalogue,
    error_codes,
)
from marketplace.errors_cli import PAGE_PATH, REGENERATE, render_page
from tests.conftest import error_code

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Codes that deliberately come with more than one status: the same refusal in two contexts
# (enrolling a provider that is not approved: 409; such a provider redeeming a voucher: 403).
MULTI_STATUS_CODES = {"provider_not_approved": {403, 409}}


def registry_pairs() -> set[tuple[int | None, str]]:
    return {(entry.status, entry.code) for entry in error_catalogue()}


def resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


# --- docs/errors.md ---------------------------------------------------------------------------------

def test_docs_errors_md_is_the_page_generated_from_the_error_classes(app):
    path = PROJECT_ROOT / PAGE_PATH
    written = path.read_text(encoding="utf-8") if path.exists() else ""
    expected = render_page()
    if written != expected:
        diff = "".join(list(difflib.unified_diff(written.splitlines(True), expected.splitlines(True), PAGE_PATH,
                                                 "generated"))[:40])
        pytest.fail(f"{PAGE_PATH} is out of date; regenerate it with `{REGENERATE}`\n{diff}", pytrace=False)


def test_errors_doc_command_prints_the_page_and_writes_it(app, runner, tmp_path):
    printed = runner.invoke(args=["errors-doc"])
    assert printed.exit_code == 0, printed.output
    assert printed.stdout == render_page()  # the page on stdout; the command's log lines go to stderr

    target = tmp_path / "errors.md"
    written = runner.invoke(args=["errors-doc", "--write", str(target)])
    assert written.exit_code == 0, written.output
    assert target.read_text(encoding="utf-8") == render_page()
    assert f"{len(error_codes())} error codes" in written.output


def test_page_has_one_row_per_status_and_code(app):
    page = render_page()
    for entry in error_catalogue():
        assert page.count(f"| {entry.status_label} | `{entry.code}` |") == 1, entry


# --- the catalogue and the classes ------------------------------------------------------------------

def test_the_walk_finds_the_error_classes_of_every_domain(app):
    classes = domain_error_classes()
    assert {cls.__module__.partition(".")[0] for cls in classes} == set(APPLICATION_PACKAGES)
    names = {cls.__name__ for cls in classes}
    # one from the kernel, one from each higher domain, one from deep inside the kernel
    assert {"NotFound", "InvalidCreditCode", "BudgetExceeded", "IdempotencyKeyReused"} <= names
    assert DomainError not in classes


def test_every_error_class_has_its_own_snake_case_code_a_status_and_a_message(app):
    for cls in domain_error_classes():
        declared_in = next(klass for klass in cls.__mro__ if "code" in vars(klass))
        assert declared_in is not DomainError, f"{cls.__qualname__} inherits DomainError's default code"
        assert SNAKE_CASE.match(cls.code), f"{cls.__qualname__}.code {cls.code!r} is not snake_case"
        assert isinstance(cls.status, int), cls
        assert 400 <= cls.status < 600, cls
        assert isinstance(cls.message, str), cls
        assert cls.message.strip(), f"{cls.__qualname__} has no message"
    for error in FRAMEWORK_ERRORS:
        assert SNAKE_CASE.match(error.code), error
        assert error.message.strip(), error


def test_each_class_is_its_own_status_and_code_and_a_code_keeps_its_status(app):
    classes_by_pair = defaultdict(list)
    statuses_by_code = defaultdict(set)
    for cls in domain_error_classes():
        classes_by_pair[cls.status, cls.code].append(cls.__qualname__)
        statuses_by_code[cls.code].add(cls.status)
    for error in FRAMEWORK_ERRORS:
        if error.status is not None:
            statuses_by_code[error.code].add(error.status)
    shared = {pair: names for pair, names in classes_by_pair.items() if len(names) > 1}
    assert shared == {}, "two error classes answer with the same status and code; reuse one of them"
    multi_status = {code: statuses for code, statuses in statuses_by_code.items() if len(statuses) > 1}
    assert multi_status == MULTI_STATUS_CODES


def test_catalogue_lists_each_status_and_code_once_in_order_with_every_source(app):
    catalogue = error_catalogue()
    pairs = [(entry.status, entry.code) for entry in catalogue]
    assert len(pairs) == len(set(pairs))
    order = [(499 if status is None else status, code) for status, code in pairs]
    assert order == sorted(order)
    sources = {source for entry in catalogue for source in entry.sources}
    assert {f"{cls.__module__}.{cls.__qualname__}" for cls in domain_error_classes()} <= sources
    assert all(entry.meanings and all(meaning.strip() for meaning in entry.meanings) for entry in catalogue)
    assert {"internal_error", "database_unavailable", "malformed_json", "http_error", "validation_error",
            "too_many_attempts", "idempotency_key_reused"} <= set(error_codes(catalogue))


# --- the OpenAPI document ---------------------------------------------------------------------------

def test_openapi_error_schema_enumerates_the_registry_codes(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    body = resolve(spec, error["properties"]["error"])
    code = body["properties"]["code"]
    assert code["enum"] == error_codes()
    for entry in error_catalogue():
        assert f"`{entry.code}`" in code["description"]
    assert "- 409: " in code["description"]


def test_openapi_default_error_response_is_the_error_schema(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    default = spec["components"]["responses"]["DEFAULT_ERROR"]
    assert default["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    token = spec["paths"]["/api/v1/auth/token"]["post"]["responses"]
    assert token["default"] == {"$ref": "#/components/responses/DEFAULT_ERROR"}


# --- real answers carry registered codes ------------------------------------------------------------

def test_real_error_answers_carry_registered_status_and_code(client):
    answers = [
        (client.get("/api/v1/no-such-thing"), 404, "not_found"),
        (client.post("/api/v1/auth/token", json={"username": 12, "password": ""}), 422, "validation_error"),
        (client.get("/api/v1/audit"), 401, "unauthenticated"),
        (client.delete("/api/v1/health"), 405, "method_not_allowed"),
        (client.post("/api/v1/auth/token", data='{"username": "x",', content_type="application/json"), 400,
         "malformed_json"),
        (client.post("/api/v1/auth/token", json={"username": "nobody", "password": "wrong password"}), 401,
         "invalid_credentials"),
    ]
    pairs = registry_pairs()
    for response, status, code in answers:
        assert (response.status_code, error_code(response)) == (status, code)
        assert (status, code) in pairs
