"""What the console says for each error code of the API: one plain sentence, then what to do next.

The registry of codes (docs/errors.md) is the API's; this is its face for people. A test checks that
every code in the registry has its sentence here, so a new refusal cannot reach a page in English.
"""

from flask_babel import lazy_gettext as _l

REFUSALS = {
    "bad_request": _l("请求格式不对。请返回上一页重新填写。"),
    "malformed_json": _l("请求格式不对。请返回上一页重新填写。"),
    "invalid_credentials": _l("用户名或密码不对。请再试一次，或联系社区工作人员。"),
    "unauthenticated": _l("请先登录。"),
    "csrf_failed": _l("这个表单已经过期。请回到上一页，刷新后再提交一次。"),
    "forbidden": _l("您没有权限做这件事。如有疑问，请联系民政部门。"),
    "four_eyes_required": _l("结算需要另一位工作人员审核：起草人和由起草人创建的账号都不能审核。"),
    "provider_not_approved": _l("服务机构还没有通过审核或已被暂停，暂时不能做这件事。"),
    "provider_not_chosen": _l("这位老人这项服务选择的是别的服务机构。请老人先在“我的服务”里改选。"),
    "not_found": _l("没有找到。可能已经删除，或地址有误。"),
    "method_not_allowed": _l("不能这样操作。请从页面上的按钮进入。"),
    "already_enrolled": _l("这家服务机构已经加入这个项目。"),
    "application_pending": _l("已经申请过加入这个项目，民政部门正在审核，请等待结果。"),
    "already_rated": _l("这次服务已经评价过了，谢谢您。"),
    "already_settled": _l("这笔服务已经结算，不能再撤销。如有错误，请联系民政部门。"),
    "budget_below_committed": _l("预算不能低于已经发放、核销和结算的金额。"),
    "budget_exceeded": _l("剩余预算不够，本次什么都没有发放。"),
    "conflict": _l("数据刚刚被别人修改过。请刷新页面后再试。"),
    "duplicate_item": _l("这个服务项目编码已经存在。"),
    "duplicate_provider": _l("这个统一社会信用代码已经登记过。"),
    "duplicate_recipient": _l("这个身份证号码的老人已经登记过。"),
    "duplicate_username": _l("这个用户名已经有人用了，请换一个。"),
    "cannot_deactivate_self": _l("不能停用自己的账号。需要时请联系民政部门。"),
    "idempotency_key_in_flight": _l("上一次提交还在处理中，请稍等几秒再刷新。"),
    "invalid_transition": _l("当前状态下不能这样改。可能别人刚刚改过，请刷新页面。"),
    "no_budget": _l("项目还没有预算，不能启动。"),
    "no_valid_voucher": _l("这位老人这项服务本月的服务券已经用完或已过期。"),
    "not_approved": _l("结算还没有审核通过，不能付款。"),
    "programme_closed": _l("这个项目已经结束。"),
    "programme_not_active": _l("这个项目还没有启动或已经暂停。"),
    "reversal_window_closed": _l("已经过了可以撤销的时间。如有错误，请联系民政部门。"),
    "token_already_used": _l("这个码已经用过了。请老人打开“我的码”，刷新一个新码。"),
    "voucher_already_redeemed": _l("这张服务券已经用过了。"),
    "voucher_not_issued": _l("这张服务券已经用过、过期或作废，不能再打印。"),
    "rating_window_closed": _l("已经过了评价时间。如对服务不满意，仍然可以投诉。"),
    "voucher_expired": _l("这张服务券已经过期。"),
    "payload_too_large": _l("上传的内容太大了。"),
    "unsupported_media_type": _l("提交的格式不对。请从页面上的表单提交。"),
    "idempotency_key_reused": _l("这次提交和上一次不一样。请刷新页面后再提交。"),
    "invalid_credit_code": _l("统一社会信用代码不正确，请核对后再填。"),
    "invalid_id_number": _l("身份证号码不正确，请核对后再填。"),
    "invalid_token": _l("这个码不对。请核对后重新输入，或请老人刷新一个新码。"),
    "negative_list": _l("这一项在负面清单上，不能用政府资金购买。"),
    "no_matching_items": _l("这家服务机构不提供这个项目的任何服务。"),
    "no_matching_regions": _l("这家服务机构的服务区域不在这个项目的范围内。"),
    "choice_changed": _l("刚才有人改过这项服务的服务机构（比如社区工作人员帮您改的）。"
                         "请看看现在是哪一家，再决定换不换。"),
    "provider_not_eligible": _l("这家服务机构不能为您提供这项服务，请选择列表中的另一家。"),
    "token_expired": _l("这个码已经过期。请老人打开“我的码”，刷新一个新码。"),
    "validation_error": _l("有几项填写得不对，请看每一项旁边的说明。"),
    "rate_limited": _l("操作太频繁了，请稍等一会儿再试。"),
    "too_many_attempts": _l("错误次数太多，请过一会儿再试。"),
    "http_error": _l("请求没有成功。请返回上一页再试。"),
    "internal_error": _l("系统出错了，我们已经记录下来。请稍后再试；如果一直这样，请拨打 12345 政务服务便民热线。"),
    "database_unavailable": _l("系统暂时忙不过来，请过一会儿再试。"),
    "complaint_already_answered": _l("这条投诉已经答复过了，答复不能修改。如需补充，请联系民政部门。"),
    "too_many_open_complaints": _l("对这家服务机构已经有 3 条投诉正在处理。请等民政部门处理完其中一条再投诉；"
                                   "着急的话，请拨打 12345 政务服务便民热线。"),
}


def refusal(code: str, fallback: str = "") -> str:
    """The console's sentence for an error code (the API's own message when a code has none)."""
    found = REFUSALS.get(code)
    return str(found) if found is not None else fallback
