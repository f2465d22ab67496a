"""Create a programme from the staff console: `/staff/programmes/new` (admins only; auditors get 403).

One form carries every field of POST /api/v1/programmes but the thresholds of the market-integrity rules
(`anomaly_parameters`: the defaults until an admin sets them through the API). The posted fields are put
into the API's body
(prices typed in yuan become fen, whole numbers become integers) and loaded by the API's own schema,
then the same service creates the draft, so a refusal reads the same as through the API. Each refusal
is shown beside its field: an item's price or quota beside that item, a settlement rule's beside its
row. The form carries a form key, so a double tap creates one programme.
"""

import re
from dataclasses import dataclass
from datetime import date, timedelta

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from marshmallow import ValidationError

from marketplace.auth.access import require_actor, role_required
from marketplace.catalogue import service as catalogue
from marketplace.db import local_date, transaction, utcnow
from marketplace.errors import DomainError, Forbidden, ValidationFailed
from marketplace.idempotency import FORM_KEY_FIELD, new_form_key, once_per_form
from marketplace.programmes import service
from marketplace.programmes.schemas import ProgrammeCreateSchema
from marketplace.recipients.models import TAGS
from marketplace.recipients.pages import TAG_NAMES
from marketplace.web.forms import domain_refusal, say_field_message

staff_programme_forms = Blueprint("staff_programme_forms", __name__, template_folder="templates")

PAGE = "staff_programme_forms/new.html"
RULE_ROWS = 5  # score bands offered on the form; a blank row is skipped
PROGRAMME_PAGE = "staff_programmes.show"  # the programme's dashboard (built beside this form)
MONEY_RE = re.compile(r"^\d{1,9}(\.\d{1,2})?$")
WHOLE_RE = re.compile(r"^-?\d{1,12}$")

# The schema's and the service's English words for this form's rules, said plainly. Patterns keep what
# they name (the codes not in the catalogue).
PROGRAMME_REFUSALS = [
    (re.compile(r"^Not a GB/T 2260 region code\.$"), _l("不是有效的行政区划代码。请填 6 位数字，例如 510131。")),
    (re.compile(r"^A region code is 6 digits"), _l("行政区划代码是 6 位数字，例如 510131。")),
    (re.compile(r"^The programme must end on or after the day it starts\.$"), _l("结束日期不能早于开始日期。")),
    (re.compile(r"^A programme runs for at most five years\.$"), _l("一个项目最长五年。")),
    (re.compile(r"^A date from 1970-01-01 to 2199-12-31\.$"), _l("日期应在 1970 年到 2199 年之间。")),
    (re.compile(r"^Each item may appear only once\.$"), _l("每个服务项目只能选一次。")),
    (re.compile(r"^Not in the catalogue: (?P<codes>.*)\.$"), _l("这些服务项目不在服务目录里：%(codes)s。")),
    (re.compile(r"^A `default` co-payment percent is required\.$"), _l("请填写一般老人的自付比例。")),
    (re.compile(r"^At least one rule is required\.$"), _l("请至少填写一条结算规则。")),
    (re.compile(r"^Each min_score may appear only once\.$"), _l("每个最低分只能用一次。")),
    (re.compile(r"^One rule must start at min_score 0"),
     _l("要有一条从 0 分开始的规则，这样每个分数都有对应的付款比例。")),
    (re.compile(r"^A higher score may never pay a lower percent\.$"), _l("分数越高，付款比例不能越低。")),
]


def _said(message: str) -> str:
    for pattern, said in PROGRAMME_REFUSALS:
        matched = pattern.match(message)
        if matched:
            return str(said) % matched.groupdict() if matched.groupdict() else str(said)
    return say_field_message(message)


def form_key_field() -> Markup:
    """The hidden field with this form's key (one per form as drawn)."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(FORM_KEY_FIELD, new_form_key())


@staff_programme_forms.context_processor
def _context() -> dict:
    return {"form_key_field": form_key_field}


@dataclass(frozen=True)
class Posted:
    """The API's body made from the form, and where each item and rule of it came from on the form."""

    body: dict
    item_codes: list[str]  # items[i] is the item with this code
    rule_rows: list[int]  # settlement_rules[i] is the form's row with this number
    unreadable_prices: frozenset[str]  # item codes whose price is not an amount of money


def _number(value: str):
    """A whole number as an int; anything else as typed, for the schema to refuse in its words."""
    return int(value) if WHOLE_RE.match(value) else value


def _fen(value: str):
    if MONEY_RE.match(value):
        yuan, _dot, cents = value.partition(".")
        return int(yuan) * 100 + int(cents.ljust(2, "0") or 0)
    return value


def posted_body(form) -> Posted:
    """The form's fields as the body of POST /api/v1/programmes (blank fields left out: "not given")."""
    def given(name: str) -> str | None:
        value = form.get(name, "").strip()
        return value or None

    body: dict = {}
    for name in ("name", "authority", "region_code", "starts_on", "ends_on"):
        if given(name) is not None:
            body[name] = given(name)
    codes = list(dict.fromkeys(code.strip() for code in form.getlist("item") if code.strip()))
    items, unreadable = [], set()
    for code in codes:
        line: dict = {"item_code": code}
        if given(f"price-{code}") is not None:
            line["unit_price_fen"] = _fen(given(f"price-{code}"))
            if isinstance(line["unit_price_fen"], str):
                unreadable.add(code)
        if given(f"quota-{code}") is not None:
            line["monthly_quota"] = _number(given(f"quota-{code}"))
        if given(f"min-{code}") is not None:
            line["min_duration_minutes"] = _number(given(f"min-{code}"))
        items.append(line)
    body["items"] = items
    eligibility: dict = {"tags_any": [tag for tag in form.getlist("tags_any") if tag.strip()]}
    if given("min_age") is not None:
        eligibility["min_age"] = _number(given("min_age"))
    body["eligibility"] = eligibility
    body["copay_percent"] = {tag: _number(given(f"copay-{tag}")) for tag in ("default", *TAGS)
                             if given(f"copay-{tag}") is not None}
    rules, rows = [], []
    for row in range(RULE_ROWS):
        rule = {field: _number(given(f"rule-{row}-{field}")) for field in ("min_score", "pay_percent")
                if given(f"rule-{row}-{field}") is not None}
        if rule:
            rules.append(rule)
            rows.append(row)
    body["settlement_rules"] = rules
    for name in ("reserved_share_percent", "rating_window_days", "reversal_window_hours"):
        if given(name) is not None:
            body[name] = _number(given(name))
    if given("choice_required") is not None:
        body["choice_required"] = given("choice_required")
    return Posted(body=body, item_codes=codes, rule_rows=rows, unreadable_prices=frozenset(unreadable))


def _texts(messages) -> list[str]:
    if isinstance(messages, str):
        return [messages]
    if isinstance(messages, dict):
        return [text for value in messages.values() for text in _texts(value)]
    return [text for value in messages for text in _texts(value)]


def form_errors(fields: dict, posted: Posted) -> dict[str, list[str]]:
    """The schema's or the service's messages per field of the body, as {form field: [plain message]}:
    nested messages land beside the item, the tag or the rule row they are about."""
    errors: dict[str, list[str]] = {}

    def add(name: str, messages) -> None:
        errors.setdefault(name, []).extend(_said(text) for text in _texts(messages))

    for name, messages in fields.items():
        if name == "items" and isinstance(messages, dict):
            for index, problems in messages.items():
                code = posted.item_codes[int(index)]
                for field, said in problems.items() if isinstance(problems, dict) else [("_", problems)]:
                    if field == "unit_price_fen":
                        if code in posted.unreadable_prices:
                            errors[f"price-{code}"] = [gettext("请填写金额（元），例如 15 或 15.50。")]
                        else:
                            errors[f"price-{code}"] = [gettext("单价应在 ¥0.01 到 ¥10,000.00 之间。")]
                    elif field == "monthly_quota":
                        add(f"quota-{code}", said)
                    elif field == "min_duration_minutes":
                        add(f"min-{code}", said)
                    else:
                        add("items", said)
        elif name == "items":
            add("items", [gettext("请至少选一个服务项目。")] if not posted.item_codes else messages)
        elif name == "eligibility" and isinstance(messages, dict):
            for field, said in messages.items():
                add("min_age" if field == "min_age" else "tags_any", said)
        elif name == "copay_percent" and isinstance(messages, dict):
            for tag, said in messages.items():
                add(f"copay-{tag}" if tag in ("default", *TAGS) else "copay-default", said)
        elif name == "copay_percent":
            add("copay-default", messages)
        elif name == "settlement_rules" and isinstance(messages, dict):
            for index, problems in messages.items():
                row = posted.rule_rows[int(index)]
                for field, said in problems.items() if isinstance(problems, dict) else [("_", problems)]:
                    add(f"rule-{row}-{field}" if field in ("min_score", "pay_percent") else "settlement_rules",
                        said)
        elif name == "settlement_rules":
            add("settlement_rules", [gettext("请至少填写一条结算规则。")] if not posted.rule_rows else messages)
        else:
            add(name, messages)
    return errors


def _default_values(actor) -> dict:
    today = local_date(utcnow())
    starts = (today.replace(day=1) + timedelta(days=32)).replace(day=1)  # the first of next month
    return {"region_code": actor.region_code or "", "starts_on": starts.isoformat(),
            "ends_on": date(starts.year, 12, 31).isoformat(), "reserved_share_percent": "0",
            "rating_window_days": "30", "reversal_window_hours": "48", "choice_required": "true",
            "rule-0-min_score": "0", "item": [], "tags_any": []}


def _posted_values(form) -> dict:
    values = {name: value for name, value in form.items() if name not in ("csrf_token", FORM_KEY_FIELD)}
    values["item"] = form.getlist("item")
    values["tags_any"] = form.getlist("tags_any")
    return values


def _labels(items) -> dict[str, str]:
    """What each field is called, for the summary of refusals at the top of a long form."""
    labels = {"name": gettext("项目名称"), "authority": gettext("主管部门"), "region_code": gettext("区域代码"),
              "starts_on": gettext("开始日期"), "ends_on": gettext("结束日期"), "items": gettext("购买的服务项目"),
              "min_age": gettext("最低年龄"), "tags_any": gettext("只给这些老人"),
              "copay-default": gettext("一般老人的自付比例"),
              "reserved_share_percent": gettext("预留份额"), "settlement_rules": gettext("结算规则"),
              "rating_window_days": gettext("评价时限"), "reversal_window_hours": gettext("撤销时限"),
              "choice_required": gettext("选择服务机构")}
    for item in items:
        labels[f"price-{item.code}"] = gettext("%(item)s的单价", item=item.name)
        labels[f"quota-{item.code}"] = gettext("%(item)s每人每月几次", item=item.name)
        labels[f"min-{item.code}"] = gettext("%(item)s最短的服务时长", item=item.name)
    for tag in TAGS:
        labels[f"copay-{tag}"] = gettext("%(tag)s老人的自付比例", tag=TAG_NAMES[tag])
    for row in range(RULE_ROWS):
        labels[f"rule-{row}-min_score"] = gettext("结算规则第 %(row)s 档的最低得分", row=row + 1)
        labels[f"rule-{row}-pay_percent"] = gettext("结算规则第 %(row)s 档的付款比例", row=row + 1)
    return labels


def _form(values: dict, *, errors: dict | None = None, status: int = 200):
    items = catalogue.list_items()
    prices = {item.code: values.get(f"price-{item.code}",
                                    f"{item.standard_price_fen // 100}.{item.standard_price_fen % 100:02d}")
              for item in items}
    return render_template(PAGE, values=values, errors=errors or {}, items=items, prices=prices, tags=TAGS,
                           tag_names=TAG_NAMES, rule_rows=range(RULE_ROWS),
                           labels=_labels(items) if errors else {}), status


@staff_programme_forms.get("/staff/programmes/new")
@role_required("admin")
def new():
    """The empty form (a region-limited admin's region filled in)."""
    return _form(_default_values(require_actor()))


@staff_programme_forms.post("/staff/programmes/new")
@role_required("admin")
def create():
    """Create the draft programme, then its page (or the staff home); the form again with each refusal
    beside its field."""
    actor = require_actor()
    posted = posted_body(request.form)
    values = _posted_values(request.form)
    try:
        data = ProgrammeCreateSchema().load(posted.body)
    except ValidationError as invalid:  # its messages nest: by item, by tag, by rule (ValidationFailed flattens)
        return _form(values, errors=form_errors(invalid.messages, posted), status=422)
    try:
        with transaction():
            address = once_per_form(lambda: _create(actor, data))
    except ValidationFailed as refused:
        return _form(values, errors=form_errors(refused.details.get("fields") or {}, posted), status=422)
    except Forbidden:  # the region lies outside the admin's own
        said = gettext("您只能在 %(region)s 区域内建立项目。", region=actor.region_code)
        return _form(values, errors={"region_code": [said]}, status=403)
    except DomainError as refused:
        return _form(values, errors=domain_refusal(refused), status=refused.status)
    return redirect(address, 303)


def _create(actor, data: dict) -> str:
    programme = service.create_programme(**data, actor=actor, now=utcnow())
    flash(gettext("已建立草稿项目“%(name)s”。加上预算后就可以启动。", name=programme.name), "success")
    return programme_address(programme.id)


def programme_address(programme_id: int) -> str:
    """The programme's dashboard (marketplace/reports/programme_pages.py)."""
    return url_for(PROGRAMME_PAGE, programme_id=programme_id)
