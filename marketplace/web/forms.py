"""Forms that post without JavaScript, read through the API's own marshmallow schemas.

    try:
        data = form_input(ChoiceSchema())
        ...call the service...
    except ValidationFailed as refused:
        return render_template(..., errors=field_errors(refused)), 422

One rule, one message: the schema refuses, and the console says the same refusal in plain words
beside the field (`field_errors`) and in the summary at the top of the form.
"""

import re

from flask import request
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from marshmallow import Schema, ValidationError, fields

from marketplace.errors import DomainError, ValidationFailed
from marketplace.web.refusals import refusal

# marshmallow's and our schemas' English messages, said plainly. Patterns keep the numbers they carry.
FIELD_MESSAGES = [
    # The auth service's username and password rules (marketplace.auth.service), for every form with a login.
    (re.compile(r"^3–64 characters"), _l("用户名要 3 到 64 个字符，只能用小写英文字母、数字和 _ . @ -，"
                                         "并以字母或数字开头。")),
    (re.compile(r"^Use at least (?P<count>\d+) characters\.$"), _l("密码至少要 %(count)s 个字符。")),
    (re.compile(r"^Use at most (?P<count>\d+) characters\.$"), _l("密码最多 %(count)s 个字符。")),
    (re.compile(r"^A password of only whitespace"), _l("密码不能只有空格。")),
    (re.compile(r"^Use at least (?P<count>\d+) different characters"),
     _l("密码里至少要有 %(count)s 个不同的字符：几个字符反复用，很容易被猜到。")),
    (re.compile(r"^The password must differ from the username\.$"), _l("密码不能和用户名一样。")),
    (re.compile(r"^This is one of the most common passwords"),
     _l("这是最常见的密码之一，很容易被猜到。请换一个（几个不相关的词连在一起就很好）。")),
    (re.compile(r"^Missing data for required field\.$"), _l("请填写这一项。")),
    (re.compile(r"^Field may not be null\.$"), _l("请填写这一项。")),
    (re.compile(r"^Not a valid integer\.$"), _l("请填写一个整数。")),
    (re.compile(r"^Not a valid number\.$"), _l("请填写一个数字。")),
    (re.compile(r"^Not a valid (string|boolean)\.$"), _l("格式不对。")),
    (re.compile(r"^Not a valid (date|datetime)\.$"), _l("日期格式不对。")),
    (re.compile(r"^Not a valid list\.$"), _l("格式不对。")),
    (re.compile(r"^Must be one of: .*\.$"), _l("请从给出的选项中选一个。")),
    (re.compile(r"^Unknown field\.$"), _l("表单里有多余的内容。请刷新页面后再提交。")),
    (re.compile(r"^Longer than maximum length (?P<max>\d+)\.$"), _l("最多 %(max)s 个字。")),
    (re.compile(r"^Shorter than minimum length (?P<min>\d+)\.$"), _l("至少 %(min)s 个字。")),
    (re.compile(r"^Length must be between (?P<min>\d+) and (?P<max>\d+)\.$"), _l("应为 %(min)s 到 %(max)s 个字。")),
    (re.compile(r"^Length must be (?P<equal>\d+)\.$"), _l("应为 %(equal)s 个字。")),
    (re.compile(r"^Must be greater than or equal to (?P<min>-?\d+)( and less than or equal to (?P<max>-?\d+))?\.$"),
     _l("应在 %(min)s 到 %(max)s 之间。")),
    (re.compile(r"^Must be less than or equal to (?P<max>-?\d+)\.$"), _l("不能大于 %(max)s。")),
    (re.compile(r"^String does not match expected pattern\.$"), _l("格式不对。")),
]


def say_field_message(message: str) -> str:
    """A schema's message in the console's words (a message with no entry is shown as the schema says it)."""
    for pattern, said in FIELD_MESSAGES:
        matched = pattern.match(message)
        if matched:
            values = {key: value for key, value in matched.groupdict().items() if value is not None}
            if "min" in values and "max" not in values:
                return gettext("不能小于 %(min)s。", min=values["min"])
            return str(said) % values if values else str(said)
    return message


def _flatten(messages) -> list[str]:
    if isinstance(messages, str):
        return [messages]
    if isinstance(messages, dict):
        return [text for value in messages.values() for text in _flatten(value)]
    return [text for value in messages for text in _flatten(value)]


def field_errors(refused: ValidationFailed) -> dict[str, list[str]]:
    """{field: [plain message, …]} for the form; `_form` holds what belongs to no one field."""
    found = refused.details.get("fields") or {}
    errors = {name: [say_field_message(text) for text in _flatten(messages)] for name, messages in found.items()}
    if not errors:
        errors["_form"] = [refusal(refused.code, refused.message)]
    return errors


def domain_refusal(error: DomainError) -> dict[str, list[str]]:
    """A service's refusal (409, 410, 422 …) for the top of the form, in the console's words."""
    if isinstance(error, ValidationFailed):
        return field_errors(error)
    return {"_form": [refusal(error.code, error.message)]}


def form_input(schema: Schema, *, exclude: tuple[str, ...] = ("csrf_token",), source=None) -> dict:
    """The posted form (or *source*, e.g. `request.args` for a search form), loaded by *schema* exactly as
    the API loads JSON.

    Blank fields count as not given; list fields take every value posted under their name.
    :raises ValidationFailed: with the schema's messages per field.
    """
    given = request.form if source is None else source
    raw: dict = {}
    for name, field in schema.fields.items():
        key = field.data_key or name
        if key in exclude or field.dump_only:
            continue
        if isinstance(field, fields.List):
            values = [value.strip() for value in given.getlist(key) if value.strip()]
            if values or key in given:
                raw[key] = values
            continue
        value = given.get(key)
        if value is None:
            continue
        value = value.strip()
        if value == "":
            continue  # blank is "not given": a required field then says "please fill this in"
        raw[key] = value
    try:
        return schema.load(raw)
    except ValidationError as invalid:
        messages = invalid.messages if isinstance(invalid.messages, dict) else {"_form": invalid.messages}
        raise ValidationFailed(fields=messages) from None
