"""The market-integrity rules a programme is watched by (DESIGN.md "Market integrity"): each rule's code, its
severity, and the parameters a programme may override in `programme.anomaly_parameters`, with their defaults.

This is data, kept in the kernel so that the programme's own validation and the vouchers domain's detection
(vouchers/service/anomaly_rules.py, where each rule's query lives) read the same table. Durations: a
redemption's window is its recorded `duration_minutes`, else its catalogue item's `default_duration_minutes`,
else FALLBACK_DURATION_MINUTES.
"""

from dataclasses import dataclass, field

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
    # a robust z-score (x − median) / (1.4826 × MAD) over the providers with at least min_services.
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


def parameter_errors(anomaly_parameters: dict | None) -> dict[str, list[str]]:
    """What is wrong with a programme's overrides, by "rule.parameter" (empty when they are all valid)."""
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
            elif isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                errors[f"{code}.{name}"] = ["Must be a number not below 0."]
    return errors
