"""MkDocs hook: the parts of the documentation that come from the code, kept in step with it.

A page holds a generated block between two HTML comments, each on a line of its own::

    <!-- sf-docs: contract-table urssaf_debit -->

    | column | type | ... |

    <!-- /sf-docs -->

The block's Markdown is written into the page, so the page reads complete as a plain file (in a
clone, on a forge); and at every build :func:`on_page_markdown` generates it again from the package
(``sf_ml.contract``, ``sf_ml.panel``, ``sf_ml.sources``, ``sf_ml.config``, ``sf_ml.promote`` ...), the
experiment configs (``experiments/*.yaml``) and ``MLproject``, and fails the build (``PluginError``)
when the page's copy differs: the documentation cannot drift from the code. After a change of the
code, refresh every block of ``docs/`` with::

    python docs/hooks/sf_docs.py

The prose that goes with the code (what a column means, what a feature measures) is kept here next
to the generators, and a block fails to generate when the code and that prose no longer cover the
same tables, columns, features or aggregation kinds: a column added to the contract or a feature
added to the panel must be described before the site builds again. The API reference pages (one per
module of ``sf_ml``) and their navigation entries are generated at build time, so a new module
appears without editing ``mkdocs.yml``.

Only light work happens here: ``sf_ml`` modules are imported (none does work at import time; the
ones built on PySpark import it, which starts no JVM), YAML files are read, nothing touches Spark.
"""

from __future__ import annotations

import ast
import dataclasses
import html
import re
import sys
from pathlib import Path

import yaml
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # document the checkout, whatever is installed

BLOCK = re.compile(
    r"^<!--[ \t]*sf-docs:[ \t]*(?P<name>[a-z0-9-]+)(?P<arg>[^>\n]*?)[ \t]*-->[ \t]*\n"
    r"(?P<body>.*?)^<!--[ \t]*/sf-docs[ \t]*-->[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
REFRESH = "python docs/hooks/sf_docs.py"
# A block generated at build time only, with no copy in the page (the reference index, whose
# module summaries would otherwise need a refresh at every docstring edit).
LIVE = re.compile(r"^<!--[ \t]*sf-docs-live:[ \t]*(?P<name>[a-z0-9-]+)(?P<arg>[^>\n]*?)[ \t]*-->[ \t]*$", re.MULTILINE)
REFERENCE_DIR = "reference"
REFERENCE_NAV_TITLE = "API reference"

# --------------------------------------------------------------------------------------------
# Prose that goes with the contract (checked against sf_ml.contract.TABLES at every build).
# --------------------------------------------------------------------------------------------

TABLE_TEXT = {
    "sirene_etablissements": "Establishments of every company: INSEE's Sirene stock file StockEtablissement, "
    "a static snapshot. It gives each company its head office, whose activity code is the company's sector and "
    "whose commune gives its department and region.",
    "sirene_unites_legales": "Companies (legal units): INSEE's StockUniteLegale, a static snapshot, for the legal "
    "category and the creation date.",
    "sirene_etablissements_historique": "Periods of administrative state of establishments: INSEE's "
    "StockEtablissementHistorique. Only used to tell whether a company's head office is active at a date.",
    "urssaf_effectif": "Monthly headcount of each company, as declared to URSSAF.",
    "urssaf_cotisation": "Social contributions called by URSSAF, per account and contribution window. "
    "The amount of a window is spread evenly over its months.",
    "urssaf_debit": "Social debts on URSSAF accounts, one row per recorded state (version) of a debt.",
    "ap_demande": "Short-time work (activite partielle) requests to DGEFP, one row per request.",
    "ap_consommation": "Short-time work hours actually used, per request, establishment and month.",
    "dgfip_bilans": "Yearly financial statements filed with DGFiP (the tax administration), one row per "
    "declaration of a fiscal year.",
    "altares_paydex": "Supplier payment behaviour measured by Altares: how late the company pays its suppliers.",
    "procedures_collectives": "Court judgments of collective proceedings: the source of the target.",
}

COLUMN_TEXT = {
    "sirene_etablissements": {
        "siren": "company identifier",
        "siret": "establishment identifier; its first 9 digits are the siren",
        "etablissementSiege": "head office flag; each siren has exactly one head office",
        "codeCommuneEtablissement": "INSEE commune code (`75056`, `2A004`, `97105`); the department is its first "
        "2 characters, or 3 when they start with `97` (overseas)",
        "activitePrincipaleEtablissement": "NAF rev. 2 activity code, e.g. `62.01Z`; its first 2 digits are the "
        "division, which gives the section",
    },
    "sirene_unites_legales": {
        "siren": "company identifier",
        "categorieJuridiqueUniteLegale": "4-digit legal category (`5710` SAS, `5499` SARL, `7210` commune ...)",
        "dateCreationUniteLegale": "creation date of the company",
    },
    "sirene_etablissements_historique": {
        "siret": "establishment identifier",
        "dateDebut": "first day of the period",
        "dateFin": "end of the period, exclusive; empty while the period is still open",
        "etatAdministratifEtablissement": "`A` active, `F` closed",
    },
    "urssaf_effectif": {
        "siren": "company identifier",
        "periode": "the month, as its first day",
        "effectif": "employees that month",
    },
    "urssaf_cotisation": {
        "siret": "establishment identifier",
        "numero_compte": "URSSAF account; an establishment may have several over time",
        "periode_debut": "first day of the contribution window",
        "periode_fin": "end of the window, exclusive (one month or one quarter later)",
        "du": "amount due for the window, in euros",
        "encaisse": "amount paid for the window, in euros",
    },
    "urssaf_debit": {
        "siret": "establishment identifier",
        "numero_compte": "URSSAF account",
        "numero_ecart_negatif": "identifier of one debt on the account",
        "numero_historique": "version of that debt; a higher number is a later version",
        "date_traitement": "date URSSAF recorded this version",
        "periode_debut": "first day of the contribution window the debt belongs to",
        "periode_fin": "end of that window, exclusive",
        "dette_sociale_ouvriere": "employee share of the debt still due in this version, in euros",
        "dette_sociale_patronale": "employer share of the debt still due in this version, in euros",
        "etat_compte": "1 active, 2 suspended, 3 struck off",
        "code_procedure_collective": "`0` none, `1` procedure in progress, `2` recovery plan, "
        "`9` procedure without debt",
    },
    "ap_demande": {
        "id_da": "request identifier",
        "siret": "establishment identifier",
        "date_statut": "date the request was decided",
        "date_debut": "first day covered",
        "date_fin": "last day covered (inclusive)",
        "hta": "hours authorised over the whole request",
        "eff_etab": "headcount of the establishment",
        "motif_recours_se": "reason: 1 economic situation, 2 supply difficulties, 3 disaster, 4 restructuring, "
        "5 other; 6 and above are ignored",
    },
    "ap_consommation": {
        "id_da": "request identifier",
        "siret": "establishment identifier",
        "periode": "the month, as its first day",
        "heures": "hours used that month",
        "montant": "allowance paid, in euros",
        "effectif": "employees concerned",
    },
    "dgfip_bilans": {
        "siren": "company identifier",
        "date_debut_exercice": "first day of the fiscal year",
        "date_fin_exercice": "last day of the fiscal year (inclusive)",
        "date_depot": "date the statement was filed; when empty, `date_fin_exercice` plus 4 months is used",
        "mnt_af_ca": "turnover (chiffre d'affaires)",
        "mnt_af_sig_ebe_ret": "gross operating surplus (excedent brut d'exploitation), restated",
        "mnt_af_sig_va_ret": "value added, restated",
        "mnt_af_endettement_net": "net debt",
        "mnt_af_bfonc_bfr": "working capital requirement (besoin en fonds de roulement)",
        "mnt_af_bfonc_tresorerie": "cash (tresorerie)",
        "mnt_af_bfonc_actif_circ_expl": "operating current assets",
        "mnt_af_bfonc_actif_circ_h_expl": "non-operating current assets",
        "mnt_af_bfonc_passif_circ_expl": "operating current liabilities",
        "mnt_af_bfonc_passif_circ_h_expl": "non-operating current liabilities",
        "nbr_af_jours_creance_cli": "customer payment time, in days of turnover",
        "nbr_af_jours_reglt_fourn": "supplier payment time, in days of purchases",
        "rto_af_endettement_a_terme": "term-debt ratio (its inverse is the feature `dette_a_terme_sur_k_propres`)",
        "rto_af_rent_eco": "economic profitability ratio",
        "rto_af_solidite_financiere": "financial solidity ratio",
        "rto_invest_ca": "investment over turnover",
        "rto_6": "self-financing capacity (capacite d'autofinancement)",
        "rto_56": "reduced liquidity ratio",
        "d_actf_stk_march_net": "net stock of goods",
        "d_cr_250_expl_salaire": "wages and salaries (statement line 250)",
        "d_cr_252_expl_ch_soc": "social charges (statement line 252)",
        "d_cr_260_expl_dt_syndic": "statement line 260, the third personnel-cost line",
        "d_dvs_376_nbr_pers": "number of employees (statement line 376)",
        "d_passf_120_k": "share capital",
        "d_passf_142_k_propres": "equity (capitaux propres)",
    },
    "altares_paydex": {
        "siren": "company identifier",
        "date_valeur": "date of the measure",
        "paydex": "weighted average days late paying suppliers (negative: early)",
        "nbr_fournisseurs": "suppliers observed",
        "encours_etudies": "amounts observed, in euros",
        "fpi_30": "share of payments more than 30 days late, in percent",
        "fpi_90": "share of payments more than 90 days late, in percent",
    },
    "procedures_collectives": {
        "siren": "company identifier",
        "date_jugement": "date of the judgment",
        "nature_jugement": "nature of the judgment (codes below)",
    },
}

# Natures of judgment (procedures_collectives.nature_jugement); sf_ml.contract.FAILURE_NATURES are failures.
JUDGMENT_NATURES = {
    "1": "liquidation de biens",
    "2": "reglement judiciaire",
    "3": "redressement judiciaire",
    "4": "liquidation judiciaire",
    "5": "plan de redressement",
    "6": "plan de cession",
    "7": "plan de continuation",
    "8": "sauvegarde",
    "A": "plan de sauvegarde",
}

# --------------------------------------------------------------------------------------------
# Prose that goes with the panel (checked against sf_ml.panel.BASE_FEATURES and
# sf_ml.config.AGGREGATIONS at every build).
# --------------------------------------------------------------------------------------------

FLOW, STATE, DERIVED = "flow", "state", "derived"
_STATEMENT_RULE = (
    "statement of the latest fiscal year (`date_fin_exercice`) with a declaration filed before T "
    "(`date_depot`, or `date_fin_exercice` + 4 months when empty); among that year's declarations filed "
    "before T, the one with the fewest empty columns, ties broken by the latest `date_depot`"
)
_DEBT_TEXT = (
    "sum over the company's debts (`numero_compte`, `numero_ecart_negatif`, `periode_debut`) of `{column}` in "
    "the version in force, the highest `numero_historique` among the versions recorded before T; rounded to "
    "the cent, never below 0; 0 when the company has no debt recorded",
    "versions with `date_traitement` < T",
)
_PAYDEX_TEXT = "`{column}` of the latest measure"
BASE_FEATURE_TEXT: dict[str, tuple[str, str, str, str]] = {
    # feature: (source tables, kind, formula, point-in-time rule)
    "effectif": ("urssaf_effectif", STATE, "headcount of the latest month recorded",
                 "records of months before T's month (month M is known from M + 1)"),
    "cotisation": (
        "urssaf_cotisation", FLOW,
        "contributions due (`du`) for month T - 1, summed over the company's establishments and accounts; a "
        "window of n months gives `du / n` to each of its months; empty when no window covers that month",
        "month T - 1 (known at T)",
    ),
    "dette_sociale_ouvriere": ("urssaf_debit", STATE, _DEBT_TEXT[0].format(column="dette_sociale_ouvriere"),
                               _DEBT_TEXT[1]),
    "dette_sociale_patronale": ("urssaf_debit", STATE, _DEBT_TEXT[0].format(column="dette_sociale_patronale"),
                                _DEBT_TEXT[1]),
    "ap_heures_consommees": (
        "ap_consommation", FLOW,
        "`heures` of month T - 1, summed over the company's establishments; empty when none",
        "month T - 1 (known at T)",
    ),
    "ap_heures_autorisees": (
        "ap_demande", FLOW,
        "hours authorised for month T - 1: each request with `motif_recours_se` below 6 spreads `hta` evenly "
        "over its days `date_debut`..`date_fin` (inclusive), and the days of month T - 1 count; summed over the "
        "company's establishments; empty when none",
        "requests with `date_statut` < T",
    ),
    "paydex": ("altares_paydex", STATE, _PAYDEX_TEXT.format(column="paydex") + ", in days",
               "measures with `date_valeur` < T"),
    "fpi_30": ("altares_paydex", STATE, _PAYDEX_TEXT.format(column="fpi_30") + " / 100 (a share in [0, 1])",
               "measures with `date_valeur` < T"),
    "fpi_90": ("altares_paydex", STATE, _PAYDEX_TEXT.format(column="fpi_90") + " / 100 (a share in [0, 1])",
               "measures with `date_valeur` < T"),
    # The 15 financial ratios: formulas generated from sf_ml.sources.FINANCIAL_RATIOS.
    "dette_par_effectif": (
        "urssaf_debit, urssaf_effectif", DERIVED,
        "(`dette_sociale_ouvriere` + `dette_sociale_patronale`) / `effectif`; empty when `effectif` is 0 or empty",
        "those of its inputs",
    ),
    "dette_sur_cotisation_mean12m": (
        "urssaf_debit, urssaf_cotisation", DERIVED,
        "(`dette_sociale_ouvriere` + `dette_sociale_patronale`) / the mean of `cotisation` over periodes "
        "T - 11..T (contributions of months T - 12..T - 1, empty months ignored); empty when that mean is 0 or "
        "empty",
        "those of its inputs",
    ),
    "age_entreprise": (
        "sirene_unites_legales", DERIVED,
        "years from `dateCreationUniteLegale` to T (months between the two dates / 12)",
        "static snapshot",
    ),
}
_FINANCIAL_TEXT = ("dgfip_bilans", STATE, None, "the statement in force at T (see below the table)")

METADATA_TEXT = {
    "code_naf": ("sirene_etablissements", "`activitePrincipaleEtablissement` of the head office, trimmed, upper case"),
    "naf_section": ("sirene_etablissements", "NAF section letter of the head office's division (table below)"),
    "region": ("sirene_etablissements", "region of the head office's department (table below)"),
    "categorie_juridique": ("sirene_unites_legales", "`categorieJuridiqueUniteLegale`, trimmed"),
}

AGGREGATION_TEXT = {
    "lag": "the value at periode T - K (empty when the company has no row that month)",
    "diff": "the value at T minus its `lag` K",
    "growth": "the value at T divided by its `lag` K, minus 1; empty when the lag is 0, negative or empty",
    "mean": "mean of the values of periodes T - K + 1..T (the last K, T included)",
    "min": "smallest value of periodes T - K + 1..T",
    "max": "largest value of periodes T - K + 1..T",
    "std": "population standard deviation of the values of periodes T - K + 1..T; empty below 2 values",
    "slope": "least-squares slope, per month, of the values of periodes T - K + 1..T against their month; "
    "empty below 2 values",
    "months_positive": "number of periodes among T - K + 1..T whose value is above 0 (an integer, 0 when none)",
    "since_increase": "months since the latest periode among T - K + 1..T whose value is above the one of the "
    "month before (0: it rose at T); empty when it did not rise",
    "since_first_positive": "months from the earliest periode among T - K + 1..T with a value above 0 to T "
    "(at most K - 1); empty when none is above 0",
}

# Families of sf_ml modules, for the reference index (a module not listed goes to "Other").
MODULE_FAMILIES = {
    "Command line and pipeline": ("cli", "pipeline"),
    "Raw data": ("contract", "generate", "ingest", "manifest", "io", "reference"),
    "Features": ("sources", "panel", "windows", "features", "sqltext"),
    "Models": ("config", "modeling", "calibration", "evaluation", "train", "tune", "tuner", "backtest"),
    "Registry, scoring and monitoring": ("registry", "promote", "score", "explain", "labels", "report", "drift",
                                         "monitor", "reports"),
    "Tracking and infrastructure": ("tracking", "server", "spark"),
}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def _fail(message: str):
    raise PluginError(f"sf_docs: {message}")


def _cell(text: object) -> str:
    """Text safe in a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _code(name: object) -> str:
    return f"`{name}`"


def _codes(names) -> str:
    return ", ".join(_code(n) for n in names)


def _same(what: str, code: set, documented: set) -> None:
    """Fail unless the names the code has and the names described here are the same."""
    undocumented, stale = sorted(code - documented), sorted(documented - code)
    if undocumented or stale:
        _fail(f"{what}: described here but not in the code {stale}; in the code but not described {undocumented}. "
              "Update docs/hooks/sf_docs.py.")


def _modules() -> list[str]:
    """The modules of the sf_ml package (file stems), sorted."""
    return sorted(p.stem for p in (ROOT / "sf_ml").glob("*.py") if p.stem != "__init__")


def _module_summary(name: str) -> str:
    """First line of a module's docstring, read without importing it."""
    tree = ast.parse((ROOT / "sf_ml" / f"{name}.py").read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree) or ""
    return doc.strip().split("\n\n")[0].replace("\n", " ").replace("``", "`")


def _configs():
    from sf_ml.config import load_config

    paths = sorted((ROOT / "experiments").glob("*.yaml"))
    if not paths:
        _fail("no experiments/*.yaml")
    return {p.stem: load_config(p) for p in paths}


def _mlproject() -> dict:
    return yaml.safe_load((ROOT / "MLproject").read_text(encoding="utf-8"))


def _google_args(doc: str) -> dict[str, str]:
    """The ``Args:`` section of a Google-style docstring as {name: text}."""
    args, current, inside = {}, None, False
    for line in (doc or "").splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:"):
            inside = True
            continue
        if inside:
            if not stripped:
                continue
            match = re.match(r"^(\w+)(?: \([^)]*\))?: (.*)$", stripped)
            if match and line.startswith(" " * 4) and not line.startswith(" " * 8 + " "):
                current = match.group(1)
                args[current] = match.group(2)
            elif stripped.endswith(":") and not line.startswith(" " * 4):
                break
            elif current:
                args[current] += " " + stripped
    return {k: v.replace("``", "`") for k, v in args.items()}


# --------------------------------------------------------------------------------------------
# Generated blocks: the data contract
# --------------------------------------------------------------------------------------------

def _check_contract() -> None:
    from sf_ml.contract import TABLES

    _same("contract tables", set(TABLES), set(TABLE_TEXT))
    _same("contract tables (columns)", set(TABLES), set(COLUMN_TEXT))
    for name, table in TABLES.items():
        _same(f"columns of {name}", set(table.column_names), set(COLUMN_TEXT[name]))


def _type_text(column) -> str:
    from sf_ml.contract import BOOL, DATE, FLOAT, ID_WIDTH, INT, SIREN, SIRET, STRING

    names = {
        SIREN: f"siren ({ID_WIDTH[SIREN]} digits)", SIRET: f"siret ({ID_WIDTH[SIRET]} digits)",
        DATE: "date", BOOL: "bool", INT: "int", FLOAT: "float", STRING: "string",
    }
    if column.kind not in names:
        _fail(f"unknown column type {column.kind!r} of {column.name}")
    text = names[column.kind]
    if column.non_negative:
        text += " >= 0"
    if column.bounds is not None:
        low, high = column.bounds
        text += f" in [{low:g}, {high:g}]"
    return text


def block_contract_tables() -> str:
    """One row per table: required or optional, unique key, columns."""
    from sf_ml.contract import TABLES

    _check_contract()
    rows = [
        [f"[`{name}`](#{name})", "required" if t.required else "optional",
         _codes(t.key) if t.key else "none (repeats allowed)", len(t.columns), TABLE_TEXT[name]]
        for name, t in TABLES.items()
    ]
    return _table(["table", "presence", "unique key", "columns", "what it holds"], rows)


def block_contract_table(name: str) -> str:
    """The columns of one table: name, type and rule, key, meaning."""
    from sf_ml.contract import TABLES

    _check_contract()
    if name not in TABLES:
        _fail(f"contract-table: no table {name!r} in sf_ml.contract.TABLES")
    table = TABLES[name]
    rows = [
        [_code(c.name), _type_text(c), "key" if c.name in table.key else "",
         COLUMN_TEXT[name][c.name] + ("" if c.required else " (the column may be absent from the file)")]
        for c in table.columns
    ]
    key = f"Unique key: {_codes(table.key)}." if table.key else "No unique key: rows may repeat."
    presence = "Required table." if table.required else "Optional table: it may be absent."
    return f"{presence} {key}\n\n" + _table(["column", "type", "key", "meaning"], rows)


def block_required_tables() -> str:
    from sf_ml.contract import OPTIONAL_TABLES, REQUIRED_TABLES

    return (f"Required tables: {_codes(REQUIRED_TABLES)}.\n\n"
            f"Optional tables (may be absent): {_codes(OPTIONAL_TABLES)}.")


def block_unique_keys() -> str:
    from sf_ml.contract import TABLES

    rows = [[_code(n), _codes(t.key) if t.key else "none"] for n, t in TABLES.items()]
    return _table(["table", "unique key (a duplicate is bad input)"], rows)


def block_judgment_natures() -> str:
    from sf_ml.contract import FAILURE_NATURES

    missing = sorted(set(FAILURE_NATURES) - set(JUDGMENT_NATURES))
    if missing:
        _fail(f"failure natures {missing} have no label in JUDGMENT_NATURES")
    rows = [[_code(code), label, "yes" if code in FAILURE_NATURES else "no"] for code, label in JUDGMENT_NATURES.items()]
    return _table(["nature_jugement", "judgment", "failure"], rows)


def block_scope_rule() -> str:
    from sf_ml.contract import SCOPE

    return "\n".join([
        f"1. it has at least one `urssaf_effectif` month among the {SCOPE.recent_months} months before T;",
        f"2. its highest `effectif` over the {SCOPE.headcount_lookback_months} months before T is at least "
        f"{SCOPE.min_headcount:g};",
        "3. its head office is active at T, where `sirene_etablissements_historique` is given (a head office "
        "without any history period counts as active; one whose periods do not cover T does not);",
        f"4. its NAF division is not one of {_codes(SCOPE.excluded_naf_divisions)} (public administration, "
        "education);",
        f"5. its legal category is not one of {_codes(SCOPE.excluded_legal_categories)} (public bodies);",
        "6. it has no failure judgment before T: a company already in collective proceedings is known, "
        "not predicted.",
    ])


def block_target_rule() -> str:
    from sf_ml.contract import FAILURE_NATURES, TARGET_HORIZON_MONTHS
    from sf_ml.panel import TARGET

    natures = ", ".join(f"`{n}` ({JUDGMENT_NATURES[n]})" for n in FAILURE_NATURES)
    h = TARGET_HORIZON_MONTHS
    return "\n".join([
        f"- A **failure** is a judgment of nature {natures}. A company's failure date F is its first such "
        "judgment; later judgments of the same company change nothing.",
        f"- `{TARGET}` of (`siren`, T) is 1 when T <= F < T + {h} months, and 0 otherwise.",
        f"- It is empty (unknown) when T + {h} months is after the last date the judgments cover: the latest "
        "`date_jugement` of the file, or the date given as `labels_until`. Such rows are never used to train "
        "or to measure a model; they are the rows that get scored.",
    ])


# --------------------------------------------------------------------------------------------
# Generated blocks: the feature catalogue
# --------------------------------------------------------------------------------------------

def _ratio_formula(numerator: tuple[str, ...], denominator: tuple[str, ...] | None) -> str:
    def terms(names):
        text = " + ".join(f"`{n}`" for n in names)
        return f"({text})" if len(names) > 1 else text

    top = terms(numerator) if numerator else "1"
    if denominator is None:
        return top
    return f"{top} / {terms(denominator)}"


def _feature_rows() -> list[list[str]]:
    from sf_ml.panel import BASE_FEATURES
    from sf_ml.sources import FINANCIAL_RATIOS

    documented = set(BASE_FEATURE_TEXT) | set(FINANCIAL_RATIOS)
    _same("base features (sf_ml.panel.BASE_FEATURES)", set(BASE_FEATURES), documented)
    rows = []
    for feature in BASE_FEATURES:
        if feature in FINANCIAL_RATIOS:
            source, kind, _, rule = _FINANCIAL_TEXT
            numerator, denominator = FINANCIAL_RATIOS[feature]
            formula = _ratio_formula(numerator, denominator)
            if denominator is not None:
                formula += " (empty when the denominator is 0 or empty)"
        else:
            source, kind, formula, rule = BASE_FEATURE_TEXT[feature]
        rows.append([_code(feature), source, kind, formula, rule])
    return rows


def block_base_features() -> str:
    return _table(["feature", "source table", "kind", "formula at periode T", "records used at T"], _feature_rows())


def block_statement_rule() -> str:
    return f"The statement in force at T is the {_STATEMENT_RULE}."


def block_financial_ratios() -> str:
    from sf_ml.sources import FINANCIAL_RATIOS

    rows = [[_code(name), _ratio_formula(*terms)] for name, terms in FINANCIAL_RATIOS.items()]
    return _table(["feature", "formula (a zero or empty denominator gives an empty value)"], rows)


def block_metadata_columns() -> str:
    from sf_ml.config import CATEGORICAL_COLUMNS
    from sf_ml.panel import METADATA_COLUMNS

    _same("metadata columns (sf_ml.panel.METADATA_COLUMNS)", set(METADATA_COLUMNS), set(METADATA_TEXT))
    rows = [[_code(c), METADATA_TEXT[c][0], METADATA_TEXT[c][1], "yes" if c in CATEGORICAL_COLUMNS else "no"]
            for c in METADATA_COLUMNS]
    return _table(["column", "source table", "value", "usable as a category"], rows)


def block_naf_sections() -> str:
    from sf_ml.reference import NAF_SECTIONS

    rows = [[section, f"{low:02d}" if low == high else f"{low:02d} to {high:02d}"]
            for section, (low, high) in NAF_SECTIONS.items()]
    return _table(["naf_section", "NAF divisions"], rows)


def block_regions() -> str:
    from sf_ml.reference import REGION_DEPARTMENTS

    rows = [[region, ", ".join(departments)] for region, departments in REGION_DEPARTMENTS.items()]
    return _table(["region", "departments"], rows)


def block_aggregations() -> str:
    from sf_ml.config import AGGREGATIONS, aggregated_name

    _same("aggregation kinds (sf_ml.config.AGGREGATIONS)", set(AGGREGATIONS), set(AGGREGATION_TEXT))
    configs = _configs()
    rows = []
    for kind in AGGREGATIONS:
        used = [name for name, c in configs.items() if c.features.time_aggregation.get(kind)]
        rows.append([_code(kind), _code(aggregated_name("<variable>", kind, "<K>")), AGGREGATION_TEXT[kind],
                     ", ".join(used) or "none yet"])
    return _table(["kind", "column", "value at periode T over K months", "used by configs"], rows)


def block_config_aggregations() -> str:
    """Per config, the aggregated columns it asks for (grouped by kind and variable)."""
    from sf_ml.config import AGGREGATIONS

    parts = []
    for name, config in _configs().items():
        spec = config.features.time_aggregation
        rows = [[_code(kind), _code(variable), ", ".join(str(m) for m in months)]
                for kind in AGGREGATIONS for variable, months in sorted(spec.get(kind, {}).items())]
        extras = []
        if config.features.missing_indicators:
            extras.append("a `<variable>_manquant` indicator per base variable")
        if config.features.categorical:
            extras.append(f"categories {_codes(config.features.categorical)}")
        title = (f"**`{name}`**: {len(config.features.variables)} base variables, "
                 f"{len(config.aggregated_columns())} aggregated columns"
                 + (f", {', '.join(extras)}" if extras else "") + ".")
        parts.append(title + "\n\n" + (_table(["kind", "variable", "K (months)"], rows) if rows else "No aggregation."))
    return "\n\n".join(parts)


def block_lookback() -> str:
    from sf_ml.contract import SCOPE

    return (f"The panel is built from {SCOPE.headcount_lookback_months} months before its first periode (the scope's "
            "headcount look-back), or the longest aggregation window of the config plus 12 months when that is "
            "longer (`sf_ml.panel.lookback_months`).")


# --------------------------------------------------------------------------------------------
# Generated blocks: models, configs, promotion
# --------------------------------------------------------------------------------------------

def _params(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"


def block_configs() -> str:
    from sf_ml.config import DEFAULT_CONFIG
    from sf_ml.modeling import NATIVE_MISSING_TYPES

    rows = []
    for name, c in _configs().items():
        if c.model.type in NATIVE_MISSING_TYPES:
            missing = "left to the learner (no imputation)"
        else:
            missing = f"imputed ({len(c.fill_default_values)} defaults, others 0)"
        prep = [p for p in ("scaled" if c.model.scale else "", f"bins: {_codes(c.model.bins)}" if c.model.bins else "") if p]
        rows.append([
            _code(name) + (" (default)" if name == DEFAULT_CONFIG else ""), c.model.type, _params(c.model.params),
            f"{len(c.features.variables)} + {len(c.aggregated_columns())}"
            + (" + indicators" if c.features.missing_indicators else "")
            + (f" + {len(c.features.categorical)} categories" if c.features.categorical else ""),
            missing + ("; " + "; ".join(prep) if prep else ""),
            f"{c.sampling.strategy} to {c.sampling.minority_ratio:g}" if c.sampling.strategy != "none" else "none",
            f"{c.calibration.method}, last {c.calibration.months} months",
            c.description,
        ])
    return _table(["config", "model.type", "model.params", "features (base + aggregated)", "missing values",
                   "resampling", "calibration", "description"], rows)


def block_search_spaces() -> str:
    rows = []
    for name, c in _configs().items():
        for param, spec in c.search_space.items():
            rest = ", ".join(f"{k} {v}" for k, v in spec.items() if k != "type")
            rows.append([_code(name), _code(param), spec.get("type", ""), rest])
    return _table(["config", "parameter", "distribution", "range"], rows)


def block_topic_groups() -> str:
    """Each distinct topic group (name and variables), with the configs that define it so."""
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for name, c in _configs().items():
        for group, variables in c.topic_groups.items():
            groups.setdefault((group, tuple(variables)), []).append(name)
    rows = [[_code(group), _codes(variables), ", ".join(configs)] for (group, variables), configs in groups.items()]
    return _table(["topic group", "base variables", "in configs"], rows)


def block_promotion_gate() -> str:
    import inspect

    from sf_ml.promote import GATE, PromotionGate

    described = _google_args(inspect.getdoc(PromotionGate))
    rows = []
    for f in dataclasses.fields(PromotionGate):
        if f.name not in described:
            _fail(f"PromotionGate.{f.name} has no Args entry in its docstring")
        rows.append([_code(f.name), f"{getattr(GATE, f.name):g}", described[f.name]])
    return _table(["gate setting", "value", "rule"], rows)


def block_risk_levels() -> str:
    from sf_ml.evaluation import MAX_ALERT_SHARE, RISK_LEVELS
    from sf_ml.registry import THRESHOLD_TAG_PREFIX

    rows = [[_code(level), f"F{beta:g}", "precision first" if beta < 1 else "recall first",
             f"{MAX_ALERT_SHARE[level]:.0%}", _code(THRESHOLD_TAG_PREFIX + level)]
            for level, beta in RISK_LEVELS.items()]
    return _table(["alert level", "threshold maximises", "favours", "flags at most", "version tag"], rows)


def block_version_tags() -> str:
    from sf_ml.train import VERSION_TAG_METRICS

    return _codes(VERSION_TAG_METRICS)


# --------------------------------------------------------------------------------------------
# Generated blocks: entry points and the pipeline
# --------------------------------------------------------------------------------------------

def block_entry_point(name: str) -> str:
    """Parameters of one MLproject entry point, with the help of the CLI option they feed."""
    from sf_ml.cli import cli

    entry_points = _mlproject()["entry_points"]
    if name not in entry_points:
        _fail(f"entry-point: no entry point {name!r} in MLproject")
    spec = entry_points[name]
    command = " ".join(spec["command"].split())
    match = re.search(r"sf_ml\.cli (\S+)", command)
    if not match or match.group(1) not in cli.commands:
        _fail(f"entry point {name}: command {command!r} does not call an sf-ml sub-command")
    sub = cli.commands[match.group(1)]
    option_of = {param: option for option, param in re.findall(r"(--[a-z0-9-]+) \{(\w+)\}", command)}
    helps = {opt: p.help or "" for p in sub.params for opt in getattr(p, "opts", [])}
    rows = []
    for param, info in (spec.get("parameters") or {}).items():
        info = info or {}
        if "default" not in info:
            default = "required"
        elif info["default"] == "":
            default = "empty"
        else:
            default = _code(info["default"])
        option = option_of.get(param)
        if option is None:
            _fail(f"entry point {name}: parameter {param} is not passed to the command")
        rows.append([_code(param), info.get("type", "string"), default, _code(option), helps.get(option, "")])
    head = f"`mlflow run . -e {name} --env-manager local -P ...` runs `sf-ml {match.group(1)}`."
    return head + "\n\n" + _table(["parameter", "type", "default", "CLI option", "meaning"], rows)


def block_cli_commands() -> str:
    from sf_ml.cli import cli

    entry_of = {}
    for name, spec in _mlproject()["entry_points"].items():
        match = re.search(r"sf_ml\.cli (\S+)", spec["command"])
        if match:
            entry_of[match.group(1)] = name
    rows = []
    for command_name, command in cli.commands.items():
        summary = (command.help or "").strip().split("\n")[0]
        entry = entry_of.get(command_name)
        rows.append([_code(f"sf-ml {command_name}"), _code(entry) if entry else "(none)", summary])
    return _table(["command", "MLproject entry point", "what it does"], rows)


def block_main_steps() -> str:
    """The steps ``run_all`` launches, in order, read from sf_ml/pipeline.py (not imported)."""
    tree = ast.parse((ROOT / "sf_ml" / "pipeline.py").read_text(encoding="utf-8"))
    run_all = next((n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "run_all"), None)
    if run_all is None:
        _fail("sf_ml/pipeline.py has no run_all")
    steps = []
    for node in ast.walk(run_all):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("step", "run_step")
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            steps.append((node.lineno, node.args[0].value))
    names = [name for _, name in sorted(steps)]
    if not names:
        _fail("no step found in sf_ml.pipeline.run_all")
    return " -> ".join(_code(n) for n in names)


# --------------------------------------------------------------------------------------------
# Generated blocks: the reference index
# --------------------------------------------------------------------------------------------

def block_module_index() -> str:
    modules = _modules()
    placed = {m for family in MODULE_FAMILIES.values() for m in family}
    families = {title: [m for m in members if m in modules] for title, members in MODULE_FAMILIES.items()}
    other = [m for m in modules if m not in placed]
    if other:
        families["Other"] = other
    parts = []
    for title, members in families.items():
        if members:
            rows = [[f"[`sf_ml.{m}`]({m}.md)", _module_summary(m)] for m in members]
            parts.append(f"## {title}\n\n" + _table(["module", "summary"], rows))
    return "\n\n".join(parts)


BLOCKS = {
    "contract-tables": block_contract_tables,
    "contract-table": block_contract_table,
    "required-tables": block_required_tables,
    "unique-keys": block_unique_keys,
    "judgment-natures": block_judgment_natures,
    "scope-rule": block_scope_rule,
    "target-rule": block_target_rule,
    "base-features": block_base_features,
    "financial-ratios": block_financial_ratios,
    "statement-rule": block_statement_rule,
    "metadata-columns": block_metadata_columns,
    "naf-sections": block_naf_sections,
    "regions": block_regions,
    "aggregations": block_aggregations,
    "config-aggregations": block_config_aggregations,
    "lookback": block_lookback,
    "configs": block_configs,
    "search-spaces": block_search_spaces,
    "topic-groups": block_topic_groups,
    "promotion-gate": block_promotion_gate,
    "risk-levels": block_risk_levels,
    "version-tags": block_version_tags,
    "entry-point": block_entry_point,
    "cli-commands": block_cli_commands,
    "main-steps": block_main_steps,
    "module-index": block_module_index,
}


# --------------------------------------------------------------------------------------------
# MkDocs events
# --------------------------------------------------------------------------------------------

def on_config(config, **kwargs):
    """Replace the ``API reference`` section of the nav by one entry per sf_ml module."""
    nav = config.nav or []
    for item in nav:
        if isinstance(item, dict) and REFERENCE_NAV_TITLE in item:
            item[REFERENCE_NAV_TITLE] = [{"Overview": f"{REFERENCE_DIR}/index.md"}] + [
                {f"sf_ml.{m}": f"{REFERENCE_DIR}/{m}.md"} for m in _modules()
            ]
            break
    else:
        _fail(f"mkdocs.yml nav has no {REFERENCE_NAV_TITLE!r} section")
    return config


def on_files(files, config, **kwargs):
    """Add the generated API reference pages (one ``::: sf_ml.<module>`` page per module)."""
    for module in _modules():
        path = f"{REFERENCE_DIR}/{module}.md"
        if files.get_file_from_path(path) is not None:
            _fail(f"docs/{path} exists: the API reference pages are generated, remove it")
        files.append(File.generated(config, path, content=f"::: sf_ml.{module}\n"))
    return files


def generate(name: str, arg: str, where: str) -> str:
    """The Markdown of one block, freshly generated."""
    if name not in BLOCKS:
        _fail(f"{where}: unknown generated block {name!r} (known: {sorted(BLOCKS)})")
    try:
        return (BLOCKS[name](arg) if arg else BLOCKS[name]()).strip()
    except TypeError as error:
        _fail(f"{where}: block {name!r} called with {arg!r}: {error}")


def _normal(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def check_blocks(markdown: str, where: str) -> str:
    """``markdown`` if every block in it equals its generated Markdown; else fail, naming the block."""
    for match in BLOCK.finditer(markdown):
        name, arg = match.group("name"), match.group("arg").strip()
        if _normal(match.group("body")) != _normal(generate(name, arg, where)):
            _fail(f"{where}: the generated block '{(name + ' ' + arg).strip()}' no longer matches the code; "
                  f"run `{REFRESH}` to rewrite the blocks of docs/ from the code, and review the diff")
    if re.search(r"^<!--[ \t]*/?sf-docs", BLOCK.sub("", LIVE.sub("", markdown)), re.MULTILINE):
        _fail(f"{where}: an sf-docs marker without its closing <!-- /sf-docs --> (each on a line of its own)")
    return markdown


def refresh_blocks(markdown: str, where: str) -> str:
    """``markdown`` with every block's body replaced by its generated Markdown."""

    def rewrite(match: re.Match) -> str:
        name, arg = match.group("name"), match.group("arg").strip()
        head = f"<!-- sf-docs: {name}{' ' + arg if arg else ''} -->"
        return f"{head}\n\n{generate(name, arg, where)}\n\n<!-- /sf-docs -->"

    return BLOCK.sub(rewrite, markdown)


def on_page_markdown(markdown, page, config, files, **kwargs):
    """Check the page's generated blocks against the code, expand its live blocks."""
    where = f"docs/{page.file.src_path}"
    markdown = LIVE.sub(lambda m: generate(m.group("name"), m.group("arg").strip(), where), markdown)
    return check_blocks(markdown, where)


_ROLE = re.compile(r":(?:func|class|mod|data|meth|attr|exc|obj):<code>(~?)([^<]+?)</code>")


def on_page_content(content, page, config, files, **kwargs):
    """Turn the Sphinx roles of the docstrings (``:func:`x```) into cross-references.

    The docstrings are written for Sphinx; rendered by mkdocstrings they would show the role
    literally. Each becomes an optional autorefs link (a plain code span when the target is not
    documented): names without a dot are looked up in the module of the reference page.
    """
    src = page.file.src_uri
    module = None
    if src.startswith(f"{REFERENCE_DIR}/") and src != f"{REFERENCE_DIR}/index.md":
        module = "sf_ml." + Path(src).stem

    def link(match: re.Match) -> str:
        short, target = match.group(1) == "~", html.unescape(match.group(2)).strip()
        name = target.rstrip("()")
        identifier = name if name.startswith("sf_ml") or module is None else f"{module}.{name}"
        title = name.rsplit(".", 1)[-1] if short else target
        return f'<autoref identifier="{html.escape(identifier)}" optional><code>{html.escape(title)}</code></autoref>'

    content = _ROLE.sub(link, content)
    # reST literal-block markers ("scale::" before an indented block) read as a plain colon.
    return content.replace("::</p>", ":</p>")


def main() -> int:
    """Rewrite the generated blocks of every page under docs/ from the code; print what changed."""
    changed = []
    for path in sorted((ROOT / "docs").rglob("*.md")):
        text = path.read_text(encoding="utf-8")
        where = str(path.relative_to(ROOT))
        fresh = refresh_blocks(text, where)
        check_blocks(fresh, where)
        if fresh != text:
            path.write_text(fresh, encoding="utf-8")
            changed.append(where)
    print("rewrote " + ", ".join(changed) if changed else "every generated block is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
