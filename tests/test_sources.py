"""Hand-computed expectations for each source transform (tiny typed frames, real Spark)."""

from __future__ import annotations

import datetime as dt

import pytest

from sf_ml import sources
from tests.tiny import table

D = dt.date.fromisoformat


def by_periode(df, *columns):
    return {row["periode"]: tuple(row[c] for c in columns) for row in df.collect()}


def test_quarterly_cotisation_spread_over_three_months(spark):
    cotisation = table(spark, "urssaf_cotisation", [
        # a quarter of 300 on one account, a month of 50 on another account of the same siren
        dict(siret="12345678900011", numero_compte="A1", periode_debut="2020-01-01",
             periode_fin="2020-04-01", du=300.0, encaisse=300.0),
        dict(siret="12345678900029", numero_compte="B7", periode_debut="2020-02-01",
             periode_fin="2020-03-01", du=50.0, encaisse=0.0),
    ])
    result = by_periode(sources.cotisation_monthly(cotisation), "cotisation")
    # month M is known from M + 1
    assert result == {
        D("2020-02-01"): (pytest.approx(100.0),),
        D("2020-03-01"): (pytest.approx(150.0),),
        D("2020-04-01"): (pytest.approx(100.0),),
    }


def _debit(numero_historique, date_traitement, ouvriere, patronale, ecart=1):
    return dict(
        siret="12345678900011", numero_compte="A1", numero_ecart_negatif=ecart,
        numero_historique=numero_historique, date_traitement=date_traitement,
        periode_debut="2019-10-01", periode_fin="2020-01-01",
        dette_sociale_ouvriere=ouvriere, dette_sociale_patronale=patronale,
        etat_compte=1, code_procedure_collective="0",
    )


def test_debt_versions_read_as_of_dates_between_them_and_settled(spark):
    debit = table(spark, "urssaf_debit", [
        _debit(1, "2020-01-15", 100.0, 200.0),
        _debit(2, "2020-03-10", 150.0, 250.0),
        _debit(3, "2020-05-20", 0.0, 0.0),  # settled
        # a second debt of the same company, open from April
        _debit(1, "2020-03-31", 10.0, 20.0, ecart=2),
    ])
    states = by_periode(sources.debt_outstanding(debit), *sources.DEBT_COLUMNS)
    assert states == {
        D("2020-02-01"): (100.0, 200.0),
        D("2020-04-01"): (160.0, 270.0),
        D("2020-06-01"): (10.0, 20.0),
    }


def test_debt_version_with_lower_number_recorded_later_does_not_win(spark):
    debit = table(spark, "urssaf_debit", [
        _debit(2, "2020-01-15", 100.0, 200.0),
        _debit(1, "2020-02-15", 999.0, 999.0),
    ])
    states = by_periode(sources.debt_outstanding(debit), *sources.DEBT_COLUMNS)
    assert states == {D("2020-02-01"): (100.0, 200.0), D("2020-03-01"): (100.0, 200.0)}


def test_short_time_work_request_spanning_two_months(spark):
    demande = table(spark, "ap_demande", [
        # 31 days from 16 March to 15 April inclusive, 310 hours: 160 in March, 150 in April
        dict(id_da="D1", siret="12345678900011", date_statut="2020-03-10", date_debut="2020-03-16",
             date_fin="2020-04-15", hta=310.0, eff_etab=12, motif_recours_se=1),
        # motif 6 and above is ignored
        dict(id_da="D2", siret="12345678900011", date_statut="2020-03-10", date_debut="2020-03-01",
             date_fin="2020-03-31", hta=1000.0, eff_etab=12, motif_recours_se=6),
        # decided after the months it covers: never known at M + 1
        dict(id_da="D3", siret="12345678900011", date_statut="2020-07-02", date_debut="2020-05-01",
             date_fin="2020-05-31", hta=500.0, eff_etab=12, motif_recours_se=2),
    ])
    result = by_periode(sources.ap_autorisation_monthly(demande), "ap_heures_autorisees")
    assert result == {D("2020-04-01"): (pytest.approx(160.0),), D("2020-05-01"): (pytest.approx(150.0),)}


def test_ap_consommation_summed_over_establishments(spark):
    conso = table(spark, "ap_consommation", [
        dict(id_da="D1", siret="12345678900011", periode="2020-04-01", heures=30.0, montant=1.0, effectif=3),
        dict(id_da="D2", siret="12345678900029", periode="2020-04-01", heures=12.5, montant=1.0, effectif=1),
    ])
    assert by_periode(sources.ap_consommation_monthly(conso), "ap_heures_consommees") == {
        D("2020-05-01"): (pytest.approx(42.5),)
    }


def test_paydex_latest_measure_and_fractions(spark):
    paydex = table(spark, "altares_paydex", [
        dict(siren="123456789", date_valeur="2020-03-05", paydex=10.0, nbr_fournisseurs=3,
             encours_etudies=1.0, fpi_30=20.0, fpi_90=5.0),
        dict(siren="123456789", date_valeur="2020-03-25", paydex=40.0, nbr_fournisseurs=3,
             encours_etudies=1.0, fpi_30=50.0, fpi_90=10.0),
    ])
    assert by_periode(sources.paydex_latest(paydex), "paydex", "fpi_30", "fpi_90") == {
        D("2020-04-01"): (40.0, 0.5, 0.1)
    }


def _bilan(fin, depot, **values):
    base = dict(siren="123456789", date_debut_exercice=f"{int(fin[:4])}-01-01", date_fin_exercice=fin,
                date_depot=depot, mnt_af_ca=1000.0, mnt_af_sig_ebe_ret=100.0)
    base.update(values)
    return base


def test_financial_ratios_and_zero_denominators(spark):
    bilans = table(spark, "dgfip_bilans", [
        _bilan("2019-12-31", "2020-05-10", rto_6=0.0, mnt_af_endettement_net=50.0,
               rto_af_endettement_a_terme=4.0, d_passf_142_k_propres=200.0, d_passf_120_k=100.0,
               mnt_af_bfonc_actif_circ_expl=30.0, mnt_af_bfonc_actif_circ_h_expl=10.0,
               mnt_af_bfonc_passif_circ_expl=15.0, mnt_af_bfonc_passif_circ_h_expl=5.0,
               mnt_af_bfonc_tresorerie=8.0, rto_56=0.7),
    ])
    row = sources.financial_ratios(bilans).first()
    assert row["ebe_sur_ca"] == pytest.approx(0.1)
    assert row["dette_nette_sur_caf"] is None  # zero denominator
    assert row["dette_a_terme_sur_k_propres"] == pytest.approx(0.25)
    assert row["k_propres_sur_k_social"] == pytest.approx(2.0)
    assert row["liquidite_absolue"] == pytest.approx(2.0)
    assert row["liquidite_generale"] == pytest.approx(0.2)
    assert row["liquidite_reduite"] == pytest.approx(0.7)
    assert row["va_sur_effectif"] is None  # null denominator


def test_statement_filed_after_t_ignored_before_used_amendments_and_default_depot(spark):
    bilans = table(spark, "dgfip_bilans", [
        # fiscal year 2018, no filing date: fin + 4 months = 2019-04-30, known from 2019-05-01
        _bilan("2018-12-31", None, mnt_af_sig_ebe_ret=10.0),
        # fiscal year 2019 filed 2020-05-10 (known from June) then amended with fewer nulls in
        # September, and an older-year amendment in July that must not take over
        _bilan("2019-12-31", "2020-05-10", mnt_af_sig_ebe_ret=20.0),
        _bilan("2019-12-31", "2020-08-20", mnt_af_sig_ebe_ret=30.0, rto_56=1.0),
        _bilan("2018-12-31", "2020-06-15", mnt_af_sig_ebe_ret=99.0, rto_56=1.0, rto_6=1.0),
        # same null count as the September amendment but filed earlier: loses the tie
        _bilan("2019-12-31", "2020-07-01", mnt_af_sig_ebe_ret=40.0, rto_6=2.0),
    ])
    states = by_periode(sources.financial_latest(bilans), "date_fin_exercice", "ebe_sur_ca")
    assert states[D("2019-05-01")] == (D("2018-12-31"), pytest.approx(0.01))
    assert D("2020-05-01") not in states  # nothing new known in May 2020
    assert states[D("2020-06-01")] == (D("2019-12-31"), pytest.approx(0.02))
    assert states[D("2020-07-01")] == (D("2019-12-31"), pytest.approx(0.02))
    assert states[D("2020-08-01")] == (D("2019-12-31"), pytest.approx(0.04))
    assert states[D("2020-09-01")] == (D("2019-12-31"), pytest.approx(0.03))


def test_failure_date_is_first_failure_judgment(spark):
    judgments = table(spark, "procedures_collectives", [
        dict(siren="123456789", date_jugement="2020-01-10", nature_jugement="5"),  # plan: not a failure
        dict(siren="123456789", date_jugement="2020-03-10", nature_jugement="3"),
        dict(siren="123456789", date_jugement="2020-03-10", nature_jugement="3"),  # repeated
        dict(siren="123456789", date_jugement="2020-09-01", nature_jugement="4"),
        dict(siren="987654321", date_jugement="2021-01-01", nature_jugement="A"),
    ])
    rows = sources.failure_dates(judgments).collect()
    assert [(r.company, r.date_defaillance) for r in rows] == [(123456789, D("2020-03-10"))]


def test_head_office_region_section_and_overseas(spark):
    etab = table(spark, "sirene_etablissements", [
        dict(siren="123456789", siret="12345678900011", etablissementSiege=True,
             codeCommuneEtablissement="97105", activitePrincipaleEtablissement="62.01Z"),
        dict(siren="123456789", siret="12345678900029", etablissementSiege=False,
             codeCommuneEtablissement="75056", activitePrincipaleEtablissement="47.11B"),
        dict(siren="111111111", siret="11111111100011", etablissementSiege=True,
             codeCommuneEtablissement="2A004", activitePrincipaleEtablissement="84.11Z"),
    ])
    ul = table(spark, "sirene_unites_legales", [
        dict(siren="123456789", categorieJuridiqueUniteLegale="5710", dateCreationUniteLegale="2001-02-03"),
        dict(siren="111111111", categorieJuridiqueUniteLegale="7210", dateCreationUniteLegale="1990-01-01"),
    ])
    rows = {r.company: r for r in sources.head_offices(etab).collect()}
    assert set(rows) == {123456789, 111111111}  # one row per company: its head office
    assert rows[123456789].siret_siege == "12345678900011"
    assert (rows[123456789].departement, rows[123456789].region) == ("971", "Guadeloupe")
    assert (rows[123456789].naf_division, rows[123456789].naf_section) == ("62", "J")
    assert (rows[111111111].region, rows[111111111].naf_section) == ("Corse", "O")
    legal = {r.company: r for r in sources.legal_units(ul).collect()}
    assert (legal[123456789].categorie_juridique, legal[123456789].date_creation) == ("5710", D("2001-02-03"))
