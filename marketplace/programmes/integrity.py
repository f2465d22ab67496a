"""The market-integrity rules a programme is watched by (DESIGN.md "Market integrity"): each rule's code, its
severity, and the parameters a programme may override in `programme.anomaly_parameters`, with their defaults.

Each finding's plain explanation is made from its evidence with EXPLANATIONS: the rule's query must put
exactly those keys in the evidence (times already as local text, shares as whole percents), and `kind`
where a rule has variants.

This is data, kept in the kernel so that the programme's own validation and the vouchers domain's detection
(vouchers/service/anomaly_rules.py, where each rule's query lives) read the same table. Durations: a
redemption's window is its recorded `duration_minutes`, else its catalogue item's `default_duration_minutes`,
else FALLBACK_DURATION_MINUTES.
"""

from dataclasses import dataclass, field

from flask_babel import lazy_gettext as _l

FALLBACK_DURATION_MINUTES = 30


@dataclass(frozen=True)
class Rule:
    code: str
    severity: str  # low, medium, high
    # Every parameter the programme may override, with its default; numbers only.
    parameters: dict[str, int | float] = field(default_factory=dict)


RULES: dict[str, Rule] = {rule.code: rule for rule in (
    # One recipient served by two providers at once; one staff login serving two recipients at once.
    Rule("overlapping_service", "high", {"grace_minutes": 0}),
    # Delivered after the recipient's recorded death or move (status_effective_on, a local date).
    Rule("served_after_exit", "high"),
    # A staff login's services in any 60 minutes need more minutes than the hour has (times the slack).
    Rule("staff_velocity", "medium", {"minutes_per_hour": 60, "min_services": 3}),
    # A provider's services in the month above its declared monthly capacity (plus the tolerance).
    Rule("over_capacity", "medium", {"tolerance_percent": 0}),
    # The share of a provider's month delivered in its last days far above the programme's other providers:
    # a robust z-score (x − median) / (1.4826 × MAD) against the other providers with at least min_services
    # (MAD 0: 1.2533 × the mean absolute deviation; no spread at all: not judged).
    Rule("month_end_burst", "medium", {"last_days": 3, "z_threshold": 3.5, "min_services": 20}),
    # The share of a provider's redemptions proven by a typed code or a card instead of a live QR.
    Rule("typed_code_share", "low", {"max_share_percent": 30, "min_services": 20}),
    # Services recorded as shorter than the programme item's min_duration_minutes.
    Rule("short_duration", "low"),
    # Most of a provider's ratings recorded by one admin's phone follow-ups, or runs of identical scores
    # within minutes (complaints filed by one login in a burst are added to the evidence).
    Rule("rating_pattern", "medium", {"max_phone_share_percent": 50, "min_ratings": 10, "run_length": 5,
                                      "run_minutes": 10}),
)}


def parameters_for(anomaly_parameters: dict | None, code: str) -> dict[str, int | float]:
    """The rule's parameters for a programme: its overrides over the defaults."""
    return {**RULES[code].parameters, **((anomaly_parameters or {}).get(code) or {})}


# The largest value a parameter may take: far above any sensible threshold, and a bound that keeps NaN and
# infinity (which Python's JSON reader accepts) out of the programme's JSON column and the rules' SQL.
MAX_PARAMETER = 1_000_000


def parameter_errors(anomaly_parameters: dict | None) -> dict[str, list[str]]:
    """What is wrong with a programme's overrides, by "rule.parameter" (empty when they are all valid).

    A parameter is a number from 0 to MAX_PARAMETER; a whole number where its default is one (a count, a
    number of days or minutes)."""
    errors: dict[str, list[str]] = {}
    for code, values in (anomaly_parameters or {}).items():
        if code not in RULES:
            errors[code] = ["Unknown rule."]
            continue
        if not isinstance(values, dict):
            errors[code] = ["Must be an object of parameters."]
            continue
        for name, value in values.items():
            if name not in RULES[code].parameters:
                errors[f"{code}.{name}"] = ["Unknown parameter."]
            elif isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_PARAMETER:
                errors[f"{code}.{name}"] = [f"Must be a number from 0 to {MAX_PARAMETER}."]
            elif isinstance(RULES[code].parameters[name], int) and not isinstance(value, int):
                errors[f"{code}.{name}"] = ["Must be a whole number."]
    return errors


# What each rule checks, and what each parameter means: the page docs/market-integrity.md is generated from
# these and RULES (`flask --app wsgi rules-doc`), and a test asks for both for every rule and parameter.
CHECKS = {
    "overlapping_service": (
        "One recipient served by two completed redemptions at different providers whose service windows "
        "overlap; or one staff login serving two different recipients in overlapping windows. A window runs "
        "from delivered_at minus the service's duration to delivered_at. A person cannot be in two places at "
        "once."),
    "served_after_exit": (
        "A completed redemption delivered after the recipient's recorded death or move: after the local date "
        "in `recipient.status_effective_on`, which the status change asks for."),
    "staff_velocity": (
        "One staff login's services in any 60 minutes need more minutes, by their durations, than the hour "
        "holds."),
    "over_capacity": "A provider's completed services in the month exceed the monthly capacity it declared.",
    "month_end_burst": (
        "The share of a provider's month delivered in its last days lies far above the programme's other "
        "providers: a robust z-score (x − median) / (1.4826 × MAD) over the providers with enough services."),
    "typed_code_share": (
        "The share of a provider's redemptions whose presence was proven by a typed short code or a voucher card "
        "instead of a live presence QR code."),
    "short_duration": (
        "Services recorded as shorter than the programme item's `min_duration_minutes` (items without one are "
        "not checked)."),
    "rating_pattern": (
        "Most of a provider's ratings recorded by one admin's phone follow-ups, or runs of identical scores "
        "given within minutes of each other; complaints filed by one login in a burst are added to the "
        "evidence."),
}
PARAMETER_MEANINGS = {
    ("overlapping_service", "grace_minutes"): "Minutes two windows may overlap before they count as overlapping "
                                              "(clocks of different phones disagree a little).",
    ("staff_velocity", "minutes_per_hour"): "Minutes of service one login can deliver in any 60 minutes.",
    ("staff_velocity", "min_services"): "Fewest services in those 60 minutes before they are judged.",
    ("over_capacity", "tolerance_percent"): "How far above its declared capacity a provider may go, in percent.",
    ("month_end_burst", "last_days"): "The days at the end of the month that count as its end.",
    ("month_end_burst", "z_threshold"): "How many robust standard deviations above the median a provider's share "
                                        "must lie.",
    ("month_end_burst", "min_services"): "Fewest services in the month for a provider to be compared (and to count "
                                         "in the median).",
    ("typed_code_share", "max_share_percent"): "The highest share, in percent, of typed codes and cards that is "
                                               "not flagged.",
    ("typed_code_share", "min_services"): "Fewest services in the month for a provider to be judged.",
    ("rating_pattern", "max_phone_share_percent"): "The highest share, in percent, of a provider's ratings that one "
                                                   "admin's phone follow-ups may record.",
    ("rating_pattern", "min_ratings"): "Fewest ratings in the month for the phone share to be judged.",
    ("rating_pattern", "run_length"): "Identical scores in a row that make a run.",
    ("rating_pattern", "run_minutes"): "The minutes a run must fall within.",
}

# (rule, evidence["kind"] or None) → the explanation, in Chinese with the English in the catalogue.
EXPLANATIONS = {
    ("overlapping_service", "recipient"): _l(
        "同一位老人在 %(at)s 前后被两家机构同时服务：%(pairs)s 对服务时间重叠，涉及 %(count)s 次服务。"
        "一个人不能同时在两处接受服务。"),
    ("overlapping_service", "login"): _l(
        "同一个工作人员账号在 %(at)s 前后同时服务两位老人：%(pairs)s 对服务时间重叠，涉及 %(count)s 次服务。"
        "一个人不能同时在两户人家。"),
    ("served_after_exit", "deceased"): _l(
        "老人 %(effective_on)s 去世后，仍记录了 %(count)s 次服务，最晚一次在 %(last_at)s。"),
    ("served_after_exit", "moved"): _l(
        "老人 %(effective_on)s 迁出后，仍记录了 %(count)s 次服务，最晚一次在 %(last_at)s。"),
    ("staff_velocity", None): _l(
        "一个工作人员账号在 %(hour_start)s 起的一小时内记录了 %(count)s 次服务，按服务时长需要 %(minutes)s 分钟，"
        "超过一小时能做到的 %(minutes_per_hour)s 分钟。"),
    ("over_capacity", None): _l(
        "本月服务 %(count)s 次，超过机构申报的每月服务能力 %(capacity)s 次（允许超出 %(tolerance_percent)s%%）。"),
    ("month_end_burst", None): _l(
        "本月最后 %(last_days)s 天完成了 %(share_percent)s%% 的服务，同项目其他机构的中位数是 %(median_percent)s%%"
        "（稳健 z 值 %(z)s，阈值 %(z_threshold)s）。"),
    ("typed_code_share", None): _l(
        "%(share_percent)s%% 的服务（%(count)s 次中的 %(typed)s 次）是手输验证码或服务卡核销的，不是现场扫码；"
        "阈值 %(max_share_percent)s%%。"),
    ("short_duration", None): _l(
        "%(count)s 次服务记录的时长短于这项服务最短的合理时长 %(min_minutes)s 分钟，最短的只有 %(shortest)s 分钟。"),
    ("rating_pattern", "phone"): _l(
        "%(share_percent)s%% 的评价（%(ratings)s 条中的 %(phone)s 条）是同一位工作人员电话回访录入的；"
        "阈值 %(max_phone_share_percent)s%%。"),
    ("rating_pattern", "run"): _l(
        "%(run_length)s 条评价在 %(minutes)s 分钟内连续给出相同的 %(score)s 分，从 %(at)s 开始。"),
}

RULE_NAMES = {
    "overlapping_service": _l("同时服务两处"),
    "served_after_exit": _l("去世或迁出后仍有服务"),
    "staff_velocity": _l("一小时内服务过多"),
    "over_capacity": _l("超过申报的服务能力"),
    "month_end_burst": _l("月底集中核销"),
    "typed_code_share": _l("手输验证码比例高"),
    "short_duration": _l("服务时长过短"),
    "rating_pattern": _l("评价规律异常"),
}
SEVERITY_NAMES = {"high": _l("严重"), "medium": _l("中等"), "low": _l("轻微")}


def explain(rule: str, evidence: dict) -> str:
    """The finding in plain words, in the current locale, made from its evidence."""
    template = str(EXPLANATIONS[(rule, evidence.get("kind"))])  # translated now, in the request's locale
    return template % {key: value for key, value in evidence.items() if isinstance(value, str | int | float)}
