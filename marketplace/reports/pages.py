"""The public portal (信息公开): programmes, budgets and spending, providers and their ratings, rankings,
the catalogue and the negative list. No login, and never personal data: every page reads the same public
read models as the /api/v1/public answers (marketplace/reports/service.py) or the catalogue's service.
"""

from flask import Blueprint, render_template, request
from flask_babel import lazy_gettext as _l

from marketplace.catalogue import service as catalogue_service
from marketplace.db import utcnow
from marketplace.errors import ValidationFailed
from marketplace.recipients.pages import SWITCH_REASON_NAMES
from marketplace.reports import service
from marketplace.schemas import PageArgs
from marketplace.web.forms import form_input
from providers.schemas import RankingQuerySchema

portal = Blueprint("portal", __name__, template_folder="templates")

PROVIDERS_PER_PAGE = 20

KIND_NAMES = {
    "social_organisation": _l("社会组织"), "enterprise": _l("企业"), "public_institution": _l("事业单位"),
    "community_organisation": _l("社区社会组织"), "rural_collective": _l("农村集体经济组织"),
}
TAG_NAMES = {
    "default": _l("一般老人"), "disabled": _l("失能老人"), "low_income": _l("低保老人"),
    "extreme_poverty": _l("特困老人"), "advanced_age": _l("高龄老人"), "living_alone": _l("独居老人"),
}
PROGRAMME_STATUS_NAMES = {"active": _l("实施中"), "closed": _l("已结束")}
SETTLEMENT_STATUS_NAMES = {"approved": _l("已审核，待支付"), "paid": _l("已支付")}
# The negative list's reasons in plain words (the seeded rows carry the legal wording, in English).
NEGATIVE_LIST_REASONS = {
    "goods": _l("买东西按政府采购的货物规定办理，不能当作服务购买。"),
    "construction": _l("建设工程按招标投标的规定办理，不能当作服务购买。"),
    "financing": _l("不能借购买服务的名义融资或借钱，不能形成隐性债务。"),
    "staff_hiring": _l("购买服务买的是服务结果，不是雇人：不能用来聘用人员或劳务派遣。"),
    "judicial": _l("司法审判是国家的核心职能，不能交给社会力量。"),
    "administrative_penalty": _l("行政处罚是政府的核心职能，不能购买。"),
    "administrative_coercion": _l("行政强制是政府的核心职能，不能购买。"),
}
# What each form field of the rankings says when its value is refused (whatever the schema's reason).
RANKING_FIELD_MESSAGES = {
    "item_code": _l("请从列表里选一个服务项目。"),
    "region_code": _l("地区代码是 6 位数字，请从列表里选一个地区。"),
}


@portal.context_processor
def _names() -> dict:
    return {"kind_names": KIND_NAMES, "tag_names": TAG_NAMES, "programme_status_names": PROGRAMME_STATUS_NAMES,
            "settlement_status_names": SETTLEMENT_STATUS_NAMES, "switch_reason_names": SWITCH_REASON_NAMES}


@portal.get("/")
def home():
    """Programmes in force, how the scheme works, how to complain, where to log in."""
    return render_template("portal/home.html", programmes=service.public_programmes(now=utcnow()))


@portal.get("/public/programmes/<int:programme_id>")
def programme(programme_id):
    """One programme: items and standards, co-payments, budget and spending, settlements with scores, and
    switching as aggregates."""
    return render_template("portal/programme.html", **service.public_programme_report(programme_id, now=utcnow()))


@portal.get("/public/providers")
def providers():
    """Approved providers with their rating summary, a page at a time."""
    try:
        page = form_input(PageArgs(only=("page",)), source=request.args)["page"]
    except ValidationFailed:
        return render_template("portal/providers.html", directory=None, bad_page=True), 400
    directory = service.public_provider_directory(page=page, per_page=PROVIDERS_PER_PAGE)
    if page > directory["pages"]:
        return render_template("portal/providers.html", directory=directory, bad_page=True), 404
    return render_template("portal/providers.html", directory=directory, bad_page=False)


@portal.get("/public/rankings")
def rankings():
    """Providers of one item ranked in one region (or everywhere), with the formula in plain words."""
    try:
        query = form_input(RankingQuerySchema(only=("item_code", "region_code"), partial=("item_code",)),
                           source=request.args)
        board = service.public_rankings(**query)
    except ValidationFailed as refused:
        # The form again with the refusal beside the field, and no ranking (of what was not asked for).
        errors = {name: [str(RANKING_FIELD_MESSAGES.get(name, RANKING_FIELD_MESSAGES["item_code"]))]
                  for name in refused.details.get("fields") or ("item_code",)}
        return _rankings_page(service.public_rankings(), errors, request.args.get("item_code", ""),
                              request.args.get("region_code", "")), 422
    return _rankings_page(board, {}, board["item"].code if board["item"] else "", board["region_code"] or "")


def _rankings_page(board: dict, errors: dict, chosen_item: str, chosen_region: str) -> str:
    return render_template("portal/rankings.html", board=board, errors=errors, chosen_item=chosen_item,
                           chosen_region=chosen_region,
                           item_choices=[(item.code, item.name) for item in board["items"]],
                           region_choices=[(code, code) for code in board["regions"]])


@portal.get("/public/catalogue")
def catalogue():
    """The six categories of the guidance catalogue with their items, and the negative list."""
    return render_template("portal/catalogue.html", overview=catalogue_service.catalogue_overview(),
                           negative_reasons=NEGATIVE_LIST_REASONS)
