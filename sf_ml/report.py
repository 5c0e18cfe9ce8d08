"""The month's alert report: one self-contained HTML page an agent reads without the JSON.

:func:`render_report` turns the alert list of :func:`sf_ml.score.alert_list` (the dict written as
``alert_list.json``) into ``alert_report.html``, written next to it by ``score``. Contract:

- the page is one file that opens offline: inline CSS, no script, no image, no font, no link to
  another file or to the network (only ``#`` anchors within the page);
- every text comes from the alert list and :mod:`sf_ml.labels`, and is HTML-escaped;
- the companies in ``risque_fort`` then ``risque_modere``, each level sorted by risk (highest
  first, as in the alert list), with SIREN, probability, sector (NAF code and section title),
  region, headcount, the share of each topic group in the risk (:func:`risk_shares`) and the three
  concerning features with their plain-French label and value in its unit (:func:`format_value`);
- the same alert list gives the same bytes (no clock, fixed orders and formats).
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from sf_ml.labels import CATEGORY, PERCENT, RATIO, YES_NO, describe, group_label, naf_section_label, region_label

LEVELS = (("risque_fort", "Risque fort"), ("risque_modere", "Risque modéré"))
MONTHS_FR = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
             "novembre", "décembre")
NBSP, THIN_NBSP, MINUS = "\u00a0", "\u202f", "\u2212"
MISSING_TEXT = "non renseigné"
# Decimals shown per unit (trailing zeros dropped); other units get 2.
DECIMALS = {"€": 0, "€ par salarié": 0, "heures": 0, "salariés": 1, "jours": 1, "mois": 1, "ans": 1, PERCENT: 1,
            "points de %": 1, "mois de cotisations": 1, RATIO: 2}
GROUP_COLORS = {"dette_urssaf": "#c0392b", "sante_financiere": "#2e6da4", "activite_partielle": "#d68910",
                "retards_paiement": "#7d3c98", "profil_entreprise": "#5d6d7e", "misc": "#99a3a4"}
OTHER_COLORS = ("#117a65", "#a04000", "#1f618d", "#6c3483")
CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       margin: 0; padding: 24px 32px; color: #1c2833; background: #fbfcfc; font-size: 14px; line-height: 1.4; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 28px 0 6px; }
p { margin: 4px 0; }
.meta { color: #566573; }
.counts { display: flex; gap: 12px; margin: 14px 0; flex-wrap: wrap; }
.count { padding: 8px 14px; border-radius: 6px; background: #eaeded; }
.count b { font-size: 20px; display: block; }
.count.fort { background: #fadbd8; } .count.modere { background: #fdebd0; }
nav a { color: #1f618d; margin-right: 14px; }
details.legend { background: #f2f4f4; border-radius: 6px; padding: 8px 14px; margin: 10px 0; }
details.legend summary { cursor: pointer; font-weight: 600; }
details.legend li { margin: 4px 0; }
table { border-collapse: collapse; width: 100%; background: #fff; table-layout: fixed; }
th:nth-child(1) { width: 3%; } th:nth-child(2) { width: 8%; } th:nth-child(3) { width: 7%; }
th:nth-child(4) { width: 13%; } th:nth-child(5) { width: 10%; } th:nth-child(6) { width: 5%; }
th:nth-child(7) { width: 19%; } th:nth-child(8) { width: 35%; }
td { overflow-wrap: anywhere; }
th, td { text-align: left; vertical-align: top; padding: 7px 8px; border-bottom: 1px solid #d5d8dc; }
th { background: #eaeded; font-weight: 600; position: sticky; top: 0; }
td.num { text-align: right; white-space: nowrap; }
td.risk { font-weight: 700; white-space: nowrap; }
.fort td.risk { color: #a93226; } .modere td.risk { color: #b9770e; }
.level-title.fort { border-left: 6px solid #c0392b; padding-left: 8px; }
.level-title.modere { border-left: 6px solid #e67e22; padding-left: 8px; }
.siren { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-weight: 600; }
.bar { display: flex; height: 10px; width: 220px; border-radius: 3px; overflow: hidden; background: #eaeded;
       margin: 3px 0 5px; }
.bar span { display: block; height: 100%; }
ul.shares, ol.signals { margin: 0; padding: 0; list-style: none; }
ul.shares li { white-space: nowrap; }
.dot { display: inline-block; width: 9px; height: 9px; border-radius: 2px; margin-right: 5px; }
.lowering { color: #566573; font-size: 12px; margin-top: 3px; }
ol.signals li { margin-bottom: 4px; }
ol.signals .value { font-weight: 600; white-space: nowrap; }
.sub { color: #566573; font-size: 12px; font-weight: normal; }
h2 .sub { font-size: 14px; margin-left: 8px; }
.empty { color: #566573; font-style: italic; }
@media print { th { position: static; } details.legend { display: block; } }
"""


def format_number(value: float, decimals: int) -> str:
    """A number written the French way: thin spaces between thousands, decimal comma, no trailing zeros."""
    text = f"{abs(value):,.{decimals}f}".replace(",", THIN_NBSP).replace(".", ",")
    if "," in text:
        text = text.rstrip("0").rstrip(",")
    negative = value < 0 and any(c not in "0,\u202f" for c in text)
    return f"{MINUS if negative else ''}{text}"


def _decimals(value: float, unit: str) -> int:
    """The unit's decimals, more for a small non-integer value (two significant digits, at most 4)."""
    decimals = DECIMALS.get(unit, 2)
    if decimals and 0 < abs(value) < 1:
        decimals = min(4, max(decimals, 1 - math.floor(math.log10(abs(value)))))
    return decimals


def format_value(value: Any, unit: str) -> str:
    """A feature's value in its unit, as the report shows it (``12 345 €``, ``0,45 (ratio)``, ``oui``).

    Args:
        value: The value (a number, a text for categories, or None).
        unit: Its unit (:mod:`sf_ml.labels`).

    Returns:
        The text; ``non renseigné`` for a missing value.
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING_TEXT
    if unit == CATEGORY or isinstance(value, str):
        return str(value)
    if unit == YES_NO:
        return "oui" if float(value) >= 0.5 else "non"
    number = format_number(float(value), _decimals(float(value), unit))
    if unit == RATIO:
        return f"{number} (ratio)"
    return f"{number}{NBSP}{unit}" if unit else number


def risk_shares(groups: dict[str, float | None]) -> dict[str, float]:
    """Each risk-raising topic group's share of the company's risk increase.

    Contributions are additive in log-odds: a group's value is the sum of its features'
    contributions, against the model's reference risk. The share of a group with a positive sum
    is that sum over the total of the positive sums; groups that lower the risk get no share.

    Args:
        groups: ``{group: summed contribution}`` (None for unknown).

    Returns:
        ``{group: share in [0, 1]}`` for the positive groups, largest first (ties by name);
        empty when no group raises the risk.
    """
    positive = {g: float(v) for g, v in groups.items() if v is not None and math.isfinite(v) and v > 0}
    total = sum(positive.values())
    ordered = sorted(positive.items(), key=lambda item: (-item[1], item[0]))
    return {group: value / total for group, value in ordered} if total > 0 else {}


def _color(group: str, groups: list[str]) -> str:
    """A topic group's colour: its own, else one of the others by its rank among the unknown groups."""
    if group in GROUP_COLORS:
        return GROUP_COLORS[group]
    others = sorted(g for g in groups if g not in GROUP_COLORS)
    return OTHER_COLORS[others.index(group) % len(OTHER_COLORS)] if group in others else OTHER_COLORS[0]


def _percent(share: float, decimals: int = 0) -> str:
    """A share in [0, 1] as a French percentage (``75 %``)."""
    return f"{format_number(share * 100, decimals)}{NBSP}%"


def _shares_cell(entry: dict, groups: list[str]) -> str:
    """The bar and the list of topic-group shares, then the groups that lower the risk."""
    values = entry.get("groups") or {}
    shares = entry.get("group_shares") or risk_shares(values)
    if not shares:
        return '<td><span class="empty">aucun thème n\'augmente le risque</span></td>'
    bar = "".join(f'<span style="width:{share * 100:.2f}%;background:{_color(g, groups)}" '
                  f'title="{escape(group_label(g))} {escape(_percent(share))}"></span>'
                  for g, share in shares.items())
    items = "".join(f'<li><span class="dot" style="background:{_color(g, groups)}"></span>'
                    f'{escape(group_label(g))}{NBSP}: {escape(_percent(share))}</li>'
                    for g, share in shares.items())
    lowering = [group_label(g) for g, v in sorted(values.items()) if v is not None and v < 0]
    lower = (f'<div class="lowering">Abaisse{"nt" if len(lowering) > 1 else ""} le risque{NBSP}: '
             f'{escape(", ".join(lowering))}</div>') if lowering else ""
    return f'<td><div class="bar">{bar}</div><ul class="shares">{items}</ul>{lower}</td>'


def _category_value(feature: str, value: Any, entry: dict) -> Any:
    """A category's value: the company's own (the alert list's metadata), its section spelled out."""
    value = entry.get(feature) if value is None else value
    if feature == "naf_section" and value:
        title = naf_section_label(str(value))
        return f"{value} — {title}" if title else value
    return region_label(value) if feature == "region" else value


def _signals_cell(entry: dict) -> str:
    """The concerning features, most concerning first: label, value in its unit."""
    items = []
    for top in entry.get("top_features") or []:
        label = top.get("label") or describe(top["feature"]).label
        unit = top.get("unit") if top.get("unit") is not None else describe(top["feature"]).unit
        value = _category_value(top["feature"], top.get("value"), entry) if unit == CATEGORY else top.get("value")
        items.append(f'<li>{escape(label)}{NBSP}: <span class="value">{escape(format_value(value, unit))}</span></li>')
    if not items:
        return '<td><span class="empty">aucun</span></td>'
    return f'<td><ol class="signals">{"".join(items)}</ol></td>'


def _sector(entry: dict) -> str:
    """The sector cell's content: NAF code, then the section's title (escaped HTML)."""
    code, section = entry.get("code_naf"), entry.get("naf_section")
    title = naf_section_label(section)
    if not code and not section:
        return escape(MISSING_TEXT)
    first = escape(code or f"section {section}")
    return f'{first}<div class="sub">{escape(title)}</div>' if title else first


def _headcount(value: Any) -> str:
    """The latest known headcount, or ``non renseigné``."""
    if value is None or not math.isfinite(float(value)):
        return MISSING_TEXT
    return format_number(float(value), 1)


def _company_row(rank: int, entry: dict, groups: list[str]) -> str:
    """One company's table row (``id="siren-<siren>"``, ``data-siren``)."""
    siren = str(entry["siren"])
    cells = [
        f'<td class="num">{rank}</td>',
        f'<td><span class="siren">{escape(siren)}</span></td>',
        f'<td class="risk">{escape(format_number(float(entry["risk_percent"]), 1))}{NBSP}%</td>',
        f"<td>{_sector(entry)}</td>",
        f"<td>{escape(region_label(entry.get('region')) or MISSING_TEXT)}</td>",
        f'<td class="num">{escape(_headcount(entry.get("effectif")))}</td>',
        _shares_cell(entry, groups),
        _signals_cell(entry),
    ]
    return f'<tr id="siren-{escape(siren)}" data-siren="{escape(siren)}">{"".join(cells)}</tr>'


HEADERS = ("#", "SIREN", "Risque à 18 mois", "Secteur (NAF)", "Région", "Effectif",
           "Part des thèmes dans le risque", "Trois signaux préoccupants")


def _level_section(level: str, title: str, alerts: dict, groups: list[str]) -> str:
    """One alert level: its title with count and threshold, then its companies riskiest first."""
    entries = sorted((e for e in alerts["alerts"] if e["alert"] == level),
                     key=lambda e: (-float(e["probability"]), str(e["siren"])))
    threshold = alerts.get("thresholds", {}).get(level)
    limit = f" (probabilité d'au moins {_percent(threshold, 1)})" if threshold is not None else ""
    css = "fort" if level == "risque_fort" else "modere"
    plural = "s" if len(entries) > 1 else ""
    head = (f'<h2 class="level-title {css}" id="{level}">{escape(title)} — {len(entries)} entreprise{plural}'
            f'<span class="sub">{escape(limit)}</span></h2>')
    if not entries:
        return f'<section class="{css}">{head}<p class="empty">Aucune entreprise à ce niveau ce mois-ci.</p></section>'
    header = "".join(f"<th>{escape(h)}</th>" for h in HEADERS)
    rows = "".join(_company_row(rank, entry, groups) for rank, entry in enumerate(entries, 1))
    return (f'<section class="{css}">{head}<table><thead><tr>{header}</tr></thead>'
            f"<tbody>{rows}</tbody></table></section>")


def _legend(alerts: dict) -> str:
    """How to read the page: levels, shares (their exact definition), signals and values."""
    model = alerts.get("model", {})
    items = [
        "Le risque est la probabilité que l'entreprise fasse l'objet d'une procédure collective "
        "(redressement, liquidation judiciaire ou sauvegarde) dans les 18 mois, estimée par le modèle "
        f"{model.get('name', '?')} (version {model.get('version', '?')}) à partir des données connues avant "
        "le premier jour du mois.",
        "Les entreprises sont classées du risque le plus élevé au plus faible, d'abord en risque fort puis en "
        "risque modéré.",
        "Part des thèmes dans le risque : le modèle décompose l'écart entre le risque de l'entreprise et son risque "
        "de référence en contributions de chaque donnée, additives sur l'échelle du logarithme de la cote "
        "(log-odds), puis les additionne par thème. La part d'un thème est sa contribution nette divisée par la "
        "somme des contributions nettes des thèmes qui augmentent le risque ; les thèmes qui le diminuent sont "
        "indiqués à part et n'ont pas de part. Les parts sont arrondies.",
        "Trois signaux préoccupants : les données qui augmentent le plus le risque, la plus forte d'abord. La "
        "valeur montrée est la dernière connue ; la contribution d'une donnée compte aussi son historique "
        "(valeurs passées, moyennes, évolutions).",
        "Effectif : nombre de salariés du dernier mois connu. Unités : € en euros ; « ratio » est un rapport "
        "sans unité ; le retard de paiement est en jours (dernière mesure) ; « non renseigné » signale une donnée "
        "absente, dont l'absence peut elle-même peser sur le risque.",
    ]
    body = "".join(f"<li>{escape(item)}</li>" for item in items)
    return f'<details class="legend" open><summary>Comment lire ce rapport</summary><ul>{body}</ul></details>'


def _month_text(iso_date: str) -> str:
    """``2025-12-01`` -> ``décembre 2025``."""
    year, month = int(iso_date[:4]), int(iso_date[5:7])
    return f"{MONTHS_FR[month - 1]} {year}"


def _header(alerts: dict) -> str:
    """Title, model and time of the scoring, counts per level and links to the two sections."""
    counts, model = alerts.get("counts", {}), alerts.get("model", {})
    scored_at = str(alerts.get("scored_at", "")).replace("T", " à ").replace("Z", " UTC")
    boxes = [("", "Entreprises évaluées", counts.get("companies", 0)),
             ("fort", "Risque fort", counts.get("risque_fort", 0)),
             ("modere", "Risque modéré", counts.get("risque_modere", 0))]
    cells = "".join(f'<div class="count {css}"><b>{escape(format_number(n, 0))}</b>{escape(text)}</div>'
                    for css, text, n in boxes)
    return (f"<header><h1>Alertes Signaux Faibles — {escape(_month_text(alerts['prediction_date']))}</h1>"
            f'<p class="meta">Date d\'évaluation {escape(alerts["prediction_date"])} · modèle '
            f'{escape(str(model.get("name", "?")))} version {escape(str(model.get("version", "?")))} · '
            f"calculé le {escape(scored_at)}</p>"
            f'<div class="counts">{cells}</div>'
            '<nav><a href="#risque_fort">Risque fort</a><a href="#risque_modere">Risque modéré</a></nav></header>')


def render_report(alerts: dict) -> str:
    """The alert report of one scoring, as a complete HTML document.

    Args:
        alerts: The alert list (:func:`sf_ml.score.alert_list`): ``model``, ``prediction_date``,
            ``scored_at``, ``thresholds``, ``counts`` and ``alerts`` (entries with ``siren``,
            ``alert``, ``probability``, ``risk_percent``, ``code_naf``, ``naf_section``, ``region``,
            ``effectif``, ``groups``, ``group_shares`` and ``top_features`` with ``label`` and ``unit``).

    Returns:
        The page (UTF-8 text), deterministic in ``alerts``.
    """
    groups = sorted({g for e in alerts["alerts"] for g in (e.get("groups") or {})})
    sections = "".join(_level_section(level, title, alerts, groups) for level, title in LEVELS)
    title = f"Alertes Signaux Faibles — {_month_text(alerts['prediction_date'])}"
    return (f'<!DOCTYPE html>\n<html lang="fr"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head>"
            f"<body>{_header(alerts)}{_legend(alerts)}{sections}</body></html>\n")
