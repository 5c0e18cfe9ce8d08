"""Panel: calendar-correct aggregations, scope exclusions and target, on tiny typed worlds."""

from __future__ import annotations

import datetime as dt

import pytest

from sf_ml import panel as P
from tests.tiny import company, merge, monthly, world

D = dt.date.fromisoformat


def test_time_aggregations_are_calendar_correct_across_missing_months(spark):
    rows = [("A", D("2020-01-01"), 1.0), ("A", D("2020-02-01"), 2.0), ("A", D("2020-04-01"), 4.0),
            ("B", D("2020-04-01"), 9.0)]
    df = spark.createDataFrame(rows, "siren string, periode date, x double")
    spec = {"lag": {"x": [1, 2, 3]}, "diff": {"x": [2]}, "mean": {"x": [3]}}
    out = {(r.siren, r.periode): r for r in P.add_time_aggregations(df, spec).collect()}
    april = out[("A", D("2020-04-01"))]
    assert april.x_lag1m is None  # March is missing: no value, not February's
    assert april.x_lag2m == 2.0
    assert april.x_lag3m == 1.0
    assert april.x_diff2m == 2.0
    assert april.x_mean3m == pytest.approx(3.0)  # February and April (March absent)
    assert out[("A", D("2020-02-01"))].x_lag1m == 1.0
    assert out[("B", D("2020-04-01"))].x_lag1m is None


SIREN = "012345678"


def headcount(siren=SIREN, start="2017-01-01", n=48, value=20):
    return {"urssaf_effectif": [dict(siren=siren, periode=p, effectif=value) for p in monthly(start, n)]}


def base_world(**company_kw):
    return merge(company(SIREN, **company_kw), headcount())


def build(spark, rows, start="2019-01-01", end="2020-06-01", labels_until="2023-12-31", **kw):
    return P.build_panel(world(spark, rows), start, end, labels_until=labels_until, **kw)


def periodes(df, siren=SIREN):
    return sorted(r.periode for r in df.where(f"siren = '{siren}'").select("periode").collect())


def test_company_in_scope_every_month(spark):
    out = build(spark, base_world())
    assert periodes(out) == [D(p) for p in monthly("2019-01-01", 18)]
    row = out.where("periode = '2019-06-01'").first()
    assert row.effectif == 20.0
    assert row.failure_18m == 0
    assert row.region == "Ile-de-France" and row.naf_section == "J"
    assert row.age_entreprise == pytest.approx(19 + 5 / 12, abs=1e-6)


def test_scope_excludes_small_headcount_over_36_months(spark):
    small = merge(company(SIREN), headcount(value=9))
    assert periodes(build(spark, small)) == []
    # one month at 10 within the 36 months before T brings it in scope until it leaves the window
    peak = merge(small, {"urssaf_effectif": []})
    peak["urssaf_effectif"] = [
        dict(r, effectif=10) if r["periode"] == "2017-03-01" else r for r in small["urssaf_effectif"]
    ]
    in_scope = periodes(build(spark, peak))
    assert in_scope[-1] == D("2020-03-01")  # 2017-03 is within the 36 months before 2020-03 only


def test_scope_excludes_no_recent_headcount(spark):
    rows = merge(company(SIREN), headcount(n=27))  # last record 2019-03
    assert periodes(build(spark, rows))[-1] == D("2019-06-01")  # record in the 3 months before


def test_scope_excludes_public_administration_and_education(spark):
    assert periodes(build(spark, base_world(naf="84.11Z"))) == []
    assert periodes(build(spark, base_world(naf="85.20Z"))) == []


def test_scope_excludes_public_legal_category(spark):
    assert periodes(build(spark, base_world(categorie="7210"))) == []


def test_scope_excludes_inactive_head_office(spark):
    rows = merge(base_world(), {"sirene_etablissements_historique": [
        dict(siret=SIREN + "00011", dateDebut="2000-01-01", dateFin="2019-10-01", etatAdministratifEtablissement="A"),
        dict(siret=SIREN + "00011", dateDebut="2019-10-01", dateFin=None, etatAdministratifEtablissement="F"),
    ]})
    assert periodes(build(spark, rows))[-1] == D("2019-09-01")


def test_scope_excludes_already_failed(spark):
    rows = merge(base_world(), {"procedures_collectives": [
        dict(siren=SIREN, date_jugement="2019-05-01", nature_jugement="3"),
    ]})
    got = periodes(build(spark, rows))
    assert got[-1] == D("2019-05-01")  # a failure exactly at T: still in scope at T


@pytest.mark.parametrize(
    "failure, expected",
    [
        ("2020-01-01", 1),  # exactly at T
        ("2021-06-30", 1),  # T + 18 months - 1 day
        ("2021-07-01", 0),  # T + 18 months
        (None, 0),
    ],
)
def test_target_horizon(spark, failure, expected):
    judgments = [dict(siren=SIREN, date_jugement=failure, nature_jugement="4")] if failure else []
    rows = merge(base_world(), {"procedures_collectives": judgments})
    out = build(spark, rows, start="2020-01-01", end="2020-01-01", labels_until="2023-01-01")
    assert out.first().failure_18m == expected


def test_target_unknown_when_horizon_not_covered(spark):
    out = build(spark, base_world(), start="2020-01-01", end="2020-03-01", labels_until="2021-08-15")
    labels = {r.periode: r.failure_18m for r in out.collect()}
    assert labels == {D("2020-01-01"): 0, D("2020-02-01"): 0, D("2020-03-01"): None}


def test_absent_optional_tables_give_null_features_and_debt_defaults(spark):
    out = build(spark, base_world(), start="2020-01-01", end="2020-01-01")
    row = out.first()
    assert row.paydex is None and row.ebe_sur_ca is None and row.ap_heures_consommees is None
    assert row.dette_sociale_patronale is None


def test_features_of_a_periode_use_only_earlier_records(spark):
    rows = merge(base_world(), {
        "urssaf_debit": [dict(
            siret=SIREN + "00011", numero_compte="A1", numero_ecart_negatif=1, numero_historique=1,
            date_traitement="2019-12-31", periode_debut="2019-10-01", periode_fin="2020-01-01",
            dette_sociale_ouvriere=100.0, dette_sociale_patronale=300.0, etat_compte=1,
            code_procedure_collective="0",
        ), dict(
            siret=SIREN + "00011", numero_compte="A1", numero_ecart_negatif=1, numero_historique=2,
            date_traitement="2020-01-01", periode_debut="2019-10-01", periode_fin="2020-01-01",
            dette_sociale_ouvriere=0.0, dette_sociale_patronale=0.0, etat_compte=1,
            code_procedure_collective="0",
        )],
        "urssaf_cotisation": [dict(
            siret=SIREN + "00011", numero_compte="A1", periode_debut=p, periode_fin=q, du=1000.0, encaisse=1000.0,
        ) for p, q in zip(monthly("2019-01-01", 12), monthly("2019-02-01", 12))],
    })
    out = build(spark, rows, start="2020-01-01", end="2020-02-01",
                time_aggregation={"lag": {"dette_sociale_patronale": [1]}})
    jan, feb = sorted(out.collect(), key=lambda r: r.periode)
    assert (jan.dette_sociale_ouvriere, jan.dette_sociale_patronale) == (100.0, 300.0)
    assert jan.dette_par_effectif == pytest.approx(20.0)
    assert jan.cotisation == pytest.approx(1000.0)
    assert jan.dette_sur_cotisation_mean12m == pytest.approx(0.4)
    assert feb.dette_sociale_patronale == 0.0  # settled on 2020-01-01: known from February
    assert feb.dette_sociale_patronale_lag1m == 300.0
    assert feb.cotisation is None  # no contribution for January 2020


def test_records_without_siren_or_periode_belong_to_no_company(spark):
    """Rows with an empty siren or periode (kept, with a warning, by ingestion) are left out."""
    rows = merge(base_world(), {"urssaf_effectif": [
        dict(siren=None, periode=p, effectif=50) for p in monthly("2017-01-01", 48)
    ] + [dict(siren=SIREN, periode=None, effectif=500)]})
    out = build(spark, rows, start="2020-01-01", end="2020-01-01")
    assert [(r.siren, r.effectif) for r in out.collect()] == [(SIREN, 20.0)]
