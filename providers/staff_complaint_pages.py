"""Staff pages for complaints and rankings (admins act, auditors read):

- `/staff/complaints`: the queue — open complaints first, oldest first, with their age and the provider's
  answer; then the resolved ones. Filters (status, provider, answered), paging, and the same list as CSV
  or XLSX (complaint texts and answers are typed by recipients and providers: every cell goes through
  the spreadsheet neutraliser).
- `/staff/complaints/<id>`: one complaint with the recipient, the provider, the redemption it holds and the
  provider's answer above the resolve form (upheld or not, with a resolution) — the same service as
  POST /api/v1/complaints/{id}/resolve. Admins only; an auditor sees no form and a posted one is 403.
- `/staff/rankings`: the ranking of one item's providers per region (and programme), with the API's
  complaint counts (GET /api/v1/rankings), exportable as well.
"""

from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from marshmallow import fields, validate
from sqlalchemy import select
from werkzeug.routing import BuildError

from marketplace import spreadsheets
from marketplace.auth.access import require_actor, role_required
from marketplace.catalogue import service as catalogue
from marketplace.db import db, local_date, transaction, utcnow
from marketplace.errors import DomainError, ValidationFailed
from marketplace.idempotency import FORM_KEY_FIELD, new_form_key, once_per_form
from marketplace.programmes.models import Programme
from marketplace.schemas import ID_RANGE
from marketplace.web.forms import domain_refusal, field_errors, form_input
from providers.models import Provider, ProviderRegion
from providers.schemas import ComplaintQuerySchema, RankingQuerySchema, ResolutionSchema
from providers.service import complaints, ranking
from providers.service.complaint_queue import complaint_detail, complaint_queue, queue_lines, queue_providers

PER_PAGE = 25
STATUS_WORDS = {"open": _l("未处理"), "resolved": _l("已处理")}
KIND_WORDS = {"social_organisation": _l("社会组织"), "enterprise": _l("企业"), "public_institution": _l("事业单位"),
              "community_organisation": _l("社区社会组织"), "rural_collective": _l("农村集体经济组织")}
REDEMPTION_STATUS_WORDS = {"completed": _l("已完成"), "reversed": _l("已撤销")}
# The exports are for the bureau's files: Chinese headers and words, whatever the locale.
EXPORT_HEADERS = ["投诉编号", "状态", "投诉时间", "已等待（天）", "服务机构", "服务对象", "身份证号码（脱敏）",
                  "核销编号", "投诉内容", "是否已答复", "机构答复", "答复时间", "答复人", "处理结果", "处理意见",
                  "处理时间", "处理人"]
EXPORT_STATUS = {"open": "未处理", "resolved": "已处理"}
RANKING_HEADERS = ["名次", "服务机构", "类型", "评价人数", "平均分", "加权得分", "满意率", "投诉属实（件）",
                   "全部投诉（件）", "换走的老人"]
EXPORT_KIND = {"social_organisation": "社会组织", "enterprise": "企业", "public_institution": "事业单位",
               "community_organisation": "社区社会组织", "rural_collective": "农村集体经济组织"}

staff_complaints = Blueprint("staff_complaints", __name__, template_folder="templates")


def form_key_field() -> Markup:
    """The hidden field with this form's key (one per form as drawn): a double click resolves once."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(FORM_KEY_FIELD, new_form_key())


def _link(endpoint: str, **values) -> str | None:
    """The address of another helper's page when it exists (its argument named as it names it), else None."""
    if endpoint not in current_app.view_functions:
        return None
    name, value = next(iter(values.items()))
    for argument in (name, "id"):
        try:
            return url_for(endpoint, **{argument: value})
        except BuildError:
            continue
    return None


@staff_complaints.context_processor
def _context() -> dict:
    return {"status_words": STATUS_WORDS, "kind_words": KIND_WORDS, "form_key_field": form_key_field,
            "redemption_status_words": REDEMPTION_STATUS_WORDS, "link": _link}


class QueueQuery(ComplaintQuerySchema):
    """The queue's GET form: the API's filters, plus whether the provider has answered."""

    answered = fields.Boolean(load_default=None, metadata={"description": "Only answered (true) or unanswered"})
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))


def _query(source) -> dict:
    """:raises ValidationFailed: a filter the schema refuses."""
    query = form_input(QueueQuery(), source=source)
    query.pop("per_page", None)
    return query


def _asked(query: dict) -> dict:
    """The filters as they go back into addresses (paging, exports)."""
    asked = {name: query.get(name) for name in ("status", "provider_id") if query.get(name) is not None}
    if query.get("answered") is not None:
        asked["answered"] = "true" if query["answered"] else "false"
    return asked


# --- the queue ----------------------------------------------------------------------------------------

@staff_complaints.get("/staff/complaints")
@role_required("admin", "auditor")
def index():
    actor = require_actor()
    providers = queue_providers(actor=actor)
    try:
        query = _query(request.args)
    except ValidationFailed as refused:
        return render_template("staff_complaints/index.html", errors=field_errors(refused), query={}, asked={},
                               found=None, providers=providers, raw=request.args), 422
    found = complaint_queue(actor=actor, per_page=PER_PAGE, now=utcnow(), **query)
    return render_template("staff_complaints/index.html", errors={}, query=query, asked=_asked(query), found=found,
                           providers=providers, raw=request.args)


def _export_rows(actor, query: dict):
    for line in queue_lines(actor=actor, now=utcnow(), **{k: v for k, v in query.items() if k != "page"}):
        yield [line.id, EXPORT_STATUS.get(line.status, line.status), _local_time(line.created_at), line.age_days,
               line.provider_name, line.recipient_name or "", line.recipient_id_masked or "", line.redemption_id or "",
               line.text, "已答复" if line.answer else "未答复", line.answer or "", _local_time(line.answered_at),
               line.answered_by or "", {True: "属实", False: "不属实"}.get(line.upheld, ""), line.resolution or "",
               _local_time(line.resolved_at), line.resolved_by or ""]


def _local_time(instant) -> str:
    """An instant as people read it in the export: local time, to the minute."""
    if instant is None:
        return ""
    return instant.astimezone(ZoneInfo(current_app.config["LOCAL_TIMEZONE"])).strftime("%Y-%m-%d %H:%M")


def _stream(kind: str, title: str, headers: list[str], rows, filename: str) -> Response:
    return spreadsheets.download(kind, title, headers, rows, filename)


def _export(kind: str):
    actor = require_actor()
    try:
        query = _query(request.args)
    except ValidationFailed:
        return index()  # the list with the refusal beside its field (422)
    return _stream(kind, "投诉", EXPORT_HEADERS, _export_rows(actor, query),
                   f"complaints-{local_date(utcnow()):%Y%m%d}")


@staff_complaints.get("/staff/complaints.csv")
@role_required("admin", "auditor")
def export_csv():
    """The queue as filtered, every page, as CSV (UTF-8 with a BOM, Chinese headers)."""
    return _export("csv")


@staff_complaints.get("/staff/complaints.xlsx")
@role_required("admin", "auditor")
def export_xlsx():
    """The queue as filtered, every page, as an Excel workbook."""
    return _export("xlsx")


# --- one complaint ----------------------------------------------------------------------------------

def _complaint_page(complaint_id: int, *, errors: dict, status: int = 200, posted=None):
    actor = require_actor()
    line, held = complaint_detail(complaint_id, actor=actor, now=utcnow())
    return render_template("staff_complaints/show.html", line=line, held=held, errors=errors,
                           posted=posted or {}), status


@staff_complaints.get("/staff/complaints/<int:complaint_id>")
@role_required("admin", "auditor")
def show(complaint_id: int):
    return _complaint_page(complaint_id, errors={})


@staff_complaints.post("/staff/complaints/<int:complaint_id>/resolve")
@role_required("admin")
def resolve(complaint_id: int):
    """Resolve as upheld or not with a resolution, once per form; back to the complaint with a message."""
    actor = require_actor()
    complaint_detail(complaint_id, actor=actor, now=utcnow())  # 404 / 403 before anything else
    try:
        data = form_input(ResolutionSchema())
        with transaction():
            once_per_form(lambda: _resolve(actor, complaint_id, data))
    except DomainError as refused:
        return _complaint_page(complaint_id, errors=domain_refusal(refused), status=refused.status,
                               posted=request.form)
    said = gettext("投诉已处理。")
    if ("success", said) not in session.get("_flashes", []):  # a double click's second answer says it once
        flash(said, "success")
    return redirect(url_for(".show", complaint_id=complaint_id), 303)


def _resolve(actor, complaint_id: int, data: dict) -> str:
    complaints.resolve_complaint(complaint_id=complaint_id, upheld=data["upheld"], resolution=data["resolution"],
                                 actor=actor, now=utcnow())
    return url_for(".show", complaint_id=complaint_id)


# --- rankings -------------------------------------------------------------------------------------

class RankingQuery(RankingQuerySchema):
    """The rankings' GET form: the API's query, the item optional (the first catalogue item by default)."""

    item_code = fields.String(load_default=None, validate=validate.Length(min=1, max=32))
    programme_id = fields.Integer(load_default=None, validate=ID_RANGE)


def _board(source) -> dict:
    """The ranking asked for in *source*, with the form's choices.

    :raises ValidationFailed: a field the schema refuses, or an item not in the catalogue.
    """
    query = form_input(RankingQuery(), source=source)
    items = catalogue.list_items()
    if query.get("item_code") is None:
        item = items[0] if items else None
    else:
        item = next((one for one in items if one.code == query["item_code"]), None)
        if item is None:
            raise ValidationFailed(fields={"item_code": ["Must be one of: the catalogue's items."]})
    rows = ranking.rankings(item_code=item.code, region_code=query.get("region_code"),
                            programme_id=query.get("programme_id")) if item else []
    # The public ranking counts upheld complaints; staff see every one they may read beside it.
    counts = complaints.complaint_counts(provider_ids=[row["provider_id"] for row in rows], actor=require_actor())
    return {"item": item, "region_code": query.get("region_code"), "programme_id": query.get("programme_id"),
            "rows": rows, "complaints": counts}


def _choices() -> dict:
    regions = db.session.scalars(select(ProviderRegion.region_code).distinct()
                                 .join(Provider, Provider.id == ProviderRegion.provider_id)
                                 .where(Provider.status == "approved").order_by(ProviderRegion.region_code)).all()
    programmes = db.session.execute(select(Programme.id, Programme.name).order_by(Programme.id.desc())).all()
    return {"item_choices": [(item.code, item.name) for item in catalogue.list_items()],
            "region_choices": [(code, code) for code in regions],
            "programme_choices": [(programme_id, name) for programme_id, name in programmes]}


def _board_args(board: dict) -> dict:
    args = {"item_code": board["item"].code} if board["item"] else {}
    if board["region_code"]:
        args["region_code"] = board["region_code"]
    if board["programme_id"]:
        args["programme_id"] = board["programme_id"]
    return args


@staff_complaints.get("/staff/rankings")
@role_required("admin", "auditor")
def rankings():
    """One item's providers ranked per region (and programme), with their complaint counts."""
    actor = require_actor()
    source = request.args
    if not source and actor.region_code:  # a region's admin starts with the ranking of their region
        source = {"region_code": actor.region_code}
    try:
        board = _board(source)
    except ValidationFailed as refused:
        return render_template("staff_complaints/rankings.html", board=None, errors=field_errors(refused),
                               asked=request.args, args={}, **_choices()), 422
    return render_template("staff_complaints/rankings.html", board=board, errors={}, asked=_board_args(board),
                           args=_board_args(board), **_choices())


def _ranking_export(kind: str):
    try:
        board = _board(request.args)
    except ValidationFailed:
        return rankings()
    rows = ([row["rank"], row["name"], EXPORT_KIND.get(row["kind"], row["kind"]), row["ratings_count"],
             "" if row["mean_score"] is None else f"{row['mean_score']:.2f}",
             "" if row["bayesian_score"] is None else f"{row['bayesian_score']:.2f}",
             "" if row["satisfaction_rate"] is None else f"{100 * row['satisfaction_rate']:.0f}%",
             row["complaints_count"], board["complaints"][row["provider_id"]]["all"],
             "" if row["switch_away_rate"] is None else f"{100 * row['switch_away_rate']:.0f}%"]
            for row in board["rows"])
    name = f"rankings-{board['item'].code if board['item'] else 'none'}-{board['region_code'] or 'all'}"
    return _stream(kind, "服务排名", RANKING_HEADERS, rows, name)


@staff_complaints.get("/staff/rankings.csv")
@role_required("admin", "auditor")
def rankings_csv():
    return _ranking_export("csv")


@staff_complaints.get("/staff/rankings.xlsx")
@role_required("admin", "auditor")
def rankings_xlsx():
    return _ranking_export("xlsx")
