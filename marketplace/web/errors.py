"""Error pages for browsers: the same refusal as the API's envelope, in the console's words and style.

`marketplace.errors.envelope` hands every error outside /api/ to `html_error_page` (registered in
app.extensions by `init_web`); /api/ keeps the JSON envelope. A page that needs a login sends the
visitor to /login and back.
"""

from flask import redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l

from marketplace.web.refusals import refusal

TITLES = {
    400: _l("请求有误"), 401: _l("请先登录"), 403: _l("没有权限"), 404: _l("找不到这个页面"),
    405: _l("不能这样操作"), 409: _l("现在不能这样做"), 410: _l("已经过期"), 413: _l("内容太大"),
    415: _l("格式不对"), 422: _l("填写有误"), 429: _l("请稍后再试"), 500: _l("系统出错了"), 503: _l("系统繁忙"),
}


# A few codes say more than their status does.
CODE_TITLES = {"csrf_failed": _l("表单已过期"), "too_many_attempts": _l("请稍后再试")}


def html_error_page(status: int, code: str, message: str, details: dict):
    if status == 401 and request.method == "GET":
        return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
    title = CODE_TITLES.get(code) or TITLES.get(status) or (_l("系统出错了") if status >= 500 else _l("请求没有成功"))
    body = render_template("web/error.html", status=status, title=title, sentence=refusal(code, message),
                           request_id=details.get("request_id"))
    return body, status
