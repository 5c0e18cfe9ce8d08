"""The raw data contract (``docs/data-contract.md``) as data.

Every table of the contract is described once here: its columns with their logical type,
which columns are required, which identifiers must be left-padded, which amounts must be
non-negative and which columns form its unique key. Ingestion validates against it, the
synthetic generator writes to it and the feature builder reads the typed frames it defines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Logical column types of the contract.
STRING = "string"
DATE = "date"
BOOL = "bool"
INT = "int"
FLOAT = "float"
SIREN = "siren"  # string of 9 digits, left-padded
SIRET = "siret"  # string of 14 digits, left-padded

ID_WIDTH = {SIREN: 9, SIRET: 14}

FAILURE_NATURES = ("1", "2", "3", "4", "8")
TARGET_HORIZON_MONTHS = 18
# Not a contract column: the company key while the panel is built (sf_ml.sources.company_number,
# a validated siren as a 64-bit integer, hashed and sorted faster than text). Outputs carry ``siren``.
COMPANY = "company"
# Recorded in every typed directory's manifest: raise it when a table, column, type or rule changes.
CONTRACT_VERSION = "1"


@dataclass(frozen=True)
class ScopeRule:
    """The contract's scope at a periode T: the companies scored, and labelled, at T.

    A company is in scope at T when it has a headcount record in the ``recent_months`` months
    before T, a headcount of at least ``min_headcount`` in one of the ``headcount_lookback_months``
    months before T, an active head office, a NAF division and a legal category outside the
    excluded ones, and no failure judgment before T. :mod:`sf_ml.panel` and the generator's rate
    check both read this one spec.
    """

    recent_months: int = 3
    headcount_lookback_months: int = 36
    min_headcount: float = 10
    excluded_naf_divisions: tuple[str, ...] = ("84", "85")  # public administration, education
    excluded_legal_categories: tuple[str, ...] = (
        "4110", "4120", "4140", "4160", "7210", "7220", "7346", "7348", "7366", "7373",
        "7379", "7383", "7389", "7410", "7430", "7470", "7490",
    )


SCOPE = ScopeRule()

DGFIP_AMOUNT_COLUMNS = (
    "mnt_af_ca", "mnt_af_sig_ebe_ret", "mnt_af_sig_va_ret", "mnt_af_endettement_net",
    "mnt_af_bfonc_bfr", "mnt_af_bfonc_tresorerie", "mnt_af_bfonc_actif_circ_expl",
    "mnt_af_bfonc_actif_circ_h_expl", "mnt_af_bfonc_passif_circ_expl",
    "mnt_af_bfonc_passif_circ_h_expl", "nbr_af_jours_creance_cli", "nbr_af_jours_reglt_fourn",
    "rto_af_endettement_a_terme", "rto_af_rent_eco", "rto_af_solidite_financiere",
    "rto_invest_ca", "rto_6", "rto_56", "d_actf_stk_march_net", "d_cr_250_expl_salaire",
    "d_cr_252_expl_ch_soc", "d_cr_260_expl_dt_syndic", "d_dvs_376_nbr_pers", "d_passf_120_k",
    "d_passf_142_k_propres",
)


@dataclass(frozen=True)
class Column:
    """One column of a contract table.

    Args:
        name: Column name, exactly as in the contract.
        kind: Logical type (one of the module constants).
        non_negative: Whether the contract says ``>= 0``.
        required: Whether the column must be present in the file.
        bounds: Optional inclusive (low, high) range the values must lie in.
    """

    name: str
    kind: str
    non_negative: bool = False
    required: bool = True
    bounds: tuple[float, float] | None = None


@dataclass(frozen=True)
class Table:
    """One table of the contract.

    Args:
        name: Table (and file stem) name.
        columns: Its columns, in contract order.
        key: Columns forming its unique key (empty: duplicates allowed).
        required: Whether the table must be present in the raw directory.
    """

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = field(default_factory=tuple)
    required: bool = False

    @property
    def column_names(self) -> list[str]:
        """Names of the table's columns, in contract order."""
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        """The column called ``name``."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def _c(name: str, kind: str, **kw) -> Column:
    return Column(name, kind, **kw)


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "sirene_etablissements",
            (
                _c("siren", SIREN), _c("siret", SIRET), _c("etablissementSiege", BOOL),
                _c("codeCommuneEtablissement", STRING),
                _c("activitePrincipaleEtablissement", STRING),
            ),
            key=("siret",), required=True,
        ),
        Table(
            "sirene_unites_legales",
            (
                _c("siren", SIREN), _c("categorieJuridiqueUniteLegale", STRING),
                _c("dateCreationUniteLegale", DATE),
            ),
            key=("siren",), required=True,
        ),
        Table(
            "sirene_etablissements_historique",
            (
                _c("siret", SIRET), _c("dateDebut", DATE), _c("dateFin", DATE),
                _c("etatAdministratifEtablissement", STRING),
            ),
            key=("siret", "dateDebut"),
        ),
        Table(
            "urssaf_effectif",
            (_c("siren", SIREN), _c("periode", DATE), _c("effectif", INT, non_negative=True)),
            key=("siren", "periode"), required=True,
        ),
        Table(
            "urssaf_cotisation",
            (
                _c("siret", SIRET), _c("numero_compte", STRING), _c("periode_debut", DATE),
                _c("periode_fin", DATE), _c("du", FLOAT, non_negative=True),
                _c("encaisse", FLOAT, non_negative=True),
            ),
            key=("numero_compte", "periode_debut"), required=True,
        ),
        Table(
            "urssaf_debit",
            (
                _c("siret", SIRET), _c("numero_compte", STRING),
                _c("numero_ecart_negatif", INT), _c("numero_historique", INT),
                _c("date_traitement", DATE), _c("periode_debut", DATE), _c("periode_fin", DATE),
                _c("dette_sociale_ouvriere", FLOAT, non_negative=True),
                _c("dette_sociale_patronale", FLOAT, non_negative=True),
                _c("etat_compte", INT), _c("code_procedure_collective", STRING),
            ),
            key=("numero_compte", "numero_ecart_negatif", "periode_debut", "numero_historique"),
        ),
        Table(
            "ap_demande",
            (
                _c("id_da", STRING), _c("siret", SIRET), _c("date_statut", DATE),
                _c("date_debut", DATE), _c("date_fin", DATE), _c("hta", FLOAT, non_negative=True),
                _c("eff_etab", INT, non_negative=True), _c("motif_recours_se", INT),
            ),
            key=("id_da",),
        ),
        Table(
            "ap_consommation",
            (
                _c("id_da", STRING), _c("siret", SIRET), _c("periode", DATE),
                _c("heures", FLOAT, non_negative=True), _c("montant", FLOAT, non_negative=True),
                _c("effectif", INT, non_negative=True),
            ),
            key=("id_da", "siret", "periode"),
        ),
        Table(
            "dgfip_bilans",
            (
                _c("siren", SIREN), _c("date_debut_exercice", DATE), _c("date_fin_exercice", DATE),
                _c("date_depot", DATE),
                *(_c(name, FLOAT) for name in DGFIP_AMOUNT_COLUMNS),
            ),
        ),
        Table(
            "altares_paydex",
            (
                _c("siren", SIREN), _c("date_valeur", DATE), _c("paydex", FLOAT),
                _c("nbr_fournisseurs", INT, non_negative=True),
                _c("encours_etudies", FLOAT, non_negative=True),
                _c("fpi_30", FLOAT, bounds=(0.0, 100.0)), _c("fpi_90", FLOAT, bounds=(0.0, 100.0)),
            ),
            key=("siren", "date_valeur"),
        ),
        Table(
            "procedures_collectives",
            (_c("siren", SIREN), _c("date_jugement", DATE), _c("nature_jugement", STRING)),
            required=True,
        ),
    )
}

REQUIRED_TABLES = tuple(name for name, t in TABLES.items() if t.required)
OPTIONAL_TABLES = tuple(name for name, t in TABLES.items() if not t.required)
