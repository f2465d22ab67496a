"""`flask --app wsgi rules-doc`: docs/market-integrity.md, the page of every market-integrity rule, generated from
the rule table (marketplace/programmes/integrity.py): what each rule checks, its severity, its parameters with
their defaults and meanings, the explanation a flag shows (zh_CN and en), and how a programme overrides them.

The page is never edited by hand: tests/test_anomaly_parameters.py fails when it differs from `render_page()`,
and names the command that brings it up to date.
"""

import re
from pathlib import Path

import click
from flask import Blueprint
from flask_babel import force_locale

from marketplace.programmes import integrity

PAGE_PATH = "docs/market-integrity.md"
REGENERATE = f"APP_ENV=development flask --app wsgi rules-doc --write {PAGE_PATH}"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")

cli = Blueprint("programmes_cli", __name__, cli_group=None)

INTRO = """\
# Market-integrity rules

<!-- Generated from marketplace/programmes/integrity.py by `{regenerate}`; do not edit by hand. -->

The rules look for what makes a voucher market fail in practice: services paid for but not delivered, and
signals that are gamed (DESIGN.md "Market integrity"). Each rule is one set-based query over a programme's
month. A finding is a flag, one per rule, programme, month and subject, with its evidence and a plain
explanation; an admin confirms it (its redemptions are then held out of settlement) or dismisses it, each with
a reason. Severity orders the queue: `high`, then `medium`, then `low`.

**Service windows.** A redemption's window runs from `delivered_at` minus its duration to `delivered_at`. The
duration is the one recorded with the redemption (`duration_minutes`, optional in `POST /api/v1/redemptions`
and on the provider's confirm page), else the catalogue item's `default_duration_minutes` (optional in
`POST /api/v1/catalogue/items`, set later with `PATCH /api/v1/catalogue/items/{{code}}`), else
{fallback} minutes.

**What else the rules read.** The local date a recipient's death or move took effect
(`recipient.status_effective_on`): `effective_on` with the status change in `PATCH /api/v1/recipients/{{id}}`
(optional there: a client that leaves it out records today's local date) and on the console's status page
(required, today's date filled in). The shortest plausible service of a programme item
(`min_duration_minutes`, optional, per item of `POST /api/v1/programmes` and of the console's programme form).
How presence was proven (`redemption.presence`: `presence_code`, `typed_code` or `voucher_card`).

## Overriding the defaults

A programme keeps its own thresholds in `anomaly_parameters`, `{{rule: {{parameter: number}}}}`; a parameter it
leaves out keeps its default below.

- When the programme is created: `anomaly_parameters` in `POST /api/v1/programmes`.
- Later: `PUT /api/v1/programmes/{{id}}/anomaly-parameters` with `{{anomaly_parameters, reason}}` (an admin whose
  region holds the programme). It replaces the whole object; `null` or `{{}}` restores every default. The change
  is audited (`programme.anomaly_parameters_set`, with the old and the new thresholds and the reason) and the
  next detection uses it.

Each value is a number from 0 to {maximum}, a whole number where the default is one. An unknown rule or
parameter, or a value out of range, is refused with 422 `validation_error`, the field named
`anomaly_parameters.<rule>.<parameter>` in `details.fields`.

```json
{{"anomaly_parameters": {{"month_end_burst": {{"z_threshold": 4, "min_services": 30}}}},
 "reason": "本县机构少，月底集中核销的阈值放宽"}}
```

## The rules

| rule | name | severity | parameters (defaults) |
|---|---|---|---|
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _template(text: str) -> str:
    """An explanation's text as a reader sees it, its blanks as `{name}`."""
    return PLACEHOLDER.sub(r"{\1}", text).replace("%%", "%")


def _in(locale: str, text) -> str:
    with force_locale(locale):
        return str(text)


def _defaults(code: str) -> str:
    parameters = integrity.RULES[code].parameters
    return ", ".join(f"`{name}` = {value}" for name, value in parameters.items()) or "none"


def render_page() -> str:
    """The Markdown of docs/market-integrity.md (inside an app context: the names are translated)."""
    lines = [INTRO.format(regenerate=REGENERATE, fallback=integrity.FALLBACK_DURATION_MINUTES,
                          maximum=integrity.MAX_PARAMETER)]
    for code, rule in integrity.RULES.items():
        name = integrity.RULE_NAMES[code]
        lines.append(f"| [`{code}`](#{code}) | {_in('zh_CN', name)} ({_in('en', name)}) | {rule.severity} | "
                     f"{_defaults(code)} |\n")
    for code, rule in integrity.RULES.items():
        name, severity = integrity.RULE_NAMES[code], integrity.SEVERITY_NAMES[rule.severity]
        lines.append(f"\n### {code}\n\n")
        lines.append(f"{_in('zh_CN', name)} ({_in('en', name)}). Severity: `{rule.severity}` "
                     f"({_in('zh_CN', severity)}).\n\n")
        lines.append(f"{integrity.CHECKS[code]}\n\n")
        if rule.parameters:
            lines.append("| parameter | default | meaning |\n|---|---|---|\n")
            for parameter, default in rule.parameters.items():
                lines.append(f"| `{parameter}` | {default} | "
                             f"{_cell(integrity.PARAMETER_MEANINGS[code, parameter])} |\n")
            lines.append("\n")
        else:
            lines.append("No parameters.\n\n")
        lines.append("What a flag says (zh_CN, then en):\n\n")
        for (rule_code, kind), text in integrity.EXPLANATIONS.items():
            if rule_code != code:
                continue
            said = " / ".join(_template(_in(locale, text)) for locale in ("zh_CN", "en"))
            lines.append(f"- {f'`{kind}`: ' if kind else ''}{said}\n")
    return "".join(lines)


@cli.cli.command("rules-doc")
@click.option("--write", "path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"Write the page to this file (e.g. {PAGE_PATH}) instead of printing it.")
def rules_doc_command(path: Path | None):
    """Print the page of every market-integrity rule (docs/market-integrity.md), generated from the rule table."""
    page = render_page()
    if path is None:
        click.echo(page, nl=False)
        return
    path.write_text(page, encoding="utf-8")
    click.echo(f"wrote {path}: {len(integrity.RULES)} rules")
