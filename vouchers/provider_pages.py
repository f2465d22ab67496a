"""The provider staff's home `/provider`: today's services, the month so far, the latest redemptions.

(Scanning at the door, reversals, exports and settlements follow in the provider's workspace.)
"""

from flask import Blueprint, render_template
from flask_babel import lazy_gettext as _l

from marketplace.auth.access import require_actor, role_required
from marketplace.db import utcnow
from vouchers.service.workday import provider_workday

PRESENCE_WORDS = {"presence_code": _l("扫码"), "typed_code": _l("输入数字码"), "voucher_card": _l("纸质服务券")}
STATUS_WORDS = {"completed": _l("已完成"), "reversed": _l("已撤销")}

provider_pages = Blueprint("provider_pages", __name__, template_folder="templates")


@provider_pages.get("/provider")
@role_required("provider")
def home():
    return render_template("provider_pages/home.html", presence_words=PRESENCE_WORDS, status_words=STATUS_WORDS,
                           **provider_workday(actor=require_actor(), now=utcnow()))
