"""One function per raw table: typed contract table -> company x periode frame.

Every frame returned here is keyed by ``company`` (:data:`sf_ml.contract.COMPANY`), the
:func:`company_number` of the siren. The monthly ones are keyed by (``company``, ``periode``),
where ``periode`` is the first month start at which the values are *known* under the
point-in-time rule of the contract:

* a monthly record of month M (``urssaf_effectif``, ``urssaf_cotisation`` spread over its
  months, ``ap_consommation``) is known from ``periode`` M + 1 month;
* a dated record (``date_traitement``, ``date_statut``, ``date_valeur``, ``date_depot``) dated d
  is known from the first month start strictly after d.

Two kinds of frames come out: *flows*, the value of the month before ``periode`` (joined exactly),
and *states*, the situation as of ``periode`` given at the months where it changes (carried
forward by :func:`sf_ml.panel.company_months`). Everything stays linear in the input size: no
cross join of versions with months.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from sf_ml import sqltext
from sf_ml.contract import COMPANY, DGFIP_AMOUNT_COLUMNS, FAILURE_NATURES
from sf_ml.reference import DEPARTMENT_REGION, DIVISION_SECTION

DEBT_COLUMNS = ("dette_sociale_ouvriere", "dette_sociale_patronale")
PAYDEX_COLUMNS = ("paydex", "fpi_30", "fpi_90")

# The 15 financial ratios of the contract: name -> (numerator terms, denominator terms).
# A missing denominator (None) means the ratio is the numerator itself.
FINANCIAL_RATIOS: dict[str, tuple[tuple[str, ...], tuple[str, ...] | None]] = {
    "dette_nette_sur_caf": (("mnt_af_endettement_net",), ("rto_6",)),
    "dette_a_terme_sur_k_propres": ((), ("rto_af_endettement_a_terme",)),
    "ebe_sur_ca": (("mnt_af_sig_ebe_ret",), ("mnt_af_ca",)),
    "va_sur_effectif": (("mnt_af_sig_va_ret",), ("d_dvs_376_nbr_pers",)),
    "charges_personnel_sur_va": (
        ("d_cr_250_expl_salaire", "d_cr_252_expl_ch_soc", "d_cr_260_expl_dt_syndic"),
        ("mnt_af_sig_va_ret",),
    ),
    "stocks_sur_ca": (("d_actf_stk_march_net",), ("mnt_af_ca",)),
    "liquidite_absolue": (
        ("mnt_af_bfonc_actif_circ_expl", "mnt_af_bfonc_actif_circ_h_expl"),
        ("mnt_af_bfonc_passif_circ_expl", "mnt_af_bfonc_passif_circ_h_expl"),
    ),
    "liquidite_generale": (
        ("mnt_af_bfonc_tresorerie",),
        ("mnt_af_bfonc_actif_circ_expl", "mnt_af_bfonc_actif_circ_h_expl"),
    ),
    "liquidite_reduite": (("rto_56",), None),
    "delai_paiement_sur_delai_encaissement": (
        ("nbr_af_jours_reglt_fourn",), ("nbr_af_jours_creance_cli",),
    ),
    "k_propres_sur_k_social": (("d_passf_142_k_propres",), ("d_passf_120_k",)),
    "bfr_sur_k_propres": (("mnt_af_bfonc_bfr",), ("d_passf_142_k_propres",)),
    "taux_investissement": (("rto_invest_ca",), None),
    "rentabilite_economique": (("rto_af_rent_eco",), None),
    "solidite_financiere": (("rto_af_solidite_financiere",), None),
}
FINANCIAL_COLUMNS = tuple(FINANCIAL_RATIOS)


def known_from(date: Column) -> Column:
    """First month start strictly after ``date``: the first periode at which a record is known."""
    return F.add_months(F.trunc(date, "month"), 1)


def company_number(siren: Column) -> Column:
    """A padded siren as a number: the ``company`` key of the frames built here.

    Validated sirens are 9 digits, so the number stands for exactly one siren; as a 64-bit key
    it is hashed, compared and sorted several times faster than the text.
    """
    return siren.cast("bigint")


def siren_text(number: Column) -> Column:
    """The padded siren of a :func:`company_number`."""
    return F.lpad(number.cast("string"), 9, "0")


def siren_of(siret: Column) -> Column:
    """The :func:`company_number` of the siren (first 9 digits) of a padded siret."""
    return company_number(F.substring(siret, 1, 9))


def safe_ratio(numerator: str, denominator: str) -> str:
    """SQL of ``numerator / denominator`` (SQL terms), null when the denominator is zero or null."""
    return (
        f"CASE WHEN {denominator} IS NULL OR {denominator} = 0 THEN CAST(NULL AS DOUBLE)"
        f" ELSE {numerator} / {denominator} END"
    )


def _sum_terms(names: tuple[str, ...]) -> str:
    return "(" + " + ".join(sqltext.name(n) for n in names) + ")"


def effectif_known(urssaf_effectif: DataFrame) -> DataFrame:
    """Monthly headcount, keyed by the periode it becomes known (record month + 1).

    Args:
        urssaf_effectif: Typed ``urssaf_effectif`` table.

    Returns:
        ``company, periode, effectif`` (a state: carried forward between records).
    """
    return urssaf_effectif.select(
        company_number(F.col("siren")).alias(COMPANY),
        F.add_months(F.trunc("periode", "month"), 1).alias("periode"),
        F.col("effectif").cast("double").alias("effectif"),
    )


def cotisation_monthly(urssaf_cotisation: DataFrame) -> DataFrame:
    """Contributions due per siren and month, each window spread evenly over its months.

    A window ``[periode_debut, periode_fin)`` of n months gives ``du / n`` to each month; the
    months are summed over the company's establishments and accounts.

    Args:
        urssaf_cotisation: Typed ``urssaf_cotisation`` table.

    Returns:
        ``company, periode, cotisation`` where ``cotisation`` is the amount due for the month
        before ``periode`` (a flow).
    """
    first = F.trunc("periode_debut", "month")
    n_months = F.greatest(
        F.lit(1), F.round(F.months_between(F.trunc("periode_fin", "month"), first)).cast("int")
    )
    spread = (
        urssaf_cotisation.select(
            siren_of(F.col("siret")).alias(COMPANY),
            first.alias("first_month"),
            n_months.alias("n_months"),
            F.col("du"),
        )
        .withColumn("offset", F.explode(F.sequence(F.lit(0), F.col("n_months") - 1)))
        .select(
            COMPANY,
            F.add_months(F.add_months("first_month", F.col("offset")), 1).alias("periode"),
            (F.col("du") / F.col("n_months")).alias("cotisation"),
        )
    )
    return spread.groupBy(COMPANY, "periode").agg(F.sum("cotisation").alias("cotisation"))


def debt_outstanding(urssaf_debit: DataFrame) -> DataFrame:
    """Social debt outstanding per siren, at each periode where it changes.

    For each debt (``numero_compte``, ``numero_ecart_negatif``, ``periode_debut``) the version in
    force at periode T is the highest ``numero_historique`` among versions with
    ``date_traitement`` < T. Each debt contributes the change of its amounts at the periodes where
    its version in force changes; a running sum per siren then gives the outstanding total —
    linear in the number of versions, whatever the number of months.

    Args:
        urssaf_debit: Typed ``urssaf_debit`` table.

    Returns:
        ``company, periode, dette_sociale_ouvriere, dette_sociale_patronale`` (a state).
    """
    debt_key = [COMPANY, "numero_compte", "numero_ecart_negatif", "periode_debut"]
    versions = urssaf_debit.select(
        siren_of(F.col("siret")).alias(COMPANY),
        "numero_compte",
        "numero_ecart_negatif",
        "periode_debut",
        known_from(F.col("date_traitement")).alias("periode"),
        F.struct(
            F.col("numero_historique"),
            *(F.coalesce(F.col(c), F.lit(0.0)).alias(c) for c in DEBT_COLUMNS),
        ).alias("version"),
    )
    per_month = versions.groupBy(*debt_key, "periode").agg(F.max("version").alias("version"))
    by_debt = Window.partitionBy(*debt_key).orderBy("periode")
    in_force = per_month.withColumn(
        "version", F.max("version").over(by_debt.rowsBetween(Window.unboundedPreceding, 0))
    )
    changes = in_force.select(
        COMPANY,
        "periode",
        *(
            (
                F.col(f"version.{c}")
                - F.coalesce(F.lag(f"version.{c}").over(by_debt), F.lit(0.0))
            ).alias(c)
            for c in DEBT_COLUMNS
        ),
    )
    by_company = Window.partitionBy(COMPANY).orderBy("periode").rowsBetween(Window.unboundedPreceding, 0)
    monthly = changes.groupBy(COMPANY, "periode").agg(*(F.sum(c).alias(c) for c in DEBT_COLUMNS))
    # Rounding keeps settled debts at exactly 0 despite floating-point cancellation.
    return monthly.select(
        COMPANY,
        "periode",
        *(F.greatest(F.round(F.sum(c).over(by_company), 2), F.lit(0.0)).alias(c) for c in DEBT_COLUMNS),
    )


def ap_consommation_monthly(ap_consommation: DataFrame) -> DataFrame:
    """Short-time-work hours used per siren and month.

    Args:
        ap_consommation: Typed ``ap_consommation`` table.

    Returns:
        ``company, periode, ap_heures_consommees``: hours of the month before ``periode`` (a flow).
    """
    return ap_consommation.groupBy(
        siren_of(F.col("siret")).alias(COMPANY),
        F.add_months(F.trunc("periode", "month"), 1).alias("periode"),
    ).agg(F.sum("heures").alias("ap_heures_consommees"))


def ap_autorisation_monthly(ap_demande: DataFrame) -> DataFrame:
    """Short-time-work hours authorised per siren and month.

    Requests with ``motif_recours_se`` < 6 spread their ``hta`` evenly over the days from
    ``date_debut`` to ``date_fin`` (inclusive). The share of month M counts at periode M + 1 only
    when the request was decided (``date_statut``) before that periode.

    Args:
        ap_demande: Typed ``ap_demande`` table.

    Returns:
        ``company, periode, ap_heures_autorisees`` (a flow).
    """
    requests = ap_demande.where(
        (F.col("motif_recours_se") < 6)
        & F.col("date_debut").isNotNull()
        & (F.col("date_fin") >= F.col("date_debut"))
    ).select(
        siren_of(F.col("siret")).alias(COMPANY),
        "date_debut",
        "date_fin",
        "hta",
        known_from(F.col("date_statut")).alias("decided_from"),
        (F.datediff("date_fin", "date_debut") + 1).alias("n_days"),
    )
    months = requests.withColumn(
        "month",
        F.explode(
            F.sequence(
                F.trunc("date_debut", "month"), F.trunc("date_fin", "month"), F.expr("interval 1 month")
            )
        ),
    )
    overlap = (
        F.datediff(F.least(F.col("date_fin"), F.last_day("month")), F.greatest(F.col("date_debut"), F.col("month")))
        + 1
    )
    shares = months.select(
        COMPANY,
        F.add_months("month", 1).alias("periode"),
        "decided_from",
        (F.col("hta") * overlap / F.col("n_days")).alias("ap_heures_autorisees"),
    ).where(F.col("decided_from") <= F.col("periode"))
    return shares.groupBy(COMPANY, "periode").agg(F.sum("ap_heures_autorisees").alias("ap_heures_autorisees"))


def paydex_latest(altares_paydex: DataFrame) -> DataFrame:
    """Latest supplier-payment measure per siren, at each periode where a new one is known.

    Args:
        altares_paydex: Typed ``altares_paydex`` table.

    Returns:
        ``company, periode, paydex, fpi_30, fpi_90`` with ``fpi_*`` as fractions (a state).
    """
    measures = altares_paydex.select(
        company_number(F.col("siren")).alias(COMPANY),
        known_from(F.col("date_valeur")).alias("periode"),
        F.struct(
            F.col("date_valeur"),
            F.col("paydex"),
            (F.col("fpi_30") / 100.0).alias("fpi_30"),
            (F.col("fpi_90") / 100.0).alias("fpi_90"),
        ).alias("measure"),
    )
    latest = measures.groupBy(COMPANY, "periode").agg(F.max("measure").alias("measure"))
    return latest.select(COMPANY, "periode", *(F.col(f"measure.{c}").alias(c) for c in PAYDEX_COLUMNS))


def financial_ratios(dgfip_bilans: DataFrame) -> DataFrame:
    """The 15 financial ratios of the contract, one row per declaration.

    Args:
        dgfip_bilans: Typed ``dgfip_bilans`` table.

    Returns:
        The declarations' identifying columns, ``date_depot`` (defaulted to the fiscal year end
        plus 4 months), ``null_count`` over the DGFiP columns, and the ratio columns.
    """
    ratios = []
    for name, (numerator, denominator) in FINANCIAL_RATIOS.items():
        top = _sum_terms(numerator) if numerator else "1.0D"
        ratio = top if denominator is None else safe_ratio(top, _sum_terms(denominator))
        ratios.append(f"{ratio} AS {sqltext.name(name)}")
    null_count = " + ".join(f"CAST({sqltext.name(c)} IS NULL AS INT)" for c in DGFIP_AMOUNT_COLUMNS)
    # SQL text: the Column API would cost a thousand round trips to the JVM for these sums.
    return dgfip_bilans.selectExpr(
        "siren",
        "date_debut_exercice",
        "date_fin_exercice",
        "coalesce(date_depot, add_months(date_fin_exercice, 4)) AS date_depot",
        f"{null_count} AS null_count",
        *ratios,
    )


def financial_latest(dgfip_bilans: DataFrame) -> DataFrame:
    """Financial ratios of the latest statement filed, at each periode where it changes.

    At periode T the statement used is that of the latest fiscal year (``date_fin_exercice``)
    with a declaration filed before T; among that year's declarations filed before T, the one
    with the fewest null columns, ties broken by the latest ``date_depot``.

    Args:
        dgfip_bilans: Typed ``dgfip_bilans`` table.

    Returns:
        ``company, periode, date_fin_exercice`` and the ratio columns (a state).
    """
    declarations = financial_ratios(dgfip_bilans).select(
        company_number(F.col("siren")).alias(COMPANY),
        "date_debut_exercice",
        "date_fin_exercice",
        known_from(F.col("date_depot")).alias("periode"),
        # min() of this struct = fewest nulls, then latest filing.
        F.struct(
            F.col("null_count"),
            F.datediff(F.lit("1970-01-01").cast("date"), F.col("date_depot")).alias("minus_depot"),
            *(F.col(c) for c in FINANCIAL_COLUMNS),
        ).alias("declaration"),
    )
    fiscal_year = [COMPANY, "date_debut_exercice", "date_fin_exercice"]
    per_month = declarations.groupBy(*fiscal_year, "periode").agg(F.min("declaration").alias("declaration"))
    best_so_far = per_month.withColumn(
        "declaration",
        F.min("declaration").over(
            Window.partitionBy(*fiscal_year).orderBy("periode").rowsBetween(Window.unboundedPreceding, 0)
        ),
    )
    # max() of (year end, periode, ...) = latest fiscal year, in its most recent best version.
    candidate = F.struct(
        F.col("date_fin_exercice"), F.col("periode").alias("known_from"), F.col("declaration")
    )
    in_force = best_so_far.withColumn(
        "statement",
        F.max(candidate).over(
            Window.partitionBy(COMPANY).orderBy("periode").rowsBetween(Window.unboundedPreceding, 0)
        ),
    )
    latest = in_force.groupBy(COMPANY, "periode").agg(F.max("statement").alias("statement"))
    return latest.select(
        COMPANY,
        "periode",
        F.col("statement.date_fin_exercice").alias("date_fin_exercice"),
        *(F.col(f"statement.declaration.{c}").alias(c) for c in FINANCIAL_COLUMNS),
    )


def failure_dates(procedures_collectives: DataFrame) -> DataFrame:
    """Each company's failure date: its first judgment of a failure nature.

    Args:
        procedures_collectives: Typed ``procedures_collectives`` table.

    Returns:
        ``company`` (:func:`company_number`), ``date_defaillance``.
    """
    return (
        procedures_collectives.where(F.trim("nature_jugement").isin(*FAILURE_NATURES))
        .groupBy(company_number(F.col("siren")).alias(COMPANY))
        .agg(F.min("date_jugement").alias("date_defaillance"))
    )


def _mapping(mapping: dict[str, str]) -> Column:
    return F.expr(sqltext.string_map(mapping))


def head_offices(sirene_etablissements: DataFrame) -> DataFrame:
    """Each company's head office from Sirene: its siret, activity and place.

    Args:
        sirene_etablissements: Typed ``sirene_etablissements`` table (one head office per
            siren, as validated).

    Returns:
        ``company`` (:func:`company_number`), ``siret_siege, code_naf, naf_division, naf_section,
        departement, region``.
    """
    commune = F.upper(F.trim("codeCommuneEtablissement"))
    departement = F.when(commune.startswith("97"), F.substring(commune, 1, 3)).otherwise(
        F.substring(commune, 1, 2)
    )
    naf = F.upper(F.trim("activitePrincipaleEtablissement"))
    division = F.substring(F.regexp_replace(naf, r"[^0-9]", ""), 1, 2)
    return sirene_etablissements.where(F.col("etablissementSiege")).select(
        company_number(F.col("siren")).alias(COMPANY),
        F.col("siret").alias("siret_siege"),
        naf.alias("code_naf"),
        division.alias("naf_division"),
        _mapping(DIVISION_SECTION)[division].alias("naf_section"),
        departement.alias("departement"),
        _mapping(DEPARTMENT_REGION)[departement].alias("region"),
    )


def legal_units(sirene_unites_legales: DataFrame) -> DataFrame:
    """Each company's legal category and creation date from Sirene.

    Args:
        sirene_unites_legales: Typed ``sirene_unites_legales`` table.

    Returns:
        ``company`` (:func:`company_number`), ``categorie_juridique, date_creation``.
    """
    return sirene_unites_legales.select(
        company_number(F.col("siren")).alias(COMPANY),
        F.trim("categorieJuridiqueUniteLegale").alias("categorie_juridique"),
        F.col("dateCreationUniteLegale").alias("date_creation"),
    )


def _head_office_periods(sirene_etablissements_historique: DataFrame, offices: DataFrame) -> DataFrame:
    """The history periods of head offices, with the siren (:func:`company_number`) of their siret.

    The company is computed on this table's rows, so the result keeps their partitioning by it;
    the head offices are few enough to be broadcast.
    """
    sirets = F.broadcast(offices.select(F.col("siret_siege").alias("siret")))
    return sirene_etablissements_historique.join(sirets, "siret", "left_semi").withColumn(
        COMPANY, siren_of(F.col("siret"))
    )


def head_office_history(sirene_etablissements_historique: DataFrame, offices: DataFrame) -> DataFrame:
    """The companies whose head office has a history (any period, dated or not).

    Args:
        sirene_etablissements_historique: Typed ``sirene_etablissements_historique`` table.
        offices: Output of :func:`head_offices`.

    Returns:
        ``company`` (:func:`company_number`), ``siege_historique`` (true), one row per company.
    """
    periods = _head_office_periods(sirene_etablissements_historique, offices)
    return periods.groupBy(COMPANY).agg(F.lit(True).alias("siege_historique"))


def _month_ceiling(date: Column) -> Column:
    """First month start on or after ``date``."""
    return F.when(F.dayofmonth(date) == 1, date).otherwise(F.add_months(F.trunc(date, "month"), 1))


def head_office_events(sirene_etablissements_historique: DataFrame, offices: DataFrame) -> DataFrame:
    """Changes of the head office's administrative state, at the periodes where they take effect.

    A period ``[dateDebut, dateFin)`` covers periode T when ``dateDebut <= T < dateFin``: it starts
    to hold at the first month start on or after ``dateDebut`` and stops at the first one on or
    after ``dateFin``. Where a period ends and the next starts within the same month, the latest
    event wins (a start over an end on the same day).

    Args:
        sirene_etablissements_historique: Typed ``sirene_etablissements_historique`` table.
        offices: Output of :func:`head_offices`.

    Returns:
        ``company, periode, siege_actif_etat`` (a state: ``true`` active, ``false`` closed or no
        period covering the periode).
    """
    periods = _head_office_periods(sirene_etablissements_historique, offices).where(F.col("dateDebut").isNotNull())
    starts = periods.select(
        COMPANY,
        _month_ceiling(F.col("dateDebut")).alias("periode"),
        F.struct(
            F.col("dateDebut").alias("event_date"), F.lit(1).alias("is_start"),
            (F.trim("etatAdministratifEtablissement") == "A").alias("active"),
        ).alias("event"),
    )
    ends = periods.where(F.col("dateFin").isNotNull()).select(
        COMPANY,
        _month_ceiling(F.col("dateFin")).alias("periode"),
        F.struct(F.col("dateFin").alias("event_date"), F.lit(0).alias("is_start"), F.lit(False).alias("active")).alias(
            "event"
        ),
    )
    latest = starts.unionByName(ends).groupBy(COMPANY, "periode").agg(F.max("event").alias("event"))
    return latest.select(COMPANY, "periode", F.col("event.active").alias("siege_actif_etat"))
