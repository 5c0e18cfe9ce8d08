"""A small synthetic features panel with a strong planted signal, for modeling tests.

Independent of the raw-world generator: training, tuning and backtest tests reuse it.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

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
