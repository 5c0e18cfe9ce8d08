"""The synthetic world generator: contract conformity, determinism and realistic dynamics."""

from __future__ import annotations

import filecmp

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from sf_ml import generate
from sf_ml.contract import (
    BOOL,
    DATE,
    FAILURE_NATURES,
    FLOAT,
    ID_WIDTH,
    INT,
    SCOPE,
    TABLES,
)
from sf_ml.generate import generate_world

START, END = "2014-01-01", "2025-12-31"
CRISIS = ("2020-03-01", "2021-06-30")


def read(raw_dir, name: str) -> pd.DataFrame:
    """A raw CSV table as strings, empty fields as NaN."""
    return pd.read_csv(raw_dir / f"{name}.csv", dtype=str, keep_default_na=False, na_values=[""])


def padded(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The table with its identifiers left-padded, as the contract asks before any join."""
    frame = frame.copy()
    for col in TABLES[name].columns:
        if col.kind in ID_WIDTH:
            frame[col.name] = frame[col.name].str.zfill(ID_WIDTH[col.kind])
    return frame


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "small"
    counts = generate_world(path, n_companies=500, start=START, end=END, seed=11)
    return path, counts


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A 2,000-company world with every table loaded and identifiers padded."""
    path = tmp_path_factory.mktemp("gen") / "world"
    generate_world(path, n_companies=2000, start=START, end=END, seed=3)
    return path, {name: padded(read(path, name), name) for name in TABLES}


# -- contract conformity ------------------------------------------------------------------------


def test_every_table_written_with_exact_columns(small_world):
    path, counts = small_world
    assert sorted(p.name for p in path.iterdir()) == sorted(f"{name}.csv" for name in TABLES)
    for name, table in TABLES.items():
        frame = read(path, name)
        assert list(frame.columns) == table.column_names, name
        assert len(frame) == counts[name] > 0, name


def test_values_parse_as_contract_types(small_world):
    path, _ = small_world
    for name, table in TABLES.items():
        frame = read(path, name)
        for col in table.columns:
            values = frame[col.name].dropna()
            where = f"{name}.{col.name}"
            if col.kind in ID_WIDTH:
                assert frame[col.name].notna().all(), where
                assert values.str.fullmatch(r"\d+").all(), where
                assert (values.str.len() <= ID_WIDTH[col.kind]).all(), where
            elif col.kind == DATE:
                assert values.str.fullmatch(r"\d{4}-\d{2}-\d{2}").all(), where
                parsed = pd.to_datetime(values, format="%Y-%m-%d", errors="raise")
                if col.name not in ("periode_fin", "date_fin", "dateFin"):
                    assert (parsed <= pd.Timestamp(END)).all(), where
            elif col.kind == BOOL:
                assert values.isin(["true", "false"]).all(), where
            elif col.kind in (INT, FLOAT):
                numbers = pd.to_numeric(values, errors="raise")
                if col.kind == INT:
                    assert values.str.fullmatch(r"-?\d+").all(), where
                if col.non_negative:
                    assert (numbers >= 0).all(), where
                if col.bounds:
                    assert numbers.between(*col.bounds).all(), where
        for key in table.key:
            assert frame[key].notna().all(), f"{name}.{key}"


def test_unique_keys_and_head_offices(small_world):
    path, _ = small_world
    for name, table in TABLES.items():
        if table.key:
            frame = padded(read(path, name), name)
            assert not frame.duplicated(list(table.key)).any(), name
    etab = padded(read(path, "sirene_etablissements"), "sirene_etablissements")
    ul = padded(read(path, "sirene_unites_legales"), "sirene_unites_legales")
    heads = etab[etab["etablissementSiege"] == "true"].groupby("siren").size()
    assert set(heads.index) == set(ul["siren"]) == set(etab["siren"])
    assert (heads == 1).all()
    assert (etab["siret"].str[:9] == etab["siren"]).all()
    assert etab.groupby("siren").size().max() > 1


def test_export_quirks(small_world):
    path, _ = small_world
    ul = read(path, "sirene_unites_legales")
    assert (ul["siren"].str[0] == "0").any()
    judgments = read(path, "procedures_collectives")
    assert (judgments["siren"].str.len() < 9).any(), "some ids lost their leading zeros"
    effectif = read(path, "urssaf_effectif")
    assert (effectif["siren"].str.len() == 9).any() and (effectif["siren"].str.len() < 9).any()
    assert judgments.duplicated().any(), "a repeated identical judgment"

    cot = padded(read(path, "urssaf_cotisation"), "urssaf_cotisation")
    debut, fin = pd.to_datetime(cot["periode_debut"]), pd.to_datetime(cot["periode_fin"])
    months = (fin.dt.year - debut.dt.year) * 12 + fin.dt.month - debut.dt.month
    assert set(months) == {1, 3} and (fin.dt.day == 1).all()
    assert (cot.groupby("siret")["numero_compte"].nunique() > 1).any(), "renumbered accounts"
    assert (cot["encaisse"].astype(float) <= cot["du"].astype(float) + 0.01).all()

    etab = read(path, "sirene_etablissements")
    communes = etab["codeCommuneEtablissement"]
    assert communes.str.fullmatch(r"\d{5}|2[AB]\d{3}").all()
    assert etab["activitePrincipaleEtablissement"].str.fullmatch(r"\d{2}\.\d{2}[A-Z]").all()

    categories = ul["categorieJuridiqueUniteLegale"]
    assert categories.isin(SCOPE.excluded_legal_categories).any()
    assert categories.isin(["5710", "5499"]).any()
    assert etab["activitePrincipaleEtablissement"].str[:2].isin(["84", "85"]).any()


def test_debt_versions_and_judgment_sequences(world):
    _, t = world
    debit = t["urssaf_debit"]
    key = ["numero_compte", "numero_ecart_negatif", "periode_debut"]
    debit = debit.assign(hist=debit["numero_historique"].astype(int),
                         date=pd.to_datetime(debit["date_traitement"]))
    ordered = debit.sort_values(key + ["hist"])
    assert (ordered.groupby(key)["date"].diff().dropna() > pd.Timedelta(0)).all()
    assert (ordered.groupby(key).size() > 1).mean() > 0.3, "debts have several versions"
    amounts = ordered[["dette_sociale_ouvriere", "dette_sociale_patronale"]].astype(float)
    assert ((amounts == 0).all(axis=1)).any(), "settled versions"
    assert set(debit["code_procedure_collective"]) <= {"0", "1", "2", "9"}
    assert set(debit["etat_compte"]) <= {"1", "2", "3"}

    judgments = t["procedures_collectives"]
    natures = judgments.groupby("siren")["nature_jugement"].agg(set)
    assert natures.apply(lambda s: {"3", "4"} <= s).any()
    assert natures.apply(lambda s: {"3", "5"} <= s).any()

    hist = t["sirene_etablissements_historique"]
    debut, fin = pd.to_datetime(hist["dateDebut"]), pd.to_datetime(hist["dateFin"])
    assert (fin.dropna() > debut[fin.notna()]).all()
    assert (hist.groupby("siret")["dateFin"].apply(lambda s: s.isna().sum()) == 1).all()


# -- determinism and formats --------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = generate_world(tmp_path / "a", n_companies=150, seed=5)
    b = generate_world(tmp_path / "b", n_companies=150, seed=5)
    generate_world(tmp_path / "c", n_companies=150, seed=6)
    assert a == b
    names = [f"{name}.csv" for name in TABLES]
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", names, shallow=False)
    assert not mismatch and not errors
    _, mismatch, _ = filecmp.cmpfiles(tmp_path / "a", tmp_path / "c", names, shallow=False)
    assert "urssaf_effectif.csv" in mismatch


def test_chunks_keep_identifiers_unique(tmp_path, monkeypatch):
    monkeypatch.setattr(generate, "_CHUNK_COMPANIES", 60)
    generate_world(tmp_path / "w", n_companies=150, seed=8)
    for name, table in TABLES.items():
        if table.key:
            frame = padded(read(tmp_path / "w", name), name)
            assert not frame.duplicated(list(table.key)).any(), name
    cot = padded(read(tmp_path / "w", "urssaf_cotisation"), "urssaf_cotisation")
    assert cot.groupby("numero_compte")["siret"].nunique().max() == 1
    assert read(tmp_path / "w", "sirene_unites_legales")["siren"].is_unique


def test_parquet_format(tmp_path):
    counts = generate_world(tmp_path / "p", n_companies=120, seed=2, file_format="parquet")
    for name, table in TABLES.items():
        data = pq.read_table(tmp_path / "p" / f"{name}.parquet")
        assert data.column_names == table.column_names
        assert data.num_rows == counts[name]


def test_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "raw"
    generate_world(target, n_companies=50, seed=1)
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    def broken(*args, **kwargs):
        yield "urssaf_effectif", None
        raise RuntimeError("boom")

    monkeypatch.setattr(generate, "_simulate_chunk", broken)
    with pytest.raises(Exception):
        generate_world(target, n_companies=50, seed=2)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]


def test_bad_arguments():
    with pytest.raises(ValueError):
        generate_world("/nonexistent/x", file_format="xlsx")
    with pytest.raises(ValueError):
        generate_world("/nonexistent/x", n_companies=0)


# -- dynamics -----------------------------------------------------------------------------------


def failure_dates(judgments: pd.DataFrame) -> pd.Series:
    fails = judgments[judgments["nature_jugement"].isin(FAILURE_NATURES)]
    return pd.to_datetime(fails["date_jugement"]).groupby(fails["siren"]).min()


def outstanding_debt(debit: pd.DataFrame, at: pd.DataFrame) -> pd.Series:
    """Debt outstanding per (siren, date) row of ``at``, by the contract's latest-version rule."""
    debit = debit.assign(siren=debit["siret"].str[:9],
                         date=pd.to_datetime(debit["date_traitement"]),
                         hist=debit["numero_historique"].astype(int),
                         amount=debit["dette_sociale_ouvriere"].astype(float)
                         + debit["dette_sociale_patronale"].astype(float))
    at = at.reset_index(drop=True).rename_axis("row").reset_index()
    joined = at.merge(debit, on="siren", suffixes=("_at", ""))
    joined = joined[joined["date"] < joined["date_at"]]
    latest = joined.sort_values("hist").drop_duplicates(
        ["row", "numero_compte", "numero_ecart_negatif", "periode_debut"], keep="last")
    return latest.groupby("row")["amount"].sum().reindex(at["row"], fill_value=0.0)


def headcount_at(effectif: pd.DataFrame, at: pd.DataFrame) -> pd.Series:
    """Headcount of the month before each (siren, date)."""
    eff = effectif.assign(month=pd.to_datetime(effectif["periode"]),
                          e=effectif["effectif"].astype(float))
    month = (at["date"].dt.to_period("M") - 1).dt.to_timestamp()
    key = pd.MultiIndex.from_arrays([at["siren"], month])
    return eff.set_index(["siren", "month"])["e"].reindex(key).to_numpy()


def test_debt_grows_before_failure(world):
    _, t = world
    rng = np.random.default_rng(0)
    fails = failure_dates(t["procedures_collectives"])
    fails = fails[(fails > pd.Timestamp("2016-01-01"))]
    offsets = pd.to_timedelta(np.tile(np.arange(1, 13) * 30, len(fails)), "D")
    before = pd.DataFrame({"siren": np.repeat(fails.index, 12),
                           "date": np.repeat(fails.to_numpy(), 12) - offsets})
    sound = np.setdiff1d(t["sirene_unites_legales"]["siren"], fails.index)
    sample = pd.DataFrame({
        "siren": rng.choice(sound, len(before)),
        "date": pd.Timestamp("2016-01-01")
        + pd.to_timedelta(rng.integers(0, 3000, len(before)), "D"),
    })
    ratios = []
    for at in (before, sample):
        debt = outstanding_debt(t["urssaf_debit"], at).to_numpy()
        staff = headcount_at(t["urssaf_effectif"], at)
        ok = staff > 0
        ratios.append(debt[ok].sum() / staff[ok].sum())
    assert ratios[0] > 5 * ratios[1], ratios

    early = before.assign(date=before["date"] - pd.Timedelta(days=365))
    debt_late = outstanding_debt(t["urssaf_debit"], before).mean()
    debt_early = outstanding_debt(t["urssaf_debit"], early).mean()
    assert debt_late > 1.5 * debt_early, (debt_early, debt_late)


def test_crisis_fewer_failures_and_short_time_work_surge(world):
    _, t = world
    eff = t["urssaf_effectif"]
    alive = eff.groupby(eff["periode"].str[:7]).size()
    fails = failure_dates(t["procedures_collectives"]).dt.strftime("%Y-%m").value_counts()
    rate = (fails.reindex(alive.index, fill_value=0) / alive)
    crisis = rate[(rate.index >= CRISIS[0][:7]) & (rate.index <= CRISIS[1][:7])].mean()
    before = rate[(rate.index >= "2016-01") & (rate.index < "2020-03")].mean()
    after = rate[(rate.index >= "2021-07") & (rate.index <= "2022-12")].mean()
    assert crisis < 0.8 * before, (crisis, before)
    assert after > crisis

    conso = t["ap_consommation"]
    hours = conso["heures"].astype(float).groupby(conso["periode"].str[:4]).sum()
    assert hours["2020"] > 5 * hours[["2016", "2017", "2018", "2019"]].mean()
    motif = t["ap_demande"]["motif_recours_se"].astype(int)
    assert motif.between(1, 5).mean() > 0.9 and (motif >= 6).any()


def test_coverage_of_optional_sources(world):
    _, t = world
    sirens = set(t["sirene_unites_legales"]["siren"])
    without_paydex = 1 - len(set(t["altares_paydex"]["siren"]) & sirens) / len(sirens)
    without_statements = 1 - len(set(t["dgfip_bilans"]["siren"]) & sirens) / len(sirens)
    assert 0.18 < without_paydex < 0.32, without_paydex
    assert 0.22 < without_statements < 0.38, without_statements

    bilans = t["dgfip_bilans"]
    assert bilans.duplicated(["siren", "date_fin_exercice"]).any(), "amended statements"
    assert bilans["date_depot"].isna().any()
    depot = pd.to_datetime(bilans["date_depot"]).dropna()
    lag = (depot - pd.to_datetime(bilans.loc[depot.index, "date_fin_exercice"])).dt.days
    assert lag.between(85, 420).all()
    assert (pd.to_datetime(bilans["date_fin_exercice"]).dt.month != 12).mean() > 0.05


def test_failing_companies_stop_reporting_headcount(world):
    _, t = world
    fails = failure_dates(t["procedures_collectives"])
    fails = fails[fails < pd.Timestamp("2024-01-01")]
    last = t["urssaf_effectif"].groupby("siren")["periode"].max().reindex(fails.index)
    last = pd.to_datetime(last)
    gone = last < fails + pd.Timedelta(days=365)
    assert gone.mean() > 0.6


def test_positive_rate_in_scope(world):
    path, _ = world
    measured = generate._measure_positive_rate(path)
    assert 0.015 < measured["rate"] < 0.07, measured
    assert measured["samples"] > 50_000


# -- truth file and settings --------------------------------------------------------------------

TRUTH_DATES = ("2017-01-01", "2019-01-01", "2022-06-01", "2025-01-01")  # the last one unlabelled


def digest(directory) -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def truth_world(tmp_path_factory):
    """A 6,000-company world with its truth at four dates (100 Monte Carlo paths)."""
    base = tmp_path_factory.mktemp("truth")
    counts = generate_world(base / "raw", n_companies=6000, seed=21, truth_dir=base / "truth",
                            truth_dates=TRUTH_DATES, truth_paths=100)
    return base, counts, pd.read_parquet(base / "truth" / generate.TRUTH_FILE)


def test_truth_file_columns_types_and_rows(truth_world):
    base, counts, truth = truth_world
    schema = pq.read_schema(base / "truth" / generate.TRUTH_FILE)
    assert [(f.name, str(f.type)) for f in schema] == [
        ("siren", "string"), ("periode", "date32[day]"), ("p_failure_18m", "double"),
        ("failure_18m", "int32")]
    assert counts["truth"] == len(truth)
    assert truth["siren"].str.fullmatch(r"\d{9}").all()
    assert sorted(str(d) for d in truth["periode"].unique()) == list(TRUTH_DATES)
    assert not truth.duplicated(["siren", "periode"]).any()
    assert truth["p_failure_18m"].between(0.0, 1.0).all()
    last = truth["periode"].astype(str) == TRUTH_DATES[-1]
    assert truth.loc[last, "failure_18m"].isna().all(), "T + 18 months after the end: unknown"
    assert truth.loc[~last, "failure_18m"].isin([0, 1]).all()
    assert sorted(p.name for p in (base / "raw").iterdir()) == sorted(f"{n}.csv" for n in TABLES)


def test_truth_rows_are_living_companies_and_labels_follow_judgments(truth_world):
    base, _, truth = truth_world
    raw = base / "raw"
    fails = failure_dates(padded(read(raw, "procedures_collectives"), "procedures_collectives"))
    created = pd.to_datetime(padded(read(raw, "sirene_unites_legales"), "sirene_unites_legales")
                             .set_index("siren")["dateCreationUniteLegale"])
    for date in TRUTH_DATES[:-1]:
        t = pd.Timestamp(date)
        rows = truth[truth["periode"].astype(str) == date].set_index("siren")
        assert (created.reindex(rows.index) < t.replace(day=1)).all()
        f = fails.reindex(rows.index)
        assert not (f < t).any(), "no failure before T"
        positive = (f >= t) & (f < t + pd.DateOffset(months=18))
        assert (rows["failure_18m"] == positive.astype(int)).all(), date
        # Every failure of the horizon by a company created before T is a truth row.
        horizon = fails[(fails >= t) & (fails < t + pd.DateOffset(months=18))]
        assert set(horizon.index[created.reindex(horizon.index) < t]) <= set(rows.index)


def test_truth_is_calibrated_and_ranks(truth_world):
    from sklearn.metrics import average_precision_score

    _, _, truth = truth_world
    labelled = truth.dropna(subset=["failure_18m"])
    p, y = labelled["p_failure_18m"].to_numpy(), labelled["failure_18m"].to_numpy()
    # Given the truth, the realised count is a sum of (nearly independent: each company fails at
    # most once and the horizons do not overlap) Bernoulli(p): its standard deviation is
    # sqrt(sum p(1-p)). Monte Carlo noise on the mean of p is far smaller (100 paths x ~10k rows).
    sd = np.sqrt((p * (1 - p)).sum()) / len(p)
    assert len(p) > 8000 and y.sum() > 200
    assert abs(p.mean() - y.mean()) < 4 * sd, (p.mean(), y.mean(), sd)
    assert average_precision_score(y, p) > 4 * y.mean()
    top = p >= np.quantile(p, 0.9)
    assert y[top].mean() > 3 * y.mean()
    sd_top = np.sqrt((p[top] * (1 - p[top])).sum()) / top.sum()
    assert abs(p[top].mean() - y[top].mean()) < 4 * sd_top


def test_raw_files_identical_with_and_without_truth(tmp_path):
    generate_world(tmp_path / "plain", n_companies=300, seed=4)
    counts = generate_world(tmp_path / "raw", n_companies=300, seed=4, truth_dir=tmp_path / "truth",
                            truth_dates=["2020-01-01"], truth_paths=20)
    assert digest(tmp_path / "plain") == digest(tmp_path / "raw")
    assert [p.name for p in (tmp_path / "truth").iterdir()] == [generate.TRUTH_FILE]
    again = generate_world(tmp_path / "raw", n_companies=300, seed=4, truth_dir=tmp_path / "truth2",
                           truth_dates=["2020-01-01"], truth_paths=20)
    assert counts == again and counts["truth"] > 0
    assert digest(tmp_path / "truth") == digest(tmp_path / "truth2")


def test_truth_arguments_are_checked(tmp_path):
    raw = tmp_path / "raw"
    for dates, message in ((["2020-01-15"], "first day of a month"),
                           (["2014-01-01"], "first day of a month"),
                           (["2030-01-01"], "first day of a month"),
                           (["2020-13-01"], "not an ISO date")):
        with pytest.raises(ValueError, match=message):
            generate_world(raw, n_companies=20, truth_dir=tmp_path / "t", truth_dates=dates)
    with pytest.raises(ValueError, match="outside the raw directory"):
        generate_world(raw, n_companies=20, truth_dir=raw / "truth", truth_dates=["2020-01-01"])
    with pytest.raises(ValueError, match="go together"):
        generate_world(raw, n_companies=20, truth_dates=["2020-01-01"])
    assert not raw.exists()


def test_settings_change_the_world(tmp_path):
    generate_world(tmp_path / "base", n_companies=600, seed=7)
    generate_world(tmp_path / "stat", n_companies=600, seed=7, settings="statement_driven")
    generate_world(tmp_path / "late", n_companies=600, seed=7,
                   settings=generate.GENERATOR_SETTINGS["late_crisis"])
    base, stat, late = (digest(tmp_path / d) for d in ("base", "stat", "late"))
    assert base["sirene_unites_legales.csv"] == stat["sirene_unites_legales.csv"]
    for name in ("dgfip_bilans.csv", "urssaf_debit.csv", "urssaf_cotisation.csv"):
        assert base[name] != stat[name], name
    debts = {d: len(read(tmp_path / d, "urssaf_debit")) for d in ("base", "stat")}
    assert debts["stat"] < debts["base"], "debts follow health less"
    hours = {}
    for d in ("base", "late"):
        conso = read(tmp_path / d, "ap_consommation")
        hours[d] = conso["heures"].astype(float).groupby(conso["periode"].str[:4]).sum()
    assert hours["base"].idxmax() == "2020" and hours["late"].idxmax() == "2022"
    with pytest.raises(ValueError, match="unknown generator settings 'nope'.*baseline"):
        generate_world(tmp_path / "x", n_companies=20, settings="nope")


def test_cli_generate_options(tmp_path):
    from click.testing import CliRunner

    from sf_ml.cli import cli

    choices = next(p for p in cli.commands["generate"].params if p.name == "settings").type.choices
    assert list(choices) == list(generate.GENERATOR_SETTINGS)
    runner = CliRunner()
    bad = runner.invoke(cli, ["generate", "--output-dir", str(tmp_path / "r"), "--truth-dir",
                              str(tmp_path / "t"), "--truth-dates", "2022-01-01,2022-02-15"])
    assert bad.exit_code == 2 and "first day of a month" in bad.output
    alone = runner.invoke(cli, ["generate", "--output-dir", str(tmp_path / "r"), "--truth-dates",
                                "2022-01-01"])
    assert alone.exit_code == 2 and "go together" in alone.output
    unknown = runner.invoke(cli, ["generate", "--output-dir", str(tmp_path / "r"),
                                  "--settings", "x"])
    assert unknown.exit_code == 2 and "baseline" in unknown.output
