"""The modelling panel: one row per (siren, periode) in scope, with features and target.

Pure ``DataFrame -> DataFrame`` transforms. The panel is built on a dense monthly grid per
company (from its first headcount record to three months after its last), so that rolling
windows are calendar windows; time aggregations themselves use month-index range frames and stay
calendar-correct on any input, dense or not.
"""

from __future__ import annotations

import datetime as dt
import functools

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
# Month index of periode (see month_index): every window orders by this one column, so that the
# rows sorted once by (siren, month) serve all of them.
MONTH = "month"
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


def _month_order(frame: DataFrame) -> Column:
    """The month ordering of a siren window: the frame's ``month`` column, else computed."""
    return F.col(MONTH) if MONTH in frame.columns else month_index("periode")


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
        panel: ``siren, periode`` plus the variables to aggregate (and ``month``, the
            :func:`month_index` of ``periode``, if already computed).
        time_aggregation: ``{"lag"|"diff"|"mean": {variable: [months, ...]}}``.

    Returns:
        ``panel`` with the aggregated columns added.
    """
    ordered = Window.partitionBy("siren").orderBy(_month_order(panel))
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


def company_months(tables: dict[str, DataFrame], grid_start: dt.date, end_date: dt.date) -> DataFrame:
    """Every monthly source of a company on one row per (siren, periode), states carried forward.

    The grid (:func:`monthly_grid`) and each source's siren x periode frame are stacked and
    grouped once, after a single repartition by siren: every window that follows (carrying states
    forward, scope, time aggregations) runs on that partitioning without another shuffle. State
    events older than the grid stay in the stack so that the state they set is carried into it.

    Args:
        tables: Typed contract tables by name (optional ones may be missing).
        grid_start: First periode of the grid (start minus the look-back).
        end_date: Last periode.

    Returns:
        ``siren, periode, month`` (:func:`month_index` of ``periode``), ``in_grid``, the headcount
        scope columns (``effectif``, ``n_effectif_recents``, ``effectif_max_36m``), the flows
        (``cotisation``, ``ap_heures_consommees``, ``ap_heures_autorisees``) and the carried
        states (debts, paydex, financial ratios, ``siege_actif_etat``); absent optional sources
        give nulls. Partitioned by siren and sorted by (siren, month).
    """
    effectif = tables["urssaf_effectif"]
    recent = F.col("periode") >= F.lit(grid_start)
    flows = {
        "effectif_mois": sources.effectif_known(effectif).withColumnRenamed("effectif", "effectif_mois"),
        "cotisation": sources.cotisation_monthly(tables["urssaf_cotisation"]),
    }
    if "ap_consommation" in tables:
        flows["ap_heures_consommees"] = sources.ap_consommation_monthly(tables["ap_consommation"])
    if "ap_demande" in tables:
        flows["ap_heures_autorisees"] = sources.ap_autorisation_monthly(tables["ap_demande"])
    states: dict[str, tuple[DataFrame, list[str]]] = {}
    if "urssaf_debit" in tables:
        states["debt"] = (sources.debt_outstanding(tables["urssaf_debit"]), list(sources.DEBT_COLUMNS))
    if "altares_paydex" in tables:
        states["paydex"] = (sources.paydex_latest(tables["altares_paydex"]), list(sources.PAYDEX_COLUMNS))
    if "dgfip_bilans" in tables:
        states["bilan"] = (sources.financial_latest(tables["dgfip_bilans"]), list(sources.FINANCIAL_COLUMNS))
    if "sirene_etablissements_historique" in tables:
        profile = sources.company_profile(tables["sirene_etablissements"], tables["sirene_unites_legales"])
        events = sources.head_office_events(tables["sirene_etablissements_historique"], profile)
        states["siege"] = (events, ["siege_actif_etat"])

    stack = [monthly_grid(effectif, grid_start, end_date).withColumn("in_grid", F.lit(True))]
    stack += [frame.where(recent).select("siren", "periode", column) for column, frame in flows.items()]
    stack += [
        frame.select("siren", "periode", F.struct(*columns).alias(f"{name}_state"))
        for name, (frame, columns) in states.items()
    ]
    stacked = functools.reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), stack)
    values = [c for c in stacked.columns if c not in KEY]
    # One shuffle by siren and one sort by (siren, month): the grouping and every siren window
    # below (here and in build_panel) reuse them. Periodes are month starts: month <-> periode.
    months = (
        stacked.where(F.col("periode") <= F.lit(end_date))
        .withColumn(MONTH, month_index("periode"))
        .repartition("siren")
        .groupBy("siren", MONTH)
        .agg(F.max("periode").alias("periode"), *(F.max(c).alias(c) for c in values))
    )
    by_month = Window.partitionBy("siren").orderBy(MONTH)
    carried = by_month.rangeBetween(Window.unboundedPreceding, 0)
    columns = [
        "siren", "periode", MONTH, F.coalesce(F.col("in_grid"), F.lit(False)).alias("in_grid"),
        F.last("effectif_mois", ignorenulls=True).over(carried).alias("effectif"),
        F.count("effectif_mois").over(by_month.rangeBetween(-(SCOPE_RECENT_MONTHS - 1), 0)).alias("n_effectif_recents"),
        F.max("effectif_mois").over(by_month.rangeBetween(-(SCOPE_HEADCOUNT_MONTHS - 1), 0)).alias("effectif_max_36m"),
    ]
    for flow in ("cotisation", "ap_heures_consommees", "ap_heures_autorisees"):
        columns.append(F.col(flow) if flow in flows else F.lit(None).cast("double").alias(flow))
    for name, (_, state_columns) in states.items():
        state = F.last(f"{name}_state", ignorenulls=True).over(carried)
        columns += [state[c].alias(c) for c in state_columns]
    for column in [*sources.DEBT_COLUMNS, *sources.PAYDEX_COLUMNS, *sources.FINANCIAL_COLUMNS]:
        if not any(column in cols for _, cols in states.values()):
            # Absent optional table: its features are null, imputed later as configured.
            columns.append(F.lit(None).cast("double").alias(column))
    months = months.select(*columns)
    if "debt" in states:
        # With the debit table, no recorded debt means no debt.
        months = months.fillna(0.0, subset=list(sources.DEBT_COLUMNS))
    if "siege" not in states:
        months = months.withColumn("siege_actif_etat", F.lit(None).cast("boolean"))
    return months


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

    panel = company_months(tables, grid_start, end_date)
    profile = sources.company_profile(tables["sirene_etablissements"], tables["sirene_unites_legales"])
    has_history = None
    if "sirene_etablissements_historique" in tables:
        has_history = (
            tables["sirene_etablissements_historique"].select("siret").distinct()
            .join(profile.select("siren", F.col("siret_siege").alias("siret")), "siret")
            .select("siren", F.lit(True).alias("siege_historique")).distinct()
        )
    static = profile.join(sources.failure_dates(judgments), "siren", "left")
    if has_history is not None:
        static = static.join(has_history, "siren", "left")
    # Broadcast (one row per company): the panel keeps its (siren, month) partitioning and order.
    panel = panel.join(F.broadcast(static), "siren", "left")

    debt = F.col("dette_sociale_ouvriere") + F.col("dette_sociale_patronale")
    cotisation_mean12m = F.avg("cotisation").over(
        Window.partitionBy("siren").orderBy(MONTH).rangeBetween(-11, 0)
    )
    siege_actif = (
        F.col("siege_historique").isNull() | F.coalesce(F.col("siege_actif_etat"), F.lit(False))
        if has_history is not None else F.lit(True)
    )
    panel = (
        panel.withColumn("dette_par_effectif", sources.safe_ratio(debt, F.col("effectif")))
        .withColumn("dette_sur_cotisation_mean12m", sources.safe_ratio(debt, cotisation_mean12m))
        .withColumn("age_entreprise", F.months_between("periode", "date_creation") / 12.0)
        .withColumn("siege_actif", siege_actif)
    )
    panel = add_time_aggregations(panel, time_aggregation)
    panel = panel.where(
        F.col("in_grid") & (F.col("periode") >= F.lit(start_date)) & (F.col("periode") <= F.lit(end_date))
        & in_scope(panel)
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
