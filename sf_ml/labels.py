"""Plain-French labels of the model's features and topic groups: the one table agents read.

Contract: :data:`FEATURES` maps every base feature of the panel (:data:`sf_ml.panel.BASE_FEATURES`)
and every metadata column a model may read as a category (:data:`sf_ml.config.CATEGORICAL_COLUMNS`)
to a :class:`Label` (plain-French label, unit, topic group); :data:`GROUPS` maps every topic group
of ``experiments/*.yaml`` to its label. Everything a report or an alert list says about a feature
comes from :func:`describe`, which also labels the columns derived from a base feature: time
aggregations (``dette_sociale_patronale_lag12m``, ``paydex_slope24m``, see
:data:`sf_ml.config.AGGREGATIONS`), missing-value indicators (``effectif_manquant``), bins
(``paydex_bin3``), categories (``naf_section=I``) and imputed copies (``cotisation__imputed``).
A derived column gets its base label, a plain-French description of the derivation and the unit
the derivation gives (a slope is per month, a count of months is in months). ``tests/test_report.py``
holds every feature any experiment config can produce to a label and a unit.

Units are short French strings (``€``, ``€ par salarié``, ``salariés``, ``heures``, ``jours``,
``mois``, ``ans``, ``%``, ``points de %``, ``ratio``, ``oui/non``, ``catégorie``); the report
formats values by them (:func:`sf_ml.report.format_value`).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from sf_ml.config import AGGREGATIONS


class Label(NamedTuple):
    """What a feature means to a reader.

    Args:
        label: Plain-French description, capitalised, no trailing period.
        unit: Unit of the feature's values (see the module docstring).
        group: Topic group it belongs to by its meaning (a model's config may group it otherwise;
            its explanations follow the config).
    """

    label: str
    unit: str
    group: str


EURO, EURO_PER_EMPLOYEE, EMPLOYEES, HOURS, DAYS, MONTHS, YEARS = (
    "€", "€ par salarié", "salariés", "heures", "jours", "mois", "ans")
PERCENT, PERCENT_POINTS, RATIO, YES_NO, CATEGORY = "%", "points de %", "ratio", "oui/non", "catégorie"

# Topic group -> label. ``misc`` is the explanations' group of variables no config group lists.
GROUPS: dict[str, str] = {
    "dette_urssaf": "Dette URSSAF",
    "sante_financiere": "Santé financière",
    "activite_partielle": "Activité partielle",
    "retards_paiement": "Retards de paiement",
    "profil_entreprise": "Profil de l'entreprise",
    "misc": "Divers",
}

_URSSAF, _FINANCE, _AP, _DELAYS, _PROFILE = (
    "dette_urssaf", "sante_financiere", "activite_partielle", "retards_paiement", "profil_entreprise")

FEATURES: dict[str, Label] = {
    "effectif": Label("Effectif salarié", EMPLOYEES, _PROFILE),
    "age_entreprise": Label("Âge de l'entreprise", YEARS, _PROFILE),
    "cotisation": Label("Cotisations URSSAF mensuelles dues", EURO, _URSSAF),
    "dette_sociale_ouvriere": Label("Dette URSSAF, part salariale", EURO, _URSSAF),
    "dette_sociale_patronale": Label("Dette URSSAF, part patronale", EURO, _URSSAF),
    "dette_par_effectif": Label("Dette URSSAF par salarié", EURO_PER_EMPLOYEE, _URSSAF),
    "dette_sur_cotisation_mean12m": Label(
        "Dette URSSAF rapportée aux cotisations mensuelles (moyenne sur 12 mois)", "mois de cotisations", _URSSAF),
    "ap_heures_consommees": Label("Heures d'activité partielle consommées", HOURS, _AP),
    "ap_heures_autorisees": Label("Heures d'activité partielle autorisées", HOURS, _AP),
    "paydex": Label("Retard moyen de paiement des fournisseurs (Paydex)", DAYS, _DELAYS),
    "fpi_30": Label("Part des paiements fournisseurs en retard de plus de 30 jours", PERCENT, _DELAYS),
    "fpi_90": Label("Part des paiements fournisseurs en retard de plus de 90 jours", PERCENT, _DELAYS),
    "dette_nette_sur_caf": Label("Dette financière nette rapportée à la capacité d'autofinancement", RATIO,
                                 _FINANCE),
    "dette_a_terme_sur_k_propres": Label("Endettement à terme rapporté aux capitaux propres", RATIO, _FINANCE),
    "ebe_sur_ca": Label("Marge d'exploitation (excédent brut d'exploitation sur chiffre d'affaires)", RATIO,
                        _FINANCE),
    "va_sur_effectif": Label("Valeur ajoutée par salarié", EURO_PER_EMPLOYEE, _FINANCE),
    "charges_personnel_sur_va": Label("Charges de personnel rapportées à la valeur ajoutée", RATIO, _FINANCE),
    "stocks_sur_ca": Label("Stocks rapportés au chiffre d'affaires", RATIO, _FINANCE),
    "liquidite_absolue": Label("Actif circulant rapporté au passif circulant", RATIO, _FINANCE),
    "liquidite_generale": Label("Trésorerie rapportée à l'actif circulant", RATIO, _FINANCE),
    "liquidite_reduite": Label("Liquidité réduite", RATIO, _FINANCE),
    "delai_paiement_sur_delai_encaissement": Label(
        "Délai de paiement des fournisseurs rapporté au délai d'encaissement des clients", RATIO, _FINANCE),
    "k_propres_sur_k_social": Label("Capitaux propres rapportés au capital social", RATIO, _FINANCE),
    "bfr_sur_k_propres": Label("Besoin en fonds de roulement rapporté aux capitaux propres", RATIO, _FINANCE),
    "taux_investissement": Label("Taux d'investissement (investissements sur chiffre d'affaires)", PERCENT,
                                 _FINANCE),
    "rentabilite_economique": Label("Rentabilité économique", PERCENT, _FINANCE),
    "solidite_financiere": Label("Solidité financière (capitaux propres sur total du bilan)", PERCENT, _FINANCE),
    "code_naf": Label("Code d'activité (NAF)", CATEGORY, _PROFILE),
    "naf_section": Label("Secteur d'activité (section NAF)", CATEGORY, _PROFILE),
    "region": Label("Région", CATEGORY, _PROFILE),
    "categorie_juridique": Label("Forme juridique", CATEGORY, _PROFILE),
}

# Aggregation kind -> (label template, unit rule); {label} is the base label, {k} the months.
# A unit rule is "same" (the base unit), "difference" (the base unit, points for a percentage),
# "per_month" (that per month) or a unit.
AGGREGATION_LABELS: dict[str, tuple[str, str]] = {
    "lag": ("{label}, il y a {k} mois", "same"),
    "diff": ("{label} : variation sur les {k} derniers mois", "difference"),
    "growth": ("{label} : taux d'évolution sur les {k} derniers mois (0,1 = +10 %)", RATIO),
    "mean": ("{label}, moyenne des {k} derniers mois", "same"),
    "min": ("{label}, minimum des {k} derniers mois", "same"),
    "max": ("{label}, maximum des {k} derniers mois", "same"),
    "std": ("{label}, écart-type sur les {k} derniers mois", "difference"),
    "slope": ("{label}, tendance sur les {k} derniers mois", "per_month"),
    "months_positive": ("{label} : nombre de mois avec une valeur positive sur les {k} derniers mois", MONTHS),
    "since_increase": ("{label} : mois écoulés depuis la dernière hausse (sur les {k} derniers mois)", MONTHS),
    "since_first_positive": (
        "{label} : mois écoulés depuis la première valeur positive (sur les {k} derniers mois)", MONTHS),
}
_IMPUTED, _MISSING = "__imputed", "_manquant"  # sf_ml.modeling's suffixes (not imported: no pyspark here)
_BIN = re.compile(r"^(?P<variable>.+)_bin(?P<index>\d+)$")


def group_label(group: str) -> str:
    """The label of a topic group (an unknown group reads as its name, underscores as spaces)."""
    return GROUPS.get(group) or group.replace("_", " ").capitalize()


def _derived_unit(unit: str, rule: str) -> str:
    """The unit of an aggregation of a ``unit`` feature by an :data:`AGGREGATION_LABELS` unit rule."""
    if rule == "same":
        return unit
    if rule == "difference":
        return PERCENT_POINTS if unit == PERCENT else unit
    if rule == "per_month":
        return f"{PERCENT_POINTS if unit == PERCENT else unit} par mois"
    return rule


def _aggregated(name: str) -> Label | None:
    """The label of ``<variable>_<kind><k>m`` whose variable has a label (itself derived or not)."""
    for kind in sorted(AGGREGATIONS, key=len, reverse=True):  # since_first_positive before positive...
        match = re.fullmatch(rf"(?P<variable>.+)_{kind}(?P<k>\d+)m", name)
        if match is None:
            continue
        base = _known(match["variable"])
        if base is not None:
            template, rule = AGGREGATION_LABELS[kind]
            return Label(template.format(label=base.label, k=int(match["k"])), _derived_unit(base.unit, rule),
                         base.group)
    return None


def _known(name: str) -> Label | None:
    """The label of a base feature or of any column derived from one, else None."""
    name = name.removesuffix(_IMPUTED)
    if name in FEATURES:
        return FEATURES[name]
    category, equals, value = name.partition("=")
    if equals and category in FEATURES:
        base = FEATURES[category]
        return Label(f"{base.label} : {value}", YES_NO, base.group)
    if name.endswith(_MISSING) and (base := _known(name.removesuffix(_MISSING))) is not None:
        return Label(f"{base.label} : donnée manquante", YES_NO, base.group)
    match = _BIN.match(name)
    if match and (base := _known(match["variable"])) is not None:
        return Label(f"{base.label} : classe {int(match['index']) + 1}", YES_NO, base.group)
    return _aggregated(name)


def describe(feature: str, strict: bool = False) -> Label:
    """The label, unit and group of a feature, a model column or a feature-vector slot.

    Args:
        feature: ``paydex``, ``dette_sociale_patronale_lag12m``, ``effectif_manquant``,
            ``paydex_bin3``, ``naf_section=I``...
        strict: Raise for a name derived from no known feature instead of labelling it by itself.

    Returns:
        The :class:`Label`; an unknown name (not strict) is its own label, without unit, in ``misc``.

    Raises:
        KeyError: ``strict`` and the name derives from no feature of :data:`FEATURES`.
    """
    known = _known(feature)
    if known is not None:
        return known
    if strict:
        raise KeyError(f"no plain-French label for feature {feature!r}: add it to sf_ml.labels.FEATURES")
    return Label(feature, "", "misc")


# NAF rev. 2 sections (sf_ml.reference.NAF_SECTIONS) -> their French titles.
NAF_SECTIONS: dict[str, str] = {
    "A": "Agriculture, sylviculture et pêche", "B": "Industries extractives", "C": "Industrie manufacturière",
    "D": "Production et distribution d'électricité, de gaz, de vapeur et d'air conditionné",
    "E": "Production et distribution d'eau ; assainissement, gestion des déchets et dépollution",
    "F": "Construction", "G": "Commerce ; réparation d'automobiles et de motocycles",
    "H": "Transports et entreposage", "I": "Hébergement et restauration", "J": "Information et communication",
    "K": "Activités financières et d'assurance", "L": "Activités immobilières",
    "M": "Activités spécialisées, scientifiques et techniques",
    "N": "Activités de services administratifs et de soutien",
    "O": "Administration publique", "P": "Enseignement", "Q": "Santé humaine et action sociale",
    "R": "Arts, spectacles et activités récréatives", "S": "Autres activités de services",
    "T": "Activités des ménages en tant qu'employeurs",
    "U": "Activités extra-territoriales",
}
# Region names of sf_ml.reference (ASCII) written as in French.
REGIONS: dict[str, str] = {
    "Ile-de-France": "Île-de-France", "Bourgogne-Franche-Comte": "Bourgogne-Franche-Comté",
    "Auvergne-Rhone-Alpes": "Auvergne-Rhône-Alpes", "Provence-Alpes-Cote d'Azur": "Provence-Alpes-Côte d'Azur",
    "La Reunion": "La Réunion",
}


def naf_section_label(section: str | None) -> str | None:
    """The French title of a NAF section letter, or None when unknown."""
    return NAF_SECTIONS.get(section) if section else None


def region_label(region: str | None) -> str | None:
    """A region as written in French (the panel's name when it needs no accent)."""
    return REGIONS.get(region, region) if region else None
