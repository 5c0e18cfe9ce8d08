"""Tiny typed contract tables for hand-computed tests."""

from __future__ import annotations

import datetime as dt

from sf_ml.contract import DATE, TABLES


def _value(kind: str, value):
    if value is None:
        return None
    if kind == DATE and isinstance(value, str):
        return dt.date.fromisoformat(value)
    return value


def table(spark, name: str, rows: list[dict]):
    """A typed contract table from partial rows (missing columns are null)."""
    from sf_ml.ingest import typed_schema

    spec = TABLES[name]
    records = [
        tuple(_value(c.kind, row.get(c.name)) for c in spec.columns) for row in rows
    ]
    return spark.createDataFrame(records, typed_schema(name))


def company(siren: str, naf: str = "62.01Z", categorie: str = "5710", commune: str = "75056",
            created: str = "2000-01-01") -> dict[str, list[dict]]:
    """Sirene rows of a one-establishment company."""
    return {
        "sirene_etablissements": [dict(
            siren=siren, siret=siren + "00011", etablissementSiege=True,
            codeCommuneEtablissement=commune, activitePrincipaleEtablissement=naf,
        )],
        "sirene_unites_legales": [dict(
            siren=siren, categorieJuridiqueUniteLegale=categorie, dateCreationUniteLegale=created,
        )],
    }


def monthly(start: str, n: int) -> list[str]:
    """``n`` consecutive month starts from ``start``."""
    first = dt.date.fromisoformat(start)
    out = []
    for i in range(n):
        index = first.year * 12 + first.month - 1 + i
        out.append(dt.date(index // 12, index % 12 + 1, 1).isoformat())
    return out


def world(spark, rows: dict[str, list[dict]]) -> dict:
    """Typed tables from ``{table: rows}``; required tables default to empty."""
    from sf_ml.contract import REQUIRED_TABLES

    names = set(rows) | set(REQUIRED_TABLES)
    return {name: table(spark, name, rows.get(name, [])) for name in names}


def merge(*parts: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Concatenate the rows of several ``{table: rows}`` mappings."""
    out: dict[str, list[dict]] = {}
    for part in parts:
        for name, rows in part.items():
            out.setdefault(name, []).extend(rows)
    return out
