"""The modelling panel: one row per (siren, periode) in scope, with features and target.

Pure ``DataFrame -> DataFrame`` transforms. The panel is built on a dense monthly grid per
company (from its first headcount record to three months after its last), so that rolling
windows are calendar windows; time aggregations themselves use month-index range frames and stay
calendar-correct on any input, dense or not.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from sf_ml import sources
from sf_ml.config import AGGREGATIONS, aggregated_name
from sf_ml.contract import (
    EXCLUDED_LEGAL_CATEGORIES,
    EXCLUDED_NAF_DIVISIONS,
    TARGET_HORIZON_MONTHS,
)

SCOPE_RECENT_MONTHS = 3
SCOPE_HEADCOUNT_MONTHS = 36
SCOPE_MIN_HEADCOUNT = 10

KEY = ["siren", "periode"]
METADATA_COLUMNS = ["code_naf", "naf_section", "region", "categorie_juridique"]
TARGET = "failure_18m"
BASE_FEATURES = [
    "effectif",
    "cotisation",
    *sources.DEBT_COLUMNS,
    "ap_heures_consommees",
    "ap_heures_autorisees",
    *sources.PAYDEX_COLUMNS,
    *sources.FINANCIAL_COLUMNS,
    "dette_par_effectif",
    "dette_sur_cotisation_mean12m",
    "age_entreprise",
]


def first_of_month(value: str | dt.date) -> dt.date:
    """The first day of the month of an ISO date string or date."""
    return dt.date.fromisoformat(str(value)[:10]).replace(day=1)


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` (a first of month) shifted by ``months`` calendar months."""
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def month_index(periode: Column | str) -> Column:
    """Months since year 0: consecutive months differ by exactly 1."""
    periode = F.col(periode) if isinstance(periode, str) else periode
    return F.year(periode) * 12 + F.month(periode) - 1


def monthly_grid(urssaf_effectif: DataFrame, first_periode: str | dt.date, last_periode: str | dt.date) -> DataFrame:
    """Dense months per company between its first and last possible in-scope periode.

    A company can be in scope at T only with a headcount record in the 3 months before T, so its
    periodes run from the month after its first record to 3 months after its last, clipped to
    ``[first_periode, last_periode]``.

    Args:
        urssaf_effectif: Typed ``urssaf_effectif`` table.
        first_periode: First periode of the grid (include the look-back the aggregations need).
        last_periode: Last periode of the grid.

    Returns:
        ``siren, periode`` with one row per company and month.
    """
    bounds = urssaf_effectif.groupBy("siren").agg(
        F.add_months(F.min(F.trunc("periode", "month")), 1).alias("first"),
        F.add_months(F.max(F.trunc("periode", "month")), SCOPE_RECENT_MONTHS).alias("last"),
    )
    low = F.greatest(F.col("first"), F.trunc(F.lit(str(first_periode)).cast("date"), "month"))
    high = F.least(F.col("last"), F.trunc(F.lit(str(last_periode)).cast("date"), "month"))
    return (
        bounds.where(low <= high)
        .select("siren", F.explode(F.sequence(low, high, F.expr("interval 1 month"))).alias("periode"))
    )


def as_of_join(grid: DataFrame, states: DataFrame, columns: list[str]) -> DataFrame:
    """Attach to each grid row the latest state known at its periode (carried forward).

    States dated before a company's first grid month are folded into that month, so their
    latest value is still carried. Columns of one state move together: a newer state with a
    null field replaces an older non-null value.

    Args:
        grid: ``siren, periode, ...`` dense monthly grid.
        states: ``siren, periode`` (periode from which the state holds) plus ``columns``.
        columns: Value columns of ``states`` to attach.

    Returns:
        ``grid`` with ``columns`` added (null before the first state).
    """
    starts = grid.groupBy("siren").agg(F.min("periode").alias("grid_start"))
    folded = (
        states.join(starts, "siren")
        .select(
            "siren",
            F.greatest("periode", "grid_start").alias("periode_in_grid"),
            F.col("periode").alias("known_from"),
            F.struct(*columns).alias("state"),
        )
        .groupBy("siren", F.col("periode_in_grid").alias("periode"))
        .agg(F.max_by("state", "known_from").alias("state"))
    )
    carried = F.last("state", ignorenulls=True).over(
        Window.partitionBy("siren").orderBy("periode").rowsBetween(Window.unboundedPreceding, 0)
    )
    joined = grid.join(folded, KEY, "left").withColumn("state", carried)
    return joined.select(*grid.columns, *(F.col(f"state.{c}").alias(c) for c in columns))


def add_headcount_scope_columns(panel: DataFrame, urssaf_effectif: DataFrame) -> DataFrame:
    """Add ``effectif`` (latest month before T), ``n_effectif_recents`` and ``effectif_max_36m``.

    Args:
        panel: Dense ``siren, periode`` grid.
        urssaf_effectif: Typed ``urssaf_effectif`` table.

    Returns:
        ``panel`` with the three columns added.
    """
    known = sources.effectif_known(urssaf_effectif).withColumnRenamed("effectif", "effectif_mois")
    ordered = Window.partitionBy("siren").orderBy("month_index")
    joined = panel.join(known, KEY, "left").withColumn("month_index", month_index("periode"))
    return joined.select(
        *panel.columns,
        F.last("effectif_mois", ignorenulls=True)
        .over(ordered.rangeBetween(Window.unboundedPreceding, 0))
        .alias("effectif"),
        F.count("effectif_mois").over(ordered.rangeBetween(-(SCOPE_RECENT_MONTHS - 1), 0)).alias(
            "n_effectif_recents"
        ),
        F.max("effectif_mois")
        .over(ordered.rangeBetween(-(SCOPE_HEADCOUNT_MONTHS - 1), 0))
        .alias("effectif_max_36m"),
    )


def head_office_active(panel: DataFrame, historique: DataFrame | None, profile: DataFrame) -> DataFrame:
    """Add ``siege_actif``: whether the head office is active at the periode.

    Where ``sirene_etablissements_historique`` gives periods for the head office, it is active at
    T when the period covering T (``dateDebut <= T < dateFin``) has state ``A``; a head office with
    periods none of which covers T is not active. Without history it is taken as active.

    Args:
        panel: ``siren, periode, ...``.
        historique: Typed ``sirene_etablissements_historique`` table, or None when absent.
        profile: Output of :func:`sources.company_profile` (for the head-office siret).

    Returns:
        ``panel`` with the boolean column ``siege_actif``.
    """
    if historique is None:
        return panel.withColumn("siege_actif", F.lit(True))
    periods = historique.join(
        profile.select("siren", F.col("siret_siege").alias("siret")), "siret"
    ).select("siren", "dateDebut", "dateFin", "etatAdministratifEtablissement")
    has_history = periods.select("siren").distinct().withColumn("has_history", F.lit(True))
    covering = (
        panel.select(*KEY)
        .join(periods, "siren")
        .where(
            (F.col("dateDebut") <= F.col("periode"))
            & (F.col("dateFin").isNull() | (F.col("periode") < F.col("dateFin")))
        )
        .groupBy(*KEY)
        .agg(F.max(F.when(F.col("etatAdministratifEtablissement") == "A", 1).otherwise(0)).alias("active"))
    )
    return (
        panel.join(has_history, "siren", "left")
        .join(covering, KEY, "left")
        .withColumn("siege_actif", F.col("has_history").isNull() | (F.col("active") == 1))
        .drop("has_history", "active")
    )


def in_scope(panel: DataFrame) -> Column:
    """The contract's scope rule at T, as a boolean column over the panel's helper columns."""
    return (
        (F.col("n_effectif_recents") > 0)
        & (F.col("effectif_max_36m") >= SCOPE_MIN_HEADCOUNT)
        & F.col("siege_actif")
        & (F.coalesce(F.col("naf_division"), F.lit("")).isin(*EXCLUDED_NAF_DIVISIONS) == F.lit(False))
        & (
            F.coalesce(F.col("categorie_juridique"), F.lit("")).isin(*EXCLUDED_LEGAL_CATEGORIES)
            == F.lit(False)
        )
        & (F.col("date_defaillance").isNull() | (F.col("date_defaillance") >= F.col("periode")))
    )


def failure_target(periode: Column, failure_date: Column, labels_until: str | dt.date) -> Column:
    """``failure_18m``: 1 when T <= F < T + 18 months, 0 otherwise, null when not yet known.

    Args:
        periode: The periode T.
        failure_date: The company's failure date F (null if none).
        labels_until: Last date the judgments cover.

    Returns:
        An integer column.
    """
    horizon_end = F.add_months(periode, TARGET_HORIZON_MONTHS)
    known = horizon_end <= F.lit(str(labels_until)).cast("date")
    positive = failure_date.isNotNull() & (failure_date >= periode) & (failure_date < horizon_end)
    return F.when(~known, F.lit(None)).when(positive, F.lit(1)).otherwise(F.lit(0)).cast("int")


def add_time_aggregations(
    panel: DataFrame, time_aggregation: dict[str, dict[str, list[int]]]
) -> DataFrame:
    """Add calendar-correct lags, differences and rolling means per siren.

    ``lag`` k is the value of the month exactly k months earlier (null if that month is absent),
    ``diff`` k is the value minus its lag k, ``mean`` k the mean over the k months ending with the
    current one (absent months and nulls ignored). Columns are named as in sf_datalake
    (``dette_sociale_patronale_lag3m``, ``paydex_diff12m``, ``cotisation_mean12m``).

    Args:
        panel: ``siren, periode`` plus the variables to aggregate.
        time_aggregation: ``{"lag"|"diff"|"mean": {variable: [months, ...]}}``.

    Returns:
        ``panel`` with the aggregated columns added.
    """
    ordered = Window.partitionBy("siren").orderBy(month_index("periode"))
    new_columns = []
    for kind in AGGREGATIONS:
        for variable, month_list in sorted(time_aggregation.get(kind, {}).items()):
            for months in month_list:
                lagged = F.first(variable).over(ordered.rangeBetween(-months, -months))
                if kind == "lag":
                    value = lagged
                elif kind == "diff":
                    value = F.col(variable) - lagged
                else:
                    value = F.avg(variable).over(ordered.rangeBetween(-(months - 1), 0))
                new_columns.append(value.alias(aggregated_name(variable, kind, months)))
    return panel.select("*", *new_columns)


def lookback_months(time_aggregation: dict[str, dict[str, list[int]]]) -> int:
    """Months of history before the first periode that scope and aggregations need."""
    longest = max(
        (m for spec in time_aggregation.values() for months in spec.values() for m in months), default=0
    )
    # dette_sur_cotisation_mean12m averages 12 months; aggregations may apply to it too.
    return max(SCOPE_HEADCOUNT_MONTHS, longest + 12)


def build_panel(
    tables: dict[str, DataFrame],
    start: str | dt.date,
    end: str | dt.date,
    time_aggregation: dict[str, dict[str, list[int]]] | None = None,
    labels_until: str | dt.date | None = None,
    missing_indicators: bool = False,
) -> DataFrame:
    """Build the point-in-time panel of companies in scope between ``start`` and ``end``.

    Args:
        tables: Typed contract tables by name (optional ones may be missing).
        start: First periode (first of a month).
        end: Last periode.
        time_aggregation: Lags/diffs/means to add (see :func:`add_time_aggregations`).
        labels_until: Last date the judgments cover; default the latest ``date_jugement``.
        missing_indicators: Add ``<variable>_manquant`` columns for the base features.

    Returns:
        ``siren, periode``, metadata columns, base features, aggregated features (and indicators)
        and ``failure_18m``, for companies in scope only.
    """
    time_aggregation = time_aggregation or {}
    start_date = first_of_month(start)
    end_date = first_of_month(end)
    grid_start = add_months(start_date, -lookback_months(time_aggregation))
    unknown = sorted({v for spec in time_aggregation.values() for v in spec} - set(BASE_FEATURES))
    if unknown:
        raise ValueError(f"time_aggregation names unknown variable(s) {unknown}; known: {BASE_FEATURES}")

    judgments = tables["procedures_collectives"]
    if labels_until is None:
        labels_until = judgments.agg(F.max("date_jugement")).first()[0]
    labels_until = labels_until or end_date

    effectif = tables["urssaf_effectif"]
    panel = monthly_grid(effectif, grid_start, end_date)
    panel = add_headcount_scope_columns(panel, effectif)

    flows = [sources.cotisation_monthly(tables["urssaf_cotisation"])]
    if "ap_consommation" in tables:
        flows.append(sources.ap_consommation_monthly(tables["ap_consommation"]))
    if "ap_demande" in tables:
        flows.append(sources.ap_autorisation_monthly(tables["ap_demande"]))
    for flow in flows:
        panel = panel.join(flow, KEY, "left")

    if "urssaf_debit" in tables:
        panel = as_of_join(panel, sources.debt_outstanding(tables["urssaf_debit"]), list(sources.DEBT_COLUMNS))
    if "altares_paydex" in tables:
        panel = as_of_join(panel, sources.paydex_latest(tables["altares_paydex"]), list(sources.PAYDEX_COLUMNS))
    if "dgfip_bilans" in tables:
        panel = as_of_join(
            panel, sources.financial_latest(tables["dgfip_bilans"]), list(sources.FINANCIAL_COLUMNS)
        )
    derived = ("dette_par_effectif", "dette_sur_cotisation_mean12m", "age_entreprise")
    for column in BASE_FEATURES:
        if column not in panel.columns and column not in derived:
            # Absent optional table: its features are null, imputed later as configured.
            panel = panel.withColumn(column, F.lit(None).cast("double"))

    # Debts are known only where the table is; with it, no record means no debt.
    if "urssaf_debit" in tables:
        panel = panel.fillna(0.0, subset=list(sources.DEBT_COLUMNS))
    debt = F.col("dette_sociale_ouvriere") + F.col("dette_sociale_patronale")
    cotisation_mean12m = F.avg("cotisation").over(
        Window.partitionBy("siren").orderBy(month_index("periode")).rangeBetween(-11, 0)
    )
    profile = sources.company_profile(tables["sirene_etablissements"], tables["sirene_unites_legales"])
    panel = (
        panel.withColumn("dette_par_effectif", sources.safe_ratio(debt, F.col("effectif")))
        .withColumn("dette_sur_cotisation_mean12m", sources.safe_ratio(debt, cotisation_mean12m))
        .join(profile, "siren", "left")
        .withColumn("age_entreprise", F.months_between("periode", "date_creation") / 12.0)
        .join(sources.failure_dates(judgments), "siren", "left")
    )
    panel = add_time_aggregations(panel, time_aggregation)
    panel = head_office_active(panel, tables.get("sirene_etablissements_historique"), profile)
    panel = panel.where(
        (F.col("periode") >= F.lit(start_date)) & (F.col("periode") <= F.lit(end_date)) & in_scope(panel)
    )
    panel = panel.withColumn(TARGET, failure_target(F.col("periode"), F.col("date_defaillance"), labels_until))
    aggregated = [
        aggregated_name(variable, kind, months)
        for kind in AGGREGATIONS
        for variable, month_list in sorted(time_aggregation.get(kind, {}).items())
        for months in month_list
    ]
    indicators = [F.col(v).isNull().cast("int").alias(f"{v}_manquant") for v in BASE_FEATURES]
    return panel.select(
        *KEY,
        *METADATA_COLUMNS,
        *(F.col(c).cast("double").alias(c) for c in [*BASE_FEATURES, *aggregated]),
        *(indicators if missing_indicators else []),
        TARGET,
    )
