"""Who lands where after login, and the navigation each role sees.

A link appears once its page exists (its endpoint is registered), so each domain's pages join the
navigation by being built, with no second list to keep.
"""

from flask import current_app, url_for
from flask_babel import lazy_gettext as _l

ROLE_NAMES = {
    "recipient": _l("服务对象"),
    "provider": _l("服务机构"),
    "admin": _l("民政工作人员"),
    "auditor": _l("审计人员"),
}

# role → [(label, endpoint)], in the order shown.
NAVIGATION = {
    None: [(_l("首页"), "portal.home"), (_l("服务机构"), "portal.providers"), (_l("服务排名"), "portal.rankings"),
           (_l("服务目录"), "portal.catalogue"), (_l("服务机构注册"), "provider_registration.register")],
    "recipient": [(_l("我的服务券"), "recipient_pages.home"), (_l("我的码"), "recipient_pages.code"),
                  (_l("评价服务"), "recipient_pages.services"), (_l("打印服务券"), "recipient_pages.cards")],
    "provider": [(_l("今天"), "provider_pages.home"), (_l("扫码核销"), "provider_scan.scan"),
                 (_l("结算"), "provider_settlements.index"), (_l("评价和投诉"), "provider_feedback.index"),
                 (_l("服务项目"), "provider_programmes.index"), (_l("工作人员账号"), "provider_logins.index")],
    "admin": [(_l("工作台"), "staff_home.home"), (_l("服务对象"), "staff_recipients.index"),
              (_l("服务机构"), "staff_providers.index"), (_l("结算"), "staff_settlements.index"),
              (_l("投诉"), "staff_complaints.index"), (_l("异常情况"), "staff_anomalies.index"),
              (_l("服务排名"), "staff_complaints.rankings"), (_l("审计"), "staff_audit.index")],
}
NAVIGATION["auditor"] = NAVIGATION["admin"]
# Pages only a provider's manager opens (marketplace.auth.access.require_provider_manager).
MANAGER_ONLY = frozenset({"provider_logins.index"})

HOMES = {"recipient": "recipient_pages.home", "provider": "provider_pages.home",
         "admin": "staff_home.home", "auditor": "staff_home.home"}


def _exists(endpoint: str) -> bool:
    return endpoint in current_app.view_functions


def navigation_for(actor) -> list[tuple[str, str, str]]:
    """[(label, address, endpoint)] of the pages *actor* (None: anonymous) may open that exist."""
    role = actor.role if actor is not None else None
    manager = actor is not None and actor.provider_manager
    return [(str(label), url_for(endpoint), endpoint) for label, endpoint in NAVIGATION.get(role, NAVIGATION[None])
            if _exists(endpoint) and (manager or endpoint not in MANAGER_ONLY)]


def home_for(role: str | None) -> str:
    """Where a role lands after login (the public home when its own home is not built)."""
    endpoint = HOMES.get(role)
    if endpoint and _exists(endpoint):
        return url_for(endpoint)
    return url_for("portal.home") if _exists("portal.home") else "/"
