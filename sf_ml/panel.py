"""The modelling panel: one row per (siren, periode) in scope, with features and target.

Pure ``DataFrame -> DataFrame`` transforms. The panel is built on a dense monthly grid per
company (from its first headcount record to three months after its last), which the window
kernel inserts among the months that hold records (:func:`company_grid`). Every per-company
window (carried states, scope counts, time aggregations) is a calendar window over the month
index, evaluated by the vectorised kernel of :mod:`sf_ml.windows` on rows partitioned by
company (:data:`sf_ml.contract.COMPANY`, the siren as a 64-bit key): calendar-correct on any
input, dense or not.
"""

from __future__ import annotations

import datetime as dt
import functools

from pyspark import cloudpickle
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sf_ml import sources, sqltext, windows
from sf_ml.config import AGGREGATIONS, aggregated_name
from sf_ml.windows import MonthlyGrid, WindowOp, helper
from sf_ml.contract import COMPANY, SCOPE, TARGET_HORIZON_MONTHS

# The headcount part of the scope (contract.SCOPE) as window outputs and their minimum values:
# the kernel drops the rows below them, and in_scope states the whole rule.
RECENT_HEADCOUNTS = "n_effectif_recents"
MAX_HEADCOUNT = f"effectif_max_{SCOPE.headcount_lookback_months}m"
HEADCOUNT_SCOPE = {RECENT_HEADCOUNTS: 1, MAX_HEADCOUNT: SCOPE.min_headcount}

KEY = ["siren", "periode"]
# Month index of periode (see month_index): every window orders by this one column.
MONTH = "month"
# Helper columns of the window kernel (read by its operations, never in the panel).
EFFECTIF_MONTH = helper("effectif_mois")  # headcount of the months it is known
EFFECTIF_RECORD = helper("effectif_record")  # true at those months: marks the grid
DATE_CREATION = helper("date_creation")
COTISATION_MEAN12M = helper("cotisation_mean12m")
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
    index = _month_number(day) + months
    return dt.date(index // 12, index % 12 + 1, 1)


def month_index(periode: Column | str) -> Column:
    """Months since year 0: consecutive months differ by exactly 1."""
    periode = F.col(periode) if isinstance(periode, str) else periode
    return F.year(periode) * 12 + F.month(periode) - 1


def company_grid(
    grid_start: dt.date, start: dt.date, end: dt.date, per_company: tuple[str, ...] = ()
) -> MonthlyGrid:
    """The dense months per company on which the panel is built.

    A company can be in scope at T only with a headcount record in the 3 months before T, so its
    periodes run from the month after its first record to 3 months after its last (from the
    first periode its headcount is known to 2 months after the last), clipped to
    ``[grid_start, end]``; the rows from ``start`` on are returned.

    Args:
        grid_start: First periode of the grid (``start`` less the look-back windows need).
        start: First periode returned.
        end: Last periode.
        per_company: Columns with one value per company (copied to the months inserted).

    Returns:
        The grid, marked by ``EFFECTIF_RECORD`` (rows at the periodes headcounts are known).
    """
    return MonthlyGrid(
        marker=EFFECTIF_RECORD, first_offset=0, last_offset=SCOPE.recent_months - 1,
        low=_month_number(grid_start), high=_month_number(end), keep_from=_month_number(start),
        per_company=per_company,
    )


def _month_number(day: dt.date) -> int:
    """:func:`month_index` of a date, in Python."""
    return day.year * 12 + day.month - 1


def in_scope(panel: DataFrame) -> Column:
    """The contract's scope rule (:data:`sf_ml.contract.SCOPE`) at T, over the panel's helper columns."""
    rule = (
        F.col("siege_actif")
        & ~F.coalesce(F.col("naf_division"), F.lit("")).isin(*SCOPE.excluded_naf_divisions)
        & ~F.coalesce(F.col("categorie_juridique"), F.lit("")).isin(*SCOPE.excluded_legal_categories)
        & (F.col("date_defaillance").isNull() | (F.col("date_defaillance") >= F.col("periode")))
    )
    for column, least in HEADCOUNT_SCOPE.items():
        rule = rule & (F.col(column) >= F.lit(least))
    return rule


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


def aggregation_ops(time_aggregation: dict[str, dict[str, list[int]]]) -> list[WindowOp]:
    """The window operations of the config's time aggregations, in output column order.

    ``lag`` k is the value of the month exactly k months earlier (null if that month has no
    row), ``diff`` k is the value minus its lag k, ``mean`` k the mean over the k months ending
    with the current one (absent months and nulls ignored). Columns are named as in sf_datalake
    (``dette_sociale_patronale_lag3m``, ``paydex_diff12m``, ``cotisation_mean12m``).

    Args:
        time_aggregation: ``{"lag"|"diff"|"mean": {variable: [months, ...]}}``.

    Returns:
        One :class:`~sf_ml.windows.WindowOp` per aggregated column.
    """
    return [
        WindowOp(aggregated_name(variable, kind, months), kind, variable, months)
        for kind in AGGREGATIONS
        for variable, month_list in sorted(time_aggregation.get(kind, {}).items())
        for months in month_list
    ]


def apply_windows(
    frame: DataFrame,
    ops: list[WindowOp],
    keep: str | None = None,
    grid: MonthlyGrid | None = None,
    require: dict[str, float] | None = None,
) -> DataFrame:
    """Evaluate window operations per company with :mod:`sf_ml.windows` (NumPy, in ``mapInArrow``).

    ``frame`` must hold all rows of a company in one partition, sorted by (company, month), one
    row per company and month; the function does not shuffle, so a frame already partitioned by it
    keeps its partitioning. Helper columns (:func:`sf_ml.windows.is_helper`) are inputs only: they are left
    out of the result, as are the rows where ``keep`` is false.

    Args:
        frame: ``company``, ``month`` (:func:`month_index`) and the operations' inputs.
        ops: Operations, in order.
        keep: Boolean column selecting the rows returned (None: all).
        grid: Dense months to insert per company; only they are returned, with ``periode``
            (see :class:`~sf_ml.windows.MonthlyGrid`).
        require: Minimum values of op outputs for a row to be returned.

    Returns:
        ``frame``'s columns (less the helper ones) and the operations' outputs.
    """
    # Ship the kernel's code with the task: executors need numpy and pyarrow, not this package.
    cloudpickle.register_pickle_by_value(windows)
    drop = [c for c in frame.columns if windows.is_helper(c)]
    schema = T.StructType(windows.output_fields(frame.schema.fields, ops, drop, grid=grid is not None))
    body = functools.partial(
        windows.arrow_partition_windows, ops=ops, keep=keep, drop=drop, grid=grid, require=require
    )
    return frame.mapInArrow(body, schema)


def add_time_aggregations(
    panel: DataFrame, time_aggregation: dict[str, dict[str, list[int]]]
) -> DataFrame:
    """Add calendar-correct lags, differences and rolling means per siren.

    See :func:`aggregation_ops` for the definitions. This standalone form shuffles ``panel`` by
    siren; :func:`build_panel` evaluates the same operations on rows already partitioned.

    Args:
        panel: ``siren, periode`` (one row per siren and month) plus the variables to aggregate.
        time_aggregation: ``{"lag"|"diff"|"mean": {variable: [months, ...]}}``.

    Returns:
        ``panel`` with the aggregated columns added.
    """
    has_month = MONTH in panel.columns
    frame = panel if has_month else panel.withColumn(MONTH, month_index("periode"))
    frame = frame.withColumnRenamed("siren", COMPANY)  # the kernel's key
    frame = frame.repartition(COMPANY).sortWithinPartitions(COMPANY, MONTH)
    out = apply_windows(frame, aggregation_ops(time_aggregation)).withColumnRenamed(COMPANY, "siren")
    return out if has_month else out.drop(MONTH)


def lookback_months(time_aggregation: dict[str, dict[str, list[int]]]) -> int:
    """Months of history before the first periode that scope and aggregations need."""
    longest = max(
        (m for spec in time_aggregation.values() for months in spec.values() for m in months), default=0
    )
    # dette_sur_cotisation_mean12m averages 12 months; aggregations may apply to it too.
    return max(SCOPE.headcount_lookback_months, longest + 12)


# The tables whose rows feed the stack of company_months, shuffled once each by company.
COMPANY_PARTITIONED_TABLES = (
    "urssaf_effectif", "urssaf_cotisation", "urssaf_debit", "ap_consommation", "ap_demande",
    "altares_paydex", "dgfip_bilans", "sirene_etablissements_historique",
)


def partitioned_by_company(tables: dict[str, DataFrame], names: tuple[str, ...]) -> dict[str, DataFrame]:
    """``tables`` with the named ones hash-partitioned by company (from ``siren``, else ``siret``).

    All of them get the same number of partitions (``spark.sql.shuffle.partitions``), so that
    every per-company computation downstream (groupings and windows keyed by company, the union of
    the sources) runs where the rows already are: one shuffle per raw table, none after.

    Args:
        tables: Typed contract tables by name.
        names: The tables to partition (absent ones are skipped).

    Returns:
        A new dict: the named tables repartitioned, the others unchanged.
    """
    partitioned = dict(tables)
    for name in names:
        if name not in tables:
            continue
        frame = tables[name]
        partitions = int(frame.sparkSession.conf.get("spark.sql.shuffle.partitions"))
        company = (
            sources.company_number(F.col("siren")) if "siren" in frame.columns else sources.siren_of(F.col("siret"))
        )
        partitioned[name] = frame.repartition(partitions, company)
    return partitioned


# Carried states: their name in the stack and the features they carry.
STATE_COLUMNS = {
    "debt": sources.DEBT_COLUMNS,
    "paydex": sources.PAYDEX_COLUMNS,
    "bilan": sources.FINANCIAL_COLUMNS,
    "siege": ("siege_actif_etat",),
}


def _state_known(state: str) -> str:
    """Helper column: true at the months where ``state`` has a record."""
    return helper(f"{state}_known")


def _state_value(state: str, column: str) -> str:
    """Helper column: ``column`` of ``state``'s record, at the months it has one."""
    return helper(f"{state}__{column}")


FLOW_COLUMNS = ("cotisation", "ap_heures_consommees", "ap_heures_autorisees")


def company_months(
    tables: dict[str, DataFrame], grid_start: dt.date, end_date: dt.date
) -> tuple[DataFrame, list[WindowOp]]:
    """Every monthly source of a company on one row per (company, month), and how to carry them.

    Each source's company x periode frame is stacked and grouped once, after a single repartition
    by company of each raw table: the windows that follow (:func:`apply_windows`) run on that
    partitioning without another shuffle. State events older than the grid stay in the stack so
    that the state they set is carried into it. Months without any record are not here: the
    window kernel inserts the company's grid (:func:`company_grid`).

    Args:
        tables: Typed contract tables by name (optional ones may be missing).
        grid_start: First periode of the grid (start minus the look-back).
        end_date: Last periode.

    Returns:
        The grouped rows: ``company, month`` (:func:`month_index` of the periode), the flows
        (``cotisation``, ``ap_heures_consommees``, ``ap_heures_autorisees``), the features of
        absent optional tables as nulls, and helper inputs ``EFFECTIF_MONTH``, ``EFFECTIF_RECORD``
        and per state ``_state_known`` / ``_state_value`` columns; partitioned by company, one
        row per company and month, up to the month after ``end_date`` (there, headcount records
        known later only extend the grid). And the operations that turn them into the headcount
        scope columns (``effectif``, ``n_effectif_recents``, ``effectif_max_36m``) and the
        carried states (debts, paydex, financial ratios, ``siege_actif_etat``).
    """
    tables = partitioned_by_company(tables, COMPANY_PARTITIONED_TABLES)
    recent = F.col("periode") >= F.lit(grid_start)
    flows = {"cotisation": sources.cotisation_monthly(tables["urssaf_cotisation"])}
    if "ap_consommation" in tables:
        flows["ap_heures_consommees"] = sources.ap_consommation_monthly(tables["ap_consommation"])
    if "ap_demande" in tables:
        flows["ap_heures_autorisees"] = sources.ap_autorisation_monthly(tables["ap_demande"])
    states: dict[str, DataFrame] = {}
    if "urssaf_debit" in tables:
        states["debt"] = sources.debt_outstanding(tables["urssaf_debit"])
    if "altares_paydex" in tables:
        states["paydex"] = sources.paydex_latest(tables["altares_paydex"])
    if "dgfip_bilans" in tables:
        states["bilan"] = sources.financial_latest(tables["dgfip_bilans"])
    if "sirene_etablissements_historique" in tables:
        offices = sources.head_offices(tables["sirene_etablissements"])
        events = sources.head_office_events(tables["sirene_etablissements_historique"], offices)
        # Carried as 1.0 (active) / 0.0 (closed): the window kernel works on numbers.
        states["siege"] = events.withColumn("siege_actif_etat", F.col("siege_actif_etat").cast("double"))

    after_end = add_months(end_date, 1)
    effectif_mois = sources.effectif_known(tables["urssaf_effectif"]).selectExpr(
        COMPANY,
        # Records known after end only extend the grid to end (an undated one stays undated).
        f"CASE WHEN periode > DATE'{after_end}' THEN DATE'{after_end}' ELSE periode END AS periode",
        f"effectif AS {EFFECTIF_MONTH}",
        f"true AS {EFFECTIF_RECORD}",
    )
    stack = [
        effectif_mois,
        *(frame.where(recent).select(COMPANY, "periode", column) for column, frame in flows.items()),
        *(
            frame.selectExpr(
                COMPANY, "periode", f"true AS {_state_known(name)}",
                *(f"{sqltext.name(c)} AS {sqltext.name(_state_value(name, c))}" for c in STATE_COLUMNS[name]),
            )
            for name, frame in states.items()
        ),
    ]
    stacked = functools.reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), stack)
    values = [c for c in stacked.columns if c not in (COMPANY, "periode")]
    # Every frame of the stack is still partitioned by company (the union keeps it): grouping by
    # (company, month) and the windows need no other shuffle. Each source has at most one row per
    # (company, month), so max() only merges the sources' rows. Periodes are month starts.
    months = (
        # A row without siren belongs to no company; one without periode (an undated record)
        # is never known (the comparison is null).
        stacked.where(F.col(COMPANY).isNotNull() & (F.col("periode") <= F.lit(after_end)))
        .groupBy(COMPANY, month_index("periode").alias(MONTH))
        .agg(*(F.expr(f"max({sqltext.name(c)}) AS {sqltext.name(c)}") for c in values))
    )
    absent_flows = [c for c in FLOW_COLUMNS if c not in flows]
    months = months.selectExpr("*", *(f"CAST(NULL AS DOUBLE) AS {sqltext.name(c)}" for c in absent_flows))
    ops = [
        WindowOp("effectif", "carry", EFFECTIF_MONTH),
        WindowOp(RECENT_HEADCOUNTS, "count", EFFECTIF_MONTH, SCOPE.recent_months),
        WindowOp(MAX_HEADCOUNT, "max", EFFECTIF_MONTH, SCOPE.headcount_lookback_months),
    ]
    for name, columns in STATE_COLUMNS.items():
        if name not in states:
            # Absent optional table: its features are null, imputed later as configured.
            months = months.selectExpr("*", *(f"CAST(NULL AS DOUBLE) AS {sqltext.name(c)}" for c in columns))
            continue
        # With the debit table, no recorded debt means no debt.
        default = 0.0 if name == "debt" else None
        ops += [WindowOp(c, "carry", _state_value(name, c), known=_state_known(name), default=default)
                for c in columns]
    return months, ops


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

    panel, ops = company_months(tables, grid_start, end_date)
    # Per-company tables, each small enough to be broadcast: joined to the panel without a shuffle.
    offices = sources.head_offices(tables["sirene_etablissements"])
    legal = sources.legal_units(tables["sirene_unites_legales"])
    static = [offices.drop("siret_siege"), legal.drop("date_creation"), sources.failure_dates(judgments)]
    history = "sirene_etablissements_historique" in tables
    if history:
        static.append(sources.head_office_history(tables["sirene_etablissements_historique"], offices))
    debts = tuple(sources.DEBT_COLUMNS)
    aggregations = aggregation_ops(time_aggregation)
    ops += [
        WindowOp("age_entreprise", "years_since", DATE_CREATION),
        WindowOp(COTISATION_MEAN12M, "mean", "cotisation", 12),
        WindowOp("dette_par_effectif", "ratio", sources=debts, denominator="effectif"),
        WindowOp("dette_sur_cotisation_mean12m", "ratio", sources=debts, denominator=COTISATION_MEAN12M),
        *aggregations,
    ]
    creation = legal.select(COMPANY, F.col("date_creation").alias(DATE_CREATION))
    panel = panel.join(F.broadcast(creation), COMPANY, "left").sortWithinPartitions(COMPANY, MONTH)
    # The headcount part of the scope rule is applied in the kernel: fewer rows come back.
    panel = apply_windows(
        panel, ops, grid=company_grid(grid_start, start_date, end_date, per_company=(DATE_CREATION,)),
        require=HEADCOUNT_SCOPE,
    )
    for frame in static:
        panel = panel.join(F.broadcast(frame), COMPANY, "left")
    siege_actif = (
        F.col("siege_historique").isNull() | F.coalesce(F.col("siege_actif_etat") == 1.0, F.lit(False))
        if history else F.lit(True)
    )
    panel = panel.withColumn("siege_actif", siege_actif)
    panel = panel.where(in_scope(panel))
    panel = panel.withColumn(TARGET, failure_target(F.col("periode"), F.col("date_defaillance"), labels_until))
    aggregated = [op.output for op in aggregations]
    indicators = [
        f"CAST({sqltext.name(v)} IS NULL AS INT) AS {sqltext.name(v + '_manquant')}" for v in BASE_FEATURES
    ]
    panel = panel.withColumn("siren", sources.siren_text(F.col(COMPANY)))
    return panel.selectExpr(
        *KEY,
        *METADATA_COLUMNS,
        *(f"CAST({sqltext.name(c)} AS DOUBLE) AS {sqltext.name(c)}" for c in [*BASE_FEATURES, *aggregated]),
        *(indicators if missing_indicators else []),
        TARGET,
    )
