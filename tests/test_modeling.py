"""Modeling: feature columns, in-pipeline imputation and binning, resampling, siren split.

Also home of :func:`synthetic_panel`, a small features panel with a strong planted signal that the
training tests reuse (independent of the raw-world generator).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from sf_ml import modeling as M
from sf_ml.config import load_config
from sf_ml.panel import BASE_FEATURES, TARGET

FIRST_PERIODE = dt.date(2018, 1, 1)
FAST_OVERRIDES = {
    "standard": ["model.params.maxIter=10"],
    "tree_based": ["model.params.numTrees=20", "model.params.maxDepth=5"],
    "gbt": ["model.params.maxIter=10", "model.params.maxDepth=3"],
}


def _month(index: int) -> dt.date:
    total = FIRST_PERIODE.year * 12 + FIRST_PERIODE.month - 1 + index
    return dt.date(total // 12, total % 12 + 1, 1)


def synthetic_panel(
    n_sirens: int = 400,
    n_months: int = 36,
    unlabelled_months: int = 6,
    failing_share: float = 0.15,
    signal: float = 1.0,
    seed: int = 0,
    time_aggregation: dict | None = None,
) -> pd.DataFrame:
    """A features panel shaped like :func:`sf_ml.panel.build_panel`'s, with a planted signal.

    Failing companies drift (debts up, paydex and late payments up, margins and headcount down)
    over the 24 months before their failure; rows 18 months before a failure are positive, rows
    after it are gone. Financial ratios and paydex are partly null; the last ``unlabelled_months``
    periodes have an unknown (null) target.

    Args:
        n_sirens: Companies.
        n_months: Periodes, monthly from 2018-01-01.
        unlabelled_months: Trailing periodes with ``failure_18m`` null.
        failing_share: Share of companies that fail within ``n_months + 18`` months.
        signal: Strength of the drift of failing companies (0: none).
        seed: Random seed.
        time_aggregation: Aggregations to add (default: the standard config's).

    Returns:
        One row per (siren, periode) in scope, with every base feature, the aggregations,
        ``<variable>_manquant`` indicators and the nullable int target.
    """
    rng = np.random.default_rng(seed)
    if time_aggregation is None:
        time_aggregation = load_config("standard").features.time_aggregation
    frames = []
    for number in range(n_sirens):
        fails = rng.random() < failing_share
        failure = int(rng.integers(4, n_months + 18)) if fails else 10_000
        months = np.arange(min(n_months, failure))
        if len(months) == 0:
            continue
        distress = np.clip(1 - (failure - months) / 24, 0, 1) if fails else np.zeros(len(months))
        distress = signal * distress
        n = len(months)
        noise = lambda scale=1.0: rng.normal(0, scale, n)  # noqa: E731
        effectif = np.maximum(1.0, rng.lognormal(3.3, 0.5) * (1 - 0.2 * distress) + noise(1))
        cotisation = effectif * 320 * (1 + noise(0.05))
        debt_rate = rng.exponential(0.2) * np.abs(1 + noise(0.5)) + 0.5 * distress
        frame = pd.DataFrame({
            "siren": f"{100000000 + number:09d}",
            "periode": [_month(m) for m in months],
            "effectif": effectif,
            "cotisation": cotisation,
            "dette_sociale_ouvriere": cotisation * debt_rate * 0.4,
            "dette_sociale_patronale": cotisation * debt_rate * 0.6,
            "ap_heures_consommees": np.where(rng.random(n) < 0.05 + 0.1 * distress, 150.0, 0.0),
            "ap_heures_autorisees": np.where(rng.random(n) < 0.05 + 0.1 * distress, 300.0, 0.0),
            "paydex": rng.uniform(0, 30) + 25 * distress + noise(10),
            "fpi_30": np.clip(0.15 + 0.15 * distress + noise(0.1), 0, 1),
            "fpi_90": np.clip(0.03 + 0.08 * distress + noise(0.05), 0, 1),
            "age_entreprise": rng.uniform(2, 40) + months / 12,
        })
        for ratio in sorted(set(BASE_FEATURES) - set(frame.columns)):
            frame[ratio] = noise(1.0)
        frame["ebe_sur_ca"] = rng.normal(0.08, 0.05) - 0.06 * distress + noise(0.04)
        frame["solidite_financiere"] = rng.normal(0.35, 0.1) - 0.1 * distress + noise(0.05)
        debt = frame["dette_sociale_ouvriere"] + frame["dette_sociale_patronale"]
        frame["dette_par_effectif"] = debt / frame["effectif"]
        frame["dette_sur_cotisation_mean12m"] = debt / frame["cotisation"].rolling(12, min_periods=1).mean()
        label = ((months >= failure - 18) & (months < failure)).astype(float)
        frame[TARGET] = np.where(months >= n_months - unlabelled_months, np.nan, label)
        frames.append(frame)
    panel = pd.concat(frames, ignore_index=True)
    financial = [c for c in BASE_FEATURES if c not in (
        "effectif", "cotisation", "dette_sociale_ouvriere", "dette_sociale_patronale",
        "ap_heures_consommees", "ap_heures_autorisees", "paydex", "fpi_30", "fpi_90",
        "dette_par_effectif", "dette_sur_cotisation_mean12m", "age_entreprise")]
    no_balance_sheet = rng.random(len(panel)) < 0.25
    panel.loc[no_balance_sheet, financial] = np.nan
    for column in ("paydex", "fpi_30", "fpi_90"):
        panel.loc[rng.random(len(panel)) < 0.3, column] = np.nan
    by_siren = panel.groupby("siren", sort=False)
    added = {}
    for kind, spec in time_aggregation.items():
        for variable, month_list in sorted(spec.items()):
            for k in month_list:
                lagged = by_siren[variable].shift(k)
                name = f"{variable}_{kind}{k}m"
                if kind == "lag":
                    added[name] = lagged
                elif kind == "diff":
                    added[name] = panel[variable] - lagged
                else:
                    added[name] = by_siren[variable].transform(lambda s: s.rolling(k, min_periods=1).mean())
    for variable in BASE_FEATURES:
        added[f"{variable}_manquant"] = panel[variable].isna().astype("int32")
    added.update(code_naf="62.01Z", naf_section="J", region="Bretagne", categorie_juridique="5710")
    panel = pd.concat([panel, pd.DataFrame(added, index=panel.index)], axis=1)
    panel[TARGET] = panel[TARGET].astype("Int32")
    return panel


def write_features(panel: pd.DataFrame, path) -> str:
    """Write the panel as a features directory (parquet partitioned by periode), without Spark."""
    panel.to_parquet(str(path), partition_cols=["periode"], index=False)
    return str(path)


def read_features(spark, path):
    """A features directory as Spark reads it (``periode`` a date partition column)."""
    return spark.read.parquet(str(path))


@pytest.fixture(scope="module")
def panel_df(spark, tmp_path_factory):
    panel = synthetic_panel(n_sirens=150, n_months=24, failing_share=0.25, seed=1)
    return read_features(spark, write_features(panel, tmp_path_factory.mktemp("modeling") / "features")).cache()


def test_synthetic_panel_has_the_features_schema(panel_df):
    types = dict(panel_df.dtypes)
    assert types["siren"] == "string" and types["periode"] == "date" and types[TARGET] == "int"
    assert types["dette_sociale_patronale_lag3m"] == "double" and types["paydex_manquant"] == "int"
    counts = panel_df.groupBy(panel_df[TARGET].isNull().alias("unknown")).count().collect()
    assert {r.unknown for r in counts} == {True, False}


def test_feature_columns_and_fill_values_cover_aggregations():
    config = load_config("standard", ["fill_default_values.dette_sociale_patronale=5.0",
                                      "features.missing_indicators=true"])
    columns = M.feature_columns(config)
    assert columns[: len(config.features.variables)] == config.features.variables
    assert "dette_sociale_patronale_lag3m" in columns and "paydex_manquant" in columns
    assert len(columns) == len(set(columns))
    fill = M.fill_values(config, columns)
    assert fill["dette_sociale_patronale"] == fill["dette_sociale_patronale_lag3m"] == 5.0
    assert fill["paydex_diff12m"] == 0.0 and fill["paydex_manquant"] == 0.0


def test_split_by_siren_is_disjoint_and_deterministic(panel_df):
    train, test = M.split_by_siren(panel_df, 0.2, seed=7)
    sirens = lambda df: {r.siren for r in df.select("siren").distinct().collect()}  # noqa: E731
    train_sirens, test_sirens = sirens(train), sirens(test)
    assert not train_sirens & test_sirens
    assert train_sirens | test_sirens == sirens(panel_df)
    assert 0.1 < len(test_sirens) / len(train_sirens | test_sirens) < 0.3
    assert sirens(M.split_by_siren(panel_df, 0.2, seed=7)[1]) == test_sirens
    assert sirens(M.split_by_siren(panel_df, 0.2, seed=8)[1]) != test_sirens


@pytest.mark.parametrize("strategy", ["oversample", "undersample"])
def test_resample_reaches_minority_ratio(panel_df, strategy):
    labelled = panel_df.where(f"{TARGET} IS NOT NULL")
    rows, positives = M.class_counts(labelled)
    assert positives / rows < 0.3
    out = M.resample(labelled, strategy, 0.35, seed=3)
    out_rows, out_positives = M.class_counts(out)
    assert out_positives / out_rows == pytest.approx(0.35, abs=0.03)
    kept = out_rows - out_positives if strategy == "oversample" else out_positives
    assert kept == (rows - positives if strategy == "oversample" else positives)
    assert M.resample(labelled, "none", 0.35, seed=3) is labelled


def test_pipeline_imputes_nulls_and_bins_paydex(spark, panel_df):
    config = load_config("standard", FAST_OVERRIDES["standard"])
    columns = M.feature_columns(config)
    labelled = panel_df.where(f"{TARGET} IS NOT NULL")
    model = M.build_pipeline(config, columns).fit(labelled)

    slots = M.feature_slot_names(model)
    assert "paydex" not in slots and "paydex_diff12m" in slots and "paydex_bin3" in slots
    assert len(slots) == model.stages[-1].numFeatures

    empty = spark.createDataFrame([(None,) * len(columns)], ", ".join(f"`{c}` double" for c in columns))
    probe = empty.unionByName(
        spark.createDataFrame([{c: 1.0 for c in columns} | {"paydex": 45.0}]).select(*columns)
    )
    out = model.transform(probe).collect()
    assert len(out) == 2 and all(0 <= row.probability[1] <= 1 for row in out)
    assert out[0]["dette_sociale_patronale_lag3m__imputed"] == 0.0
    assert out[0]["paydex__bin"] == 1.0  # imputed 0.0 falls in [0, 15)
    assert out[1]["paydex__bin"] == 3.0  # 45 falls in [30, 60): slot paydex_bin3


@pytest.mark.parametrize("name", ["tree_based", "gbt"])
def test_tree_pipelines_fit_and_score_nulls(spark, panel_df, name):
    config = load_config(name, [*FAST_OVERRIDES[name], "model.params.numTrees=5"] if name == "tree_based"
                         else FAST_OVERRIDES[name])
    columns = M.feature_columns(config)
    model = M.build_pipeline(config, columns).fit(panel_df.where(f"{TARGET} IS NOT NULL"))
    assert M.feature_slot_names(model) == columns
    nulls = spark.createDataFrame([(None,) * len(columns)], ", ".join(f"`{c}` double" for c in columns))
    assert 0 <= model.transform(nulls).first().probability[1] <= 1


def test_estimator_rejects_unknown_params():
    from sf_ml.config import ConfigError

    with pytest.raises(ConfigError, match="numTreez"):
        M.estimator("random_forest", {"numTreez": 3})
    assert M.estimator("gbt", {"maxDepth": 4.0}, seed=1).getMaxDepth() == 4
