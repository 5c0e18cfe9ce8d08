"""The alert report and its labels, without Spark or Chromium: every feature labelled, the page
self-contained, escaped, complete and in the alert list's order."""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from sf_ml.config import AGGREGATIONS, aggregated_name, load_config
from sf_ml.labels import FEATURES, GROUPS, describe, group_label
from sf_ml.panel import BASE_FEATURES
from sf_ml.report import format_value, render_report, risk_shares
from tests.bench_scripts import bench_module

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted(path.stem for path in (ROOT / "experiments").glob("*.yaml"))
MONTHS = (1, 3, 12, 24, 36)
RESOURCE_TAGS = {"script", "img", "link", "iframe", "object", "embed", "video", "audio", "source", "picture",
                 "svg", "image", "use", "base", "form", "frame"}


def report_screenshot_module():
    """``bench/report_screenshot.py``, whose page reading the tests share."""
    return bench_module("report_screenshot")


class _Resources(HTMLParser):
    """Every tag with its attributes, and the text of every ``<style>``."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def assert_self_contained(html: str) -> None:
    """No resource outside the page: no fetching tag, no ``src``, only ``#`` links, no URL anywhere."""
    parser = _Resources()
    parser.feed(html)
    parser.close()
    tags = {tag for tag, _ in parser.tags}
    assert not tags & RESOURCE_TAGS, tags & RESOURCE_TAGS
    for tag, attrs in parser.tags:
        assert "src" not in attrs and "srcset" not in attrs and "action" not in attrs, (tag, attrs)
        assert all(value.startswith("#") for name, value in attrs.items() if name in ("href", "xlink:href")), attrs
        assert "url(" not in (attrs.get("style") or ""), attrs
    css = "".join(parser.styles)
    assert css and "@import" not in css and "url(" not in css and "@font-face" not in css
    assert "http" not in html.lower()


def _model():
    return SimpleNamespace(name="sf_failure", version=7, run_id="r" * 32, version_uri="models:/sf_failure/7",
                           thresholds={"risque_fort": 0.4, "risque_modere": 0.15})


def _table() -> pd.DataFrame:
    """A predictions table of six companies: two per level, one hostile text, one without signal."""
    rows = [
        ("000000001", 0.81, "risque_fort", "dette_sociale_patronale", 1.9, 48250.0, "Bretagne"),
        ("000000002", 0.55, "risque_fort", "paydex", 0.8, 37.0, "Ile-de-France"),
        ("000000003", 0.30, "risque_modere", "naf_section", 0.5, None, '<script>alert("x")</script>'),
        ("000000004", 0.30, "risque_modere", None, None, None, "Grand Est"),  # ties by siren after 3
        ("000000005", 0.05, "pas_d_alerte", "paydex", 0.1, 2.0, "Corse"),
        ("000000006", 0.02, "pas_d_alerte", None, None, None, "Corse"),
    ]
    table = pd.DataFrame({
        "siren": [r[0] for r in rows], "periode": dt.date(2025, 12, 1),
        "code_naf": ["56.10A", "62.01Z", '"><img src=x>', None, "10.71C", "10.71C"],
        "naf_section": ["I", "J", "Z", None, "C", "C"], "region": [r[6] for r in rows],
        "categorie_juridique": "5710", "probability": [r[1] for r in rows], "alert": [r[2] for r in rows],
        "group_dette_urssaf": [2.4, -0.2, 0.1, -0.5, 0.1, -1.0], "group_sante_financiere": [0.8, 0.3, -0.4, -0.1, 0, -1],
        "group_retards_paiement": [-0.1, 0.9, 0.0, -0.2, 0.2, -1.0], "group_misc": [0.0, 0.0, 0.6, -0.1, 0, -1],
    })
    for i, second in ((1, None), (2, ("ebe_sur_ca", 0.3, -0.0412)), (3, ("fpi_30", 0.2, 12.5))):
        table[f"top{i}_feature"] = [r[3] for r in rows] if i == 1 else [second[0] if r[3] else None for r in rows]
        table[f"top{i}_contribution"] = [r[4] for r in rows] if i == 1 else [second[1] if r[3] else np.nan for r in rows]
        table[f"top{i}_value"] = [r[5] for r in rows] if i == 1 else [second[2] if r[3] else np.nan for r in rows]
    table.loc[2, "top2_feature"] = None  # a company with one signal only
    return table


def _alerts() -> dict:
    from sf_ml.score import alert_list

    table = _table()
    counts = table["alert"].value_counts().to_dict()
    headcounts = pd.Series([25.0, 140.0, None, 12.0, 30.0, 11.0], index=table["siren"])
    return alert_list(table, _model(), dt.date(2025, 12, 1), "2025-12-02T08:30:00Z",
                      {k: counts.get(k, 0) for k in ("risque_fort", "risque_modere", "pas_d_alerte")}, headcounts)


def _config_columns(name: str) -> list[str]:
    """Every column and feature slot a config can give the model (indicators and categories included)."""
    from sf_ml.modeling import MISSING_SUFFIX, input_columns

    config = load_config(name)
    slots = [f"{variable}{MISSING_SUFFIX}" for variable in config.features.variables]
    slots += [f"{variable}_bin{i}" for variable, splits in config.model.bins.items() for i in range(len(splits) - 1)]
    slots += [f"{column}=X" for column in config.features.categorical]
    return [*input_columns(config), *slots]


def test_every_base_feature_and_aggregation_has_a_label_and_a_unit():
    assert set(BASE_FEATURES) <= set(FEATURES)
    for variable in BASE_FEATURES:
        base = describe(variable, strict=True)
        assert base.label and base.unit and base.group in GROUPS and base.label != variable
        for kind in AGGREGATIONS:
            for months in MONTHS:
                name = aggregated_name(variable, kind, months)
                derived = describe(name, strict=True)
                assert derived.label.startswith(base.label) and f"{months} " in derived.label, name
                assert derived.unit and derived.group == base.group, name
                if kind in ("lag", "mean", "min", "max"):
                    assert derived.unit == base.unit, name
                elif kind == "slope":
                    assert derived.unit.endswith(" par mois"), name
                elif kind in ("months_positive", "since_increase", "since_first_positive"):
                    assert derived.unit == "mois", name
    assert describe("dette_sociale_patronale_lag12m").label == "Dette URSSAF, part patronale, il y a 12 mois"
    assert describe("paydex_slope24m").unit == "jours par mois"
    assert describe("fpi_90_diff12m").unit == "points de %"
    assert describe("dette_sur_cotisation_mean12m").unit == "mois de cotisations"  # a base feature, not a mean
    with pytest.raises(KeyError, match="no plain-French label"):
        describe("not_a_feature_lag3m", strict=True)
    assert describe("not_a_feature").label == "not_a_feature"  # scoring never fails on a label


@pytest.mark.parametrize("name", CONFIGS)
def test_every_column_of_every_config_has_a_label_and_its_groups_too(name):
    for column in _config_columns(name):
        label = describe(column, strict=True)
        assert label.label and label.unit, column
    config = load_config(name)
    for group, members in config.topic_groups.items():
        assert group in GROUPS and group_label(group) == GROUPS[group]
        for variable in members:  # a config groups a feature where its meaning is, or in misc
            assert group in (describe(variable, strict=True).group, "misc"), (name, group, variable)
    assert group_label("misc") == "Divers" and group_label("new_group") == "New group"


def test_risk_shares_are_the_positive_groups_share_of_the_increase():
    shares = risk_shares({"a": 3.0, "b": 1.0, "c": -2.0, "d": None, "e": 0.0, "f": float("nan")})
    assert list(shares) == ["a", "b"] and shares == {"a": 0.75, "b": 0.25}
    assert risk_shares({"a": -1.0, "b": 0.0}) == {}


def test_values_are_written_in_their_unit_the_french_way():
    assert format_value(48250.4, "€") == "48\u202f250\u00a0€"
    assert format_value(37.0, "jours") == "37\u00a0jours"
    assert format_value(-0.0412, "ratio") == "\u22120,041 (ratio)"
    assert format_value(12.5, "%") == "12,5\u00a0%"
    assert format_value(1.0, "oui/non") == "oui" and format_value(None, "€") == "non renseigné"
    assert format_value(float("nan"), "heures") == "non renseigné"
    assert format_value("J", "catégorie") == "J"


def test_alert_list_labels_its_features_and_shares_its_groups():
    alerts = _alerts()
    assert [e["siren"] for e in alerts["alerts"]] == ["000000001", "000000002", "000000003", "000000004"]
    first = alerts["alerts"][0]
    assert first["top_features"][0] == {"feature": "dette_sociale_patronale", "label": "Dette URSSAF, part patronale",
                                        "unit": "€", "contribution": 1.9, "value": 48250.0}
    assert first["effectif"] == 25.0 and first["naf_section"] == "I"
    assert first["group_shares"] == {"dette_urssaf": 0.75, "sante_financiere": 0.25}
    assert alerts["group_labels"]["dette_urssaf"] == "Dette URSSAF" and alerts["group_labels"]["misc"] == "Divers"
    assert alerts["alerts"][2]["effectif"] is None and alerts["alerts"][3]["top_features"] == []


def test_report_is_one_self_contained_page_with_every_text_escaped():
    html = render_report(_alerts())
    assert_self_contained(html)
    assert "<script>" not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert '"><img' not in html and "&quot;&gt;&lt;img src=x&gt;" in html
    assert html == render_report(_alerts()), "the same alert list gives the same bytes"


def _plain(text: str) -> str:
    return text.replace("\u00a0", " ").replace("\u202f", " ")


def test_report_shows_both_levels_riskiest_first_with_their_explanations():
    rows, headings = report_screenshot_module().page_rows(render_report(_alerts()))
    assert [(r.siren, r.level) for r in rows] == [("000000001", "risque_fort"), ("000000002", "risque_fort"),
                                                  ("000000003", "risque_modere"), ("000000004", "risque_modere")]
    headings = [_plain(h) for h in headings]
    assert headings[0].startswith("Risque fort — 2 entreprises") and "au moins 40 %" in headings[0]
    assert headings[1].startswith("Risque modéré — 2 entreprises") and "au moins 15 %" in headings[1]
    text = {row.siren: _plain(row.text) for row in rows}
    first = text["000000001"]
    assert "81 %" in first and "56.10A" in first and "Hébergement et restauration" in first and "Bretagne" in first
    assert "Dette URSSAF, part patronale : 48 250 €" in first and "25" in first
    assert "Dette URSSAF : 75 %" in first and "Santé financière : 25 %" in first
    assert "Abaisse le risque : Retards de paiement" in first
    second = text["000000002"]
    assert "Île-de-France" in second and "140" in second
    assert "Retard moyen de paiement des fournisseurs (Paydex) : 37 jours" in second
    assert "Marge d'exploitation (excédent brut d'exploitation sur chiffre d'affaires) : −0,041 (ratio)" in second
    third = text["000000003"]
    assert "Secteur d'activité (section NAF) : Z" in third and "non renseigné" in third
    assert '<script>alert("x")</script>' in third  # shown as text, not run
    assert "Divers : 86 %" in third and "Dette URSSAF : 14 %" in third
    assert "aucun" in text["000000004"]
