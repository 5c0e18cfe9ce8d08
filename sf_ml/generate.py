"""A synthetic raw world written to the data contract (``docs/data-contract.md``).

Companies are simulated month by month as (company x month) numpy arrays. Each company has a
latent health made of a persistent level, an AR(1) noise, occasional distress episodes (slow
declines over months) and a sector-weighted macro factor with a COVID-like crisis. Health drives,
with noise and lead time, every observable: headcount, unpaid contributions and the URSSAF
debts they create, supplier payment delays, short-time work, financial statements, and a monthly
failure hazard. The crisis hits observables hard but lowers failures (state support), which
then catch up. The files carry the quirks of real exports: several establishments and URSSAF
accounts per company, quarterly contribution windows, amended statements, repeated judgments,
identifiers that lost their leading zeros, public bodies and schools outside the scope.

Companies are processed in chunks, each with its own child random generator, so the output only
depends on ``seed`` (and the ``settings`` preset) and memory stays bounded for large worlds.

Presets of :class:`GeneratorSettings` (``GENERATOR_SETTINGS``) vary the world: ``baseline`` is the
default world, ``late_crisis`` moves the crisis 24 months later, ``statement_driven`` makes debts
follow health less and financial statements more. On request, a truth file gives each living
company's true probability of failing within 18 months of a date T given its latent state at the
end of T-1, integrated by Monte Carlo over the generator's own law with a separate random
generator, so the raw files are the same with or without it.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from sf_ml.contract import (
    BOOL,
    DATE,
    FAILURE_NATURES,
    FLOAT,
    INT,
    SCOPE,
    TABLES,
    TARGET_HORIZON_MONTHS,
)
from sf_ml.io import atomic_directory

FILE_FORMATS = ("csv", "parquet")
_CHUNK_COMPANIES = 10_000

# Monthly failure hazard of a company with health 0, before sector/size/age/macro factors.
_BASE_HAZARD = 0.0008
_HEALTH_HAZARD_SLOPE = 2.8
# Failures follow sustained distress: the hazard sees an exponential average of health.
_HAZARD_MEMORY = 0.15
_BURN_IN = 36
# Latent health: AR(1) noise, and distress episodes (slots, monthly onset rate, onset lead before
# the first simulated month, duration and slope ranges, recovery time constant).
_AR_PHI, _AR_SIGMA = 0.97, 0.11
_EPISODE_SLOTS, _EPISODE_RATE, _EPISODE_LEAD = 2, 0.0013, 24
_EPISODE_DURATION, _EPISODE_SLOPE, _EPISODE_RECOVERY = (6, 31), (0.03, 0.10), 18.0
# Monthly voluntary closure probability (doubled for micro firms, up to doubled by distress).
_BASE_CLOSURE = 0.0012
# Truth file: its name and the independent random stream of its Monte Carlo.
TRUTH_FILE = "truth.parquet"
_TRUTH_STREAM = 7919
_TRUTH_BATCH = 2000

# Sector groups: (name, hazard factor, crisis sensitivity, health offset, yearly gross wage,
# value-added share of turnover, stock share of turnover, short-time-work crisis uptake).
_GROUPS = (
    ("agriculture", 0.8, 0.3, 0.0, 27_000, 0.35, 0.10, 0.3),
    ("industry", 1.0, 0.8, 0.05, 38_000, 0.33, 0.10, 1.0),
    ("construction", 1.3, 0.7, -0.05, 34_000, 0.40, 0.03, 1.0),
    ("commerce", 1.1, 1.0, 0.0, 31_000, 0.18, 0.14, 1.1),
    ("transport", 1.1, 0.9, -0.05, 33_000, 0.40, 0.01, 0.9),
    ("hospitality", 1.5, 2.0, -0.1, 25_000, 0.45, 0.04, 1.8),
    ("information", 0.8, 0.4, 0.1, 48_000, 0.55, 0.00, 0.5),
    ("finance_realestate", 0.6, 0.3, 0.15, 46_000, 0.60, 0.00, 0.3),
    ("business_services", 1.0, 0.8, 0.0, 35_000, 0.55, 0.01, 0.8),
    ("health_social", 0.6, 0.3, 0.1, 31_000, 0.60, 0.01, 0.3),
    ("other_services", 1.1, 1.3, -0.05, 27_000, 0.50, 0.03, 1.4),
    ("education", 0.7, 0.5, 0.05, 32_000, 0.60, 0.00, 0.6),
    ("public", 0.0, 0.0, 0.3, 33_000, 0.60, 0.00, 0.0),
)
_G_HAZARD, _G_SENS, _G_OFFSET, _G_WAGE, _G_VA, _G_STOCK, _G_AP = (
    np.array([g[i] for g in _GROUPS], dtype=float) for i in range(1, 8)
)
_GROUP_ID = {g[0]: i for i, g in enumerate(_GROUPS)}

# NAF rév. 2 codes with a rough weight among French employers, by sector group.
_NAF = {
    "agriculture": {"01.11Z": 0.8, "01.50Z": 0.5, "01.21Z": 0.4, "02.20Z": 0.2},
    "industry": {
        "10.71C": 1.5, "10.13B": 0.4, "16.23Z": 0.4, "22.22Z": 0.4, "25.62B": 0.8,
        "28.29B": 0.4, "33.12Z": 0.6, "20.59Z": 0.3, "18.12Z": 0.4, "25.11Z": 0.5,
    },
    "construction": {
        "43.21A": 2.0, "43.22A": 1.8, "43.31Z": 0.6, "43.32A": 1.0, "43.34Z": 0.8,
        "41.20A": 1.0, "43.99C": 1.0, "42.11Z": 0.3, "43.12A": 0.6,
    },
    "commerce": {
        "47.11D": 0.8, "47.11F": 0.5, "46.90Z": 1.0, "45.20A": 1.2, "47.71Z": 1.2,
        "46.69B": 0.8, "47.73Z": 0.9, "45.11Z": 0.8, "46.17A": 0.4, "47.19B": 0.5, "47.30Z": 0.4,
    },
    "transport": {"49.41A": 1.5, "49.41B": 0.5, "52.29A": 0.5, "53.20Z": 0.3, "49.32Z": 0.5,
                  "49.39A": 0.4},
    "hospitality": {"56.10A": 3.0, "56.10C": 0.8, "55.10Z": 1.2, "56.30Z": 0.8, "56.21Z": 0.3},
    "information": {"62.01Z": 1.5, "62.02A": 0.8, "58.29C": 0.3, "63.11Z": 0.3, "61.10Z": 0.2},
    "finance_realestate": {"64.19Z": 0.2, "68.20B": 0.6, "66.22Z": 0.4, "68.31Z": 0.5},
    "business_services": {
        "70.22Z": 1.2, "71.12B": 1.0, "69.20Z": 1.0, "69.10Z": 0.6, "73.11Z": 0.5,
        "81.21Z": 1.5, "78.20Z": 0.5, "80.10Z": 0.6, "82.99Z": 0.5, "77.11A": 0.3, "74.10Z": 0.3,
    },
    "health_social": {"86.10Z": 0.4, "87.10A": 0.6, "88.10A": 0.8, "86.23Z": 0.8, "86.90A": 0.4,
                      "75.00Z": 0.3},
    "other_services": {"93.12Z": 0.4, "96.02A": 1.2, "94.99Z": 0.6, "95.11Z": 0.2, "90.01Z": 0.3,
                       "93.29Z": 0.3},
    "education": {"85.31Z": 0.5, "85.59A": 0.8, "85.20Z": 0.3, "85.53Z": 0.4},
    "public": {"84.11Z": 1.4, "84.12Z": 0.2, "84.24Z": 0.1, "84.30A": 0.1, "36.00Z": 0.1,
               "49.31Z": 0.1, "91.02Z": 0.1},
}
_NAF_CODES = np.array([c for g in _NAF.values() for c in g])
_NAF_GROUP = np.array([_GROUP_ID[g] for g, codes in _NAF.items() for _ in codes])
_NAF_WEIGHT = np.array([w for g in _NAF.values() for w in g.values()])
_PUBLIC_SHARE = 0.025
_EDUCATION_SHARE = 0.02

_PRIVATE_CATEGORIES = {
    "5710": 0.36, "5499": 0.29, "5498": 0.09, "5720": 0.07, "5599": 0.05, "1000": 0.05,
    "9220": 0.05, "5202": 0.01, "6540": 0.01, "5785": 0.01, "5308": 0.01,
}
_EDUCATION_CATEGORIES = {"9220": 0.6, "5710": 0.3, "5499": 0.1}
_PUBLIC_CATEGORIES = {c: (8.0 if c == "7210" else 1.0) for c in SCOPE.excluded_legal_categories}

# INSEE commune codes (large cities, small prefectures, Corsica, overseas) with rough weights.
_COMMUNES = {
    "75056": 8.0, "13055": 3.0, "69123": 3.0, "31555": 2.0, "06088": 1.5, "44109": 1.5,
    "34172": 1.2, "67482": 1.2, "33063": 1.5, "59350": 1.5, "35238": 1.2, "51454": 0.6,
    "76351": 0.6, "42218": 0.6, "83137": 0.6, "38185": 0.8, "21231": 0.5, "49007": 0.5,
    "37261": 0.5, "63113": 0.5, "92026": 1.0, "92012": 1.0, "93066": 0.8, "94028": 0.4,
    "91228": 0.3, "95018": 0.3, "78646": 0.4, "77288": 0.3, "01053": 0.3, "02691": 0.2,
    "03185": 0.2, "05061": 0.1, "09122": 0.1, "29019": 0.5, "56121": 0.3, "64445": 0.4,
    "66136": 0.4, "74010": 0.4, "80021": 0.4, "87085": 0.4, "08105": 0.2, "25056": 0.4,
    "57463": 0.5, "54395": 0.5, "45234": 0.5, "72181": 0.4, "14118": 0.4, "86194": 0.3,
    "17300": 0.3, "30189": 0.4, "84007": 0.4, "68224": 0.4, "2A004": 0.3, "2B033": 0.25,
    "97105": 0.1, "97101": 0.15, "97209": 0.2, "97302": 0.1, "97411": 0.3, "97611": 0.05,
}
_COMMUNE_CODES = np.array(list(_COMMUNES))
_COMMUNE_WEIGHT = np.array(list(_COMMUNES.values()))
_URSSAF_CODES = np.array(["117", "217", "267", "317", "417", "527", "547", "617", "727", "827",
                          "917", "937", "977"])

# Share of rows whose identifiers lost their leading zeros, per table.
_STRIPPED_ID_SHARE = {
    "urssaf_effectif": 0.3, "urssaf_cotisation": 0.5, "urssaf_debit": 1.0, "ap_demande": 1.0,
    "dgfip_bilans": 0.2, "altares_paydex": 0.5, "procedures_collectives": 1.0,
}

_CRISIS = ("2020-03", "2021-06")
_CATCHUP = ("2021-07", "2022-12")

_ARROW_TYPES = {DATE: pa.date32(), BOOL: pa.bool_(), INT: pa.int64(), FLOAT: pa.float64()}


@dataclass(frozen=True)
class GeneratorSettings:
    """Knobs of the world's law; the defaults are the baseline world.

    Attributes:
        crisis_shift_months: Months by which the crisis (activity shock, failure support and
            catch-up, short-time work, deferrals, cyclical dip) is moved later.
        debt_health_weight: Scale of the health-driven part of unpaid contributions (how often
            and how much a distressed company leaves unpaid).
        statement_noise: Standard deviation of the noise between health and the health that
            financial statements reflect.
        statement_health_gain: Multiplier of health in the financial statements.
    """

    crisis_shift_months: int = 0
    debt_health_weight: float = 1.0
    statement_noise: float = 0.15
    statement_health_gain: float = 1.0


GENERATOR_SETTINGS = {
    "baseline": GeneratorSettings(),
    "late_crisis": GeneratorSettings(crisis_shift_months=24),
    "statement_driven": GeneratorSettings(debt_health_weight=0.35, statement_noise=0.05,
                                          statement_health_gain=1.6),
}


def resolve_settings(settings: str | GeneratorSettings) -> GeneratorSettings:
    """The settings of a preset name (or the settings themselves).

    Args:
        settings: A key of ``GENERATOR_SETTINGS`` or a :class:`GeneratorSettings`.

    Returns:
        The settings.

    Raises:
        ValueError: On an unknown preset name.
    """
    if isinstance(settings, GeneratorSettings):
        return settings
    if settings not in GENERATOR_SETTINGS:
        raise ValueError(f"unknown generator settings {settings!r}; choose one of "
                         f"{', '.join(GENERATOR_SETTINGS)}")
    return GENERATOR_SETTINGS[settings]


def generate_world(
    output_dir: str | Path,
    n_companies: int = 5000,
    start: str = "2014-01-01",
    end: str = "2025-12-31",
    seed: int = 0,
    file_format: str = "csv",
    truth_dir: str | Path | None = None,
    truth_dates: Sequence[str] = (),
    settings: str | GeneratorSettings = "baseline",
    truth_paths: int = 200,
) -> dict[str, int]:
    """Simulate companies and write one file per contract table into ``output_dir``.

    The directory is written atomically (nothing is left half-written) and replaces any
    previous content. The same arguments always give byte-identical files, with or without a
    truth file (its Monte Carlo draws from its own random generator).

    Args:
        output_dir: Directory to create (or replace) with the raw tables.
        n_companies: Number of companies (sirens) to simulate.
        start: First day covered by the monthly data (ISO date; its month is used).
        end: Last day covered; no record is dated after it (ISO date).
        seed: Seed of ``numpy.random.default_rng``.
        file_format: ``"csv"`` (``NAME.csv``) or ``"parquet"`` (single ``NAME.parquet`` file).
        truth_dir: Directory (outside ``output_dir``) receiving ``truth.parquet``; see
            :func:`_truth_table` for its rows and columns. Needs ``truth_dates``.
        truth_dates: Prediction dates T (ISO, first day of a month after the first month).
        settings: A preset name of ``GENERATOR_SETTINGS`` or a :class:`GeneratorSettings`.
        truth_paths: Monte Carlo paths per company and date.

    Returns:
        The number of rows written per table (and ``truth`` when a truth file is written).

    Raises:
        ValueError: On an unknown format or settings, a non-positive size, an empty date
            range, or bad truth arguments.
    """
    if file_format not in FILE_FORMATS:
        raise ValueError(f"file_format must be one of {FILE_FORMATS}, got {file_format!r}")
    if n_companies < 1:
        raise ValueError(f"n_companies must be positive, got {n_companies}")
    settings = resolve_settings(settings)
    cal = _Calendar.from_bounds(start, end)
    truth = _truth_request(cal, output_dir, truth_dir, truth_dates, truth_paths, settings)
    macro = _Macro.build(cal, _BURN_IN, settings.crisis_shift_months)
    rng = np.random.default_rng(seed)
    sirens = _draw_sirens(rng, n_companies)
    n_chunks = -(-n_companies // _CHUNK_COMPANIES)
    chunk_rngs = rng.spawn(n_chunks)
    truth_rngs = np.random.default_rng([seed, _TRUTH_STREAM]).spawn(n_chunks)
    counters = {"etab": 0, "request": 0}
    truth_tables = []
    with atomic_directory(output_dir) as staging:
        staging.mkdir(parents=True, exist_ok=True)
        writers = _Writers(staging, file_format)
        try:
            for k in range(n_chunks):
                chunk = sirens[k * _CHUNK_COMPANIES:(k + 1) * _CHUNK_COMPANIES]
                chunk_truth = None if truth is None else (truth, truth_rngs[k])
                for name, table in _simulate_chunk(chunk_rngs[k], chunk, cal, macro, counters,
                                                   settings, chunk_truth):
                    if name == _TRUTH_NAME:
                        truth_tables.append(table)
                    else:
                        writers.write(name, table)
        finally:
            writers.close()
    counts = dict(writers.rows)
    if truth is not None:
        counts["truth"] = _write_truth(Path(truth_dir), truth_tables)
    return counts


# ----------------------------------------------------------------------------------------------
# Time
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Calendar:
    """The monthly grid of the world: month index 0 is the month of ``start``."""

    months: np.ndarray
    end: np.datetime64

    @classmethod
    def from_bounds(cls, start: str, end: str) -> _Calendar:
        first = np.datetime64(start, "D").astype("datetime64[M]")
        last_day = np.datetime64(end, "D")
        if last_day < first.astype("datetime64[D]"):
            raise ValueError(f"end {end} is before start {start}")
        return cls(np.arange(first, last_day.astype("datetime64[M]") + 1), last_day)

    @property
    def n(self) -> int:
        return len(self.months)

    def first_day(self, m) -> np.ndarray:
        """First day of month index ``m`` (any integer, also outside the grid)."""
        return (self.months[0] + np.asarray(m, dtype=np.int64)).astype("datetime64[D]")

    def month_of(self, dates) -> np.ndarray:
        """Month index of dates (may be negative or beyond the grid)."""
        return (np.asarray(dates).astype("datetime64[M]") - self.months[0]).astype(np.int64)

    def days_in(self, m) -> np.ndarray:
        return (self.first_day(np.asarray(m) + 1) - self.first_day(m)).astype(np.int64)

    def random_day(self, rng: np.random.Generator, m) -> np.ndarray:
        m = np.asarray(m, dtype=np.int64)
        return self.first_day(m) + (rng.random(m.shape) * self.days_in(m)).astype(np.int64)


@dataclass(frozen=True)
class _Macro:
    """Monthly macro series shared by all companies, over the burn-in and the window.

    Attributes:
        struct: Business-cycle part of health that also drives failures.
        shock: Crisis shock on activity (observables only: support keeps firms alive).
        hazard: Failure hazard multiplier (crisis support, then catch-up).
        ap_wave: Extra monthly probability of short-time-work requests during the crisis.
        deferral: Extra monthly probability of deferred URSSAF contributions.
    """

    struct: np.ndarray
    shock: np.ndarray
    hazard: np.ndarray
    ap_wave: np.ndarray
    deferral: np.ndarray

    @classmethod
    def build(cls, cal: _Calendar, burn_in: int = 0, crisis_shift: int = 0,
              extra: int = 0) -> _Macro:
        """Series for the months of ``cal``, preceded by ``burn_in`` earlier months.

        Args:
            cal: The calendar of the world.
            burn_in: Months simulated before the first month of ``cal``.
            crisis_shift: Months by which the crisis episodes are moved later.
            extra: Months added after the last month of ``cal`` (same formulas).

        Returns:
            The series.
        """
        months = np.arange(cal.months[0] - burn_in, cal.months[-1] + 1 + extra)

        def series(spec: dict[tuple[str, str], float], shift: int = 0) -> np.ndarray:
            out = np.zeros(len(months))
            for (first, last), value in spec.items():
                out[(months >= np.datetime64(first, "M") + shift)
                    & (months <= np.datetime64(last, "M") + shift)] += value
            return out

        abs_month = (months - np.datetime64("2000-01", "M")).astype(float)
        struct = (0.05 * np.sin(2 * np.pi * abs_month / 90.0)
                  + series({("2020-03", "2022-06"): -0.04}, crisis_shift)
                  + series({("2023-01", "2025-12"): -0.05}))
        shock = series({("2020-03", "2020-05"): -1.2, ("2020-06", "2020-10"): -0.5,
                        ("2020-11", "2020-12"): -0.8, ("2021-01", "2021-06"): -0.4}, crisis_shift)
        hazard = 1.0 + series({_CRISIS: -0.6, _CATCHUP: 0.5}, crisis_shift)
        ap_wave = series({("2020-03", "2020-03"): 0.30, ("2020-04", "2020-04"): 0.18,
                          ("2020-05", "2020-05"): 0.06, ("2020-06", "2020-10"): 0.02,
                          ("2020-11", "2020-11"): 0.08, ("2020-12", "2021-06"): 0.025},
                         crisis_shift)
        deferral = series({("2020-03", "2020-06"): 0.30, ("2020-11", "2021-02"): 0.10},
                          crisis_shift)
        return cls(struct, shock, hazard, ap_wave, deferral)

    def window(self, burn_in: int) -> _Macro:
        """The same series without their first ``burn_in`` months."""
        return _Macro(*(getattr(self, f)[burn_in:] for f in
                        ("struct", "shock", "hazard", "ap_wave", "deferral")))


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _distress(h):
    """0 for healthy, close to 1 when health is well below normal."""
    return _sigmoid(2.2 * (-h - 1.0))


def _luhn_check_digit(prefix: np.ndarray, n_digits: int) -> np.ndarray:
    """Check digit making ``prefix * 10 + digit`` valid for the Luhn algorithm."""
    powers = 10 ** np.arange(n_digits - 1, -1, -1, dtype=np.int64)
    digits = (prefix[:, None] // powers) % 10
    doubled = (np.arange(n_digits)[::-1] % 2) == 0
    d2 = np.where(doubled, digits * 2, digits)
    d2 = np.where(d2 > 9, d2 - 9, d2)
    return (10 - d2.sum(axis=1) % 10) % 10


def _draw_sirens(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unique Luhn-valid sirens; about one in ten starts with a zero."""
    base = rng.choice(10**8, size=n, replace=False).astype(np.int64)
    return base * 10 + _luhn_check_digit(base, 8)


def _first_true(mask: np.ndarray) -> np.ndarray:
    """Column index of the first True per row, or the number of columns if none."""
    any_ = mask.any(axis=1)
    return np.where(any_, mask.argmax(axis=1), mask.shape[1])


def _choice(rng: np.random.Generator, values, weights, size) -> np.ndarray:
    values = np.asarray(list(values))
    w = np.asarray(list(weights), dtype=float)
    return values[rng.choice(len(values), size=size, p=w / w.sum())]


def _ema(x: np.ndarray, alpha: float) -> np.ndarray:
    out = np.empty_like(x)
    acc = x[:, 0].copy()
    for m in range(x.shape[1]):
        acc = (1 - alpha) * acc + alpha * x[:, m]
        out[:, m] = acc
    return out


def _id_strings(ids: np.ndarray, width: int) -> pa.Array:
    """Zero-padded identifiers followed by the same identifiers without leading zeros."""
    plain = ids.astype(str)
    return pa.array(np.concatenate([np.char.zfill(plain, width), plain]), pa.string())


def _ids(rng: np.random.Generator, dictionary: pa.Array, index: np.ndarray, stripped: float):
    """Identifier column taken from ``dictionary`` (padded then stripped halves)."""
    n = len(dictionary) // 2
    index = np.asarray(index, dtype=np.int64)
    if stripped > 0:
        index = index + n * (rng.random(len(index)) < stripped)
    return pc.take(dictionary, pa.array(index))


def _schema(name: str) -> pa.Schema:
    """Arrow schema of a contract table (identifiers and codes as strings)."""
    columns = TABLES[name].columns
    return pa.schema([(c.name, _ARROW_TYPES.get(c.kind, pa.string())) for c in columns])


def _table(name: str, columns: dict) -> pa.Table:
    """Arrow table with exactly the contract's columns and types."""
    schema = _schema(name)
    arrays = []
    for field_ in schema:
        value = columns[field_.name]
        if not isinstance(value, (pa.Array, pa.ChunkedArray)):
            value = np.asarray(value)
            if field_.type == pa.float64():
                value = value.astype(np.float64)
            value = pa.array(value, type=field_.type, from_pandas=True)
        arrays.append(value)
    return pa.table(arrays, schema=schema)


class _Writers:
    """One streaming writer per contract table, created upfront so empty tables get a header."""

    def __init__(self, directory: Path, file_format: str):
        self.rows = {name: 0 for name in TABLES}
        self._writers = {}
        for name in TABLES:
            schema = _schema(name)
            path = directory / f"{name}.{file_format}"
            if file_format == "csv":
                options = pcsv.WriteOptions(quoting_style="none", quoting_header="none")
                self._writers[name] = pcsv.CSVWriter(path, schema, write_options=options)
            else:
                self._writers[name] = pq.ParquetWriter(path, schema)

    def write(self, name: str, table: pa.Table) -> None:
        if table.num_rows:
            self._writers[name].write_table(table)
            self.rows[name] += table.num_rows

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()


# ----------------------------------------------------------------------------------------------
# Simulation of one chunk of companies
# ----------------------------------------------------------------------------------------------


def _simulate_chunk(rng, sirens, cal, macro, counters, settings=GENERATOR_SETTINGS["baseline"],
                    truth=None):
    """Simulate a chunk of companies and yield ``(table name, arrow table)`` pairs.

    The company record is built by typed stages, each from the outputs of the ones before:
    :func:`_companies` -> :func:`_health` -> :func:`_failures` -> :func:`_headcount`, gathered in
    a :class:`_Chunk` that the table writers read. With ``truth`` (a ``(_TruthRequest, random
    generator)`` pair), one ``_TRUTH_NAME`` table is also yielded; it draws only from its own
    generator.
    """
    companies = _companies(rng, sirens, cal)
    health = _health(rng, companies, cal, macro)
    macro = macro.window(_BURN_IN)
    fates, health, judgments = _failures(rng, companies, health, cal, macro)
    if truth is not None:
        yield _TRUTH_NAME, _truth_table(truth[1], companies, health, fates, cal, truth[0])
    headcount = _headcount(rng, companies, health, fates, cal, macro)
    chunk = _Chunk(companies, health, fates, headcount)
    et = _establishments(rng, chunk, cal, counters)

    siren_dict = _id_strings(sirens, 9)
    siret_dict = _id_strings(et.siret, 14)
    yield from _sirene_tables(rng, chunk, et, cal, siren_dict, siret_dict)

    rows, cols = np.nonzero(headcount.recorded >= 0)
    yield "urssaf_effectif", _table("urssaf_effectif", {
        "siren": _ids(rng, siren_dict, rows, _STRIPPED_ID_SHARE["urssaf_effectif"]),
        "periode": cal.first_day(cols), "effectif": headcount.recorded[rows, cols],
    })
    yield from _urssaf_tables(rng, chunk, et, cal, macro, siret_dict, settings)
    yield from _ap_tables(rng, chunk, et, cal, macro, siret_dict, counters)
    yield "dgfip_bilans", _bilans(rng, chunk, cal, macro, siren_dict, settings)
    yield "altares_paydex", _paydex(rng, chunk, cal, siren_dict)

    ci, dates, natures = judgments
    yield "procedures_collectives", _table("procedures_collectives", {
        "siren": _ids(rng, siren_dict, ci, _STRIPPED_ID_SHARE["procedures_collectives"]),
        "date_jugement": dates, "nature_jugement": natures,
    })


@dataclass(frozen=True)
class _Companies:
    """Static attributes of a chunk's companies (one entry per company).

    Attributes:
        siren: Siren numbers (int). naf / group: NAF code and sector group index. public: Public
        body. size: Typical headcount. category: Legal category. creation: Creation day;
        creation_m its window month; birth: first window month the company exists.
    """

    siren: np.ndarray
    naf: np.ndarray
    group: np.ndarray
    public: np.ndarray
    size: np.ndarray
    category: np.ndarray
    creation: np.ndarray
    creation_m: np.ndarray
    birth: np.ndarray

    @property
    def n(self) -> int:
        return len(self.siren)


@dataclass(frozen=True)
class _Health:
    """Latent monthly health (company x window month).

    Attributes:
        beta: Macro sensitivity. parts: Components of the structural paths from the burn-in on
        (see :func:`_health_paths`), which the truth continues. h: Structural health. sustained:
        Its moving average, which the failure hazard sees. h_obs: Observed health (adds the crisis).
    """

    beta: np.ndarray
    parts: dict
    h: np.ndarray
    sustained: np.ndarray
    h_obs: np.ndarray


@dataclass(frozen=True)
class _Fates:
    """How each company's life ends in the window (months are window indexes; ``cal.n`` = never).

    Attributes:
        fail_m / failed / fail_date: Month, flag and day of the first failure judgment.
        closure_m: Month of a voluntary closure drawn. closed_voluntarily: Closed without failing.
        exit: First month the company no longer exists. alive: Company x month existence.
        plan_date: Day of a continuation plan (survivors restructure). post_failure: Headcount
        factor after the failure. old_proceeding: Survived proceedings before the window.
    """

    fail_m: np.ndarray
    failed: np.ndarray
    fail_date: np.ndarray
    closure_m: np.ndarray
    closed_voluntarily: np.ndarray
    exit: np.ndarray
    alive: np.ndarray
    plan_date: np.ndarray
    post_failure: np.ndarray
    old_proceeding: np.ndarray


@dataclass(frozen=True)
class _Headcount:
    """Monthly headcount (company x month): ``eff`` the true one (0 when not alive), ``recorded``
    the rows written to ``urssaf_effectif`` (-1 where none is: not alive, or a gap)."""

    eff: np.ndarray
    recorded: np.ndarray


@dataclass(frozen=True)
class _Chunk:
    """The company record of a chunk: every stage's output, as the table writers read it."""

    companies: _Companies
    health: _Health
    fates: _Fates
    headcount: _Headcount


def _companies(rng, sirens, cal) -> _Companies:
    """Static company attributes: sector, size, legal category, creation date."""
    n = len(sirens)
    kind = rng.random(n)
    public = kind < _PUBLIC_SHARE
    education = (kind >= _PUBLIC_SHARE) & (kind < _PUBLIC_SHARE + _EDUCATION_SHARE)
    private_naf = (_NAF_GROUP != _GROUP_ID["public"]) & (_NAF_GROUP != _GROUP_ID["education"])
    naf_idx = rng.choice(np.flatnonzero(private_naf), size=n,
                         p=_NAF_WEIGHT[private_naf] / _NAF_WEIGHT[private_naf].sum())
    for mask, group in ((public, "public"), (education, "education")):
        allowed = np.flatnonzero(_NAF_GROUP == _GROUP_ID[group])
        naf_idx[mask] = rng.choice(allowed, size=mask.sum(),
                                   p=_NAF_WEIGHT[allowed] / _NAF_WEIGHT[allowed].sum())

    # Typical headcount: micro (< 10, mostly out of scope), small, medium and large firms.
    size_class = rng.choice(4, size=n, p=[0.30, 0.45, 0.19, 0.06])
    lo = np.array([1.0, 10.0, 50.0, 250.0])[size_class]
    hi = np.array([10.5, 50.0, 250.0, 3000.0])[size_class]
    size = np.exp(rng.uniform(np.log(lo), np.log(hi)))

    category = _choice(rng, _PRIVATE_CATEGORIES, _PRIVATE_CATEGORIES.values(), n)
    category[education] = _choice(rng, _EDUCATION_CATEGORIES, _EDUCATION_CATEGORIES.values(),
                                  education.sum())
    category[public] = _choice(rng, _PUBLIC_CATEGORIES, _PUBLIC_CATEGORIES.values(), public.sum())
    sole_trader_too_big = (category == "1000") & (size >= 20)
    category[sole_trader_too_big] = "5499"

    start_day = cal.first_day(0)
    old = rng.random(n) < 0.7
    oldest = (start_day - np.datetime64("1950-01-01")).astype(int)
    age_days = np.minimum(rng.exponential(12 * 365.25, n), oldest)
    span = (cal.end - start_day).astype(int) - 180
    creation = np.where(old, start_day - 1 - age_days.astype(np.int64),
                           start_day + (rng.random(n) * max(span, 1)).astype(np.int64))
    creation_m = cal.month_of(creation)
    return _Companies(siren=sirens, naf=_NAF_CODES[naf_idx], group=_NAF_GROUP[naf_idx], public=public,
                      size=size, category=category, creation=creation, creation_m=creation_m,
                      birth=np.maximum(creation_m + 1, 0))


def _episode_depth(t, duration, slope):
    """Health lost ``t`` months after an episode's onset: a decline, then a partial recovery."""
    return np.where(t > duration, slope * duration * np.exp(-(t - duration) / _EPISODE_RECOVERY),
                    slope * np.clip(t, 0, None))


def _health_paths(rng, group: np.ndarray, macro_struct: np.ndarray):
    """Macro sensitivity and structural monthly health paths of companies of the given sectors.

    Returns:
        ``(beta, health, parts)``: ``parts`` holds the level ``mu``, the AR(1) noise ``x`` and
        the episodes' ``has``, ``onset`` (month index of the paths), ``duration``, ``slope``
        (one column per slot), which the truth's Monte Carlo continues.
    """
    n, months = len(group), len(macro_struct)
    mu = rng.normal(0.0, 0.3, n) + _G_OFFSET[group]
    beta = _G_SENS[group] * rng.lognormal(0.0, 0.25, n)
    phi, sigma = _AR_PHI, _AR_SIGMA
    eps = rng.normal(0.0, sigma, (n, months))
    x = np.empty((n, months))
    acc = rng.normal(0.0, sigma / np.sqrt(1 - phi**2), n)
    for m in range(months):
        acc = phi * acc + eps[:, m]
        x[:, m] = acc

    # Distress episodes: a slow decline over months, then a slow partial recovery.
    t_grid = np.arange(months)[None, :]
    z = np.zeros((n, months))
    slots = []
    for _ in range(_EPISODE_SLOTS):
        has = rng.random(n) < min(1.0, _EPISODE_RATE * (months + _EPISODE_LEAD))
        onset = rng.integers(-_EPISODE_LEAD, months, n)[:, None]
        duration = rng.integers(*_EPISODE_DURATION, n)[:, None]
        slope = rng.uniform(*_EPISODE_SLOPE, n)[:, None]
        z -= has[:, None] * _episode_depth(t_grid - onset, duration, slope)
        slots.append((has, onset[:, 0], duration[:, 0], slope[:, 0]))
    parts = {"mu": mu, "x": x}
    parts.update(zip(("has", "onset", "duration", "slope"),
                     (np.column_stack(v) for v in zip(*slots))))
    return beta, mu[:, None] + x + z + beta[:, None] * macro_struct[None, :], parts


def _hazard(companies: _Companies, idx, sustained: np.ndarray, t: np.ndarray,
            multiplier: np.ndarray) -> np.ndarray:
    """Monthly failure probability of companies ``idx`` at window months ``t``."""
    age = np.maximum(t[None, :] - companies.creation_m[idx, None], 0)
    size_factor = (np.maximum(companies.size[idx], 1.0) / 10.0) ** -0.15
    hazard = (_BASE_HAZARD * np.exp(-_HEALTH_HAZARD_SLOPE * sustained) * (1.0 + np.exp(-age / 30.0))
              * (_G_HAZARD[companies.group[idx]] * size_factor)[:, None] * multiplier[None, :])
    return np.minimum(hazard, 0.5)


def _closure(size: np.ndarray, health: np.ndarray) -> np.ndarray:
    """Monthly voluntary closure probability of companies of typical ``size`` at ``health``."""
    return _BASE_CLOSURE * (1 + (size < 10))[:, None] * (1 + _distress(health))


def _health(rng, companies: _Companies, cal, macro) -> _Health:
    """Latent monthly health: structural (drives failures) and observed (adds the crisis).

    Paths start ``_BURN_IN`` months before the window; a company that would have failed then is
    redrawn, so that the window starts from a population of survivors rather than with a wave
    of failures of companies already in distress.
    """
    n, total = companies.n, _BURN_IN + cal.n
    t_burn = np.arange(-_BURN_IN, 0)
    beta = np.empty(n)
    h = np.empty((n, total))
    sustained = np.empty((n, total))
    todo = np.arange(n)
    all_parts = {}
    for _ in range(4):
        beta[todo], h[todo], parts = _health_paths(rng, companies.group[todo], macro.struct)
        for key, value in parts.items():
            all_parts.setdefault(key, np.empty((n,) + value.shape[1:], value.dtype))[todo] = value
        sustained[todo] = _ema(h[todo], _HAZARD_MEMORY)
        exists = t_burn[None, :] > companies.creation_m[todo, None]
        hazard = _hazard(companies, todo, sustained[todo, :_BURN_IN], t_burn, macro.hazard[:_BURN_IN])
        todo = todo[((rng.random(exists.shape) < hazard) & exists).any(axis=1)]
        if not len(todo):
            break
    window = macro.window(_BURN_IN)
    h = h[:, _BURN_IN:]
    return _Health(beta=beta, parts=all_parts, h=h, sustained=sustained[:, _BURN_IN:],
                   h_obs=h + beta[:, None] * window.shock[None, :])


def _failures(rng, companies: _Companies, health: _Health, cal, macro):
    """``(fates, health, judgments)``: the :class:`_Fates`, the health once proceedings' survivors
    restructure (healthier from their plan on), ``(company index, date, nature)`` of the judgments."""
    n, months = companies.n, cal.n
    t_grid = np.arange(months)[None, :]
    exists = t_grid >= companies.birth[:, None]
    hazard = _hazard(companies, np.arange(n), health.sustained, np.arange(months), macro.hazard)
    fail_m = _first_true((rng.random((n, months)) < hazard) & exists)
    closure = _closure(companies.size, health.h)
    closure_m = _first_true((rng.random((n, months)) < closure) & (t_grid >= companies.birth[:, None] + 3))
    failed = fail_m < closure_m  # a closure drawn in the month of a failure wins
    fail_m = np.where(failed, fail_m, months)

    # What follows the failure judgment.
    kind = rng.choice(5, size=n, p=[0.40, 0.30, 0.18, 0.07, 0.05])
    d1 = cal.random_day(rng, fail_m)
    first_nature = np.array(["4", "3", "3", "3", "8"])[kind]
    gap_lo = np.array([0, 30, 180, 60, 180])[kind]
    gap_hi = np.array([1, 240, 450, 270, 365])[kind]
    d2 = d1 + rng.integers(gap_lo, gap_hi)
    second_nature = np.array(["", "4", "5", "6", "A"])[kind]
    has_second = failed & (kind > 0) & ((kind != 4) | (rng.random(n) < 0.85))
    relapse = failed & (kind == 2) & (rng.random(n) < 0.15)
    d3 = d2 + rng.integers(200, 900, n)

    ends = failed & np.isin(kind, (0, 1, 3))
    end_date = np.where(kind == 0, d1, d2)
    end_date = np.where(relapse, d3, end_date)
    ends |= relapse
    exit_fail = np.where(ends, cal.month_of(end_date) + 1 + rng.integers(0, 4, n), months)
    exit_m = np.minimum(np.minimum(exit_fail, closure_m), months)
    exit_m = np.maximum(exit_m, np.where(failed, fail_m + 1, 0))

    # Survivors restructure: smaller, healthier. Dates used by the URSSAF debt states.
    far = np.datetime64("2262-01-01", "D")
    plan = failed & np.isin(kind, (2, 4)) & has_second
    survivor_m = np.where(plan, cal.month_of(d2), months)
    restructured = _Health(beta=health.beta, parts=health.parts, sustained=health.sustained,
                           h=health.h + 0.7 * (t_grid >= survivor_m[:, None]),
                           h_obs=health.h_obs + 0.7 * (t_grid >= survivor_m[:, None]))
    post_failure = np.where(t_grid >= fail_m[:, None], np.where(plan | (kind == 4), 0.75, 0.85)[:, None], 1.0)

    # Old proceedings (before the window) that the company survived: out of scope for good.
    old = (rng.random(n) < 0.006) & (companies.creation < cal.first_day(-48))
    lo = np.maximum(companies.creation + 365, cal.first_day(-120))
    d_old = lo + (rng.random(n) * np.maximum((cal.first_day(-12) - lo).astype(int), 1)).astype(int)

    ci = np.concatenate([np.flatnonzero(failed), np.flatnonzero(has_second),
                         np.flatnonzero(relapse), np.flatnonzero(old), np.flatnonzero(old)])
    dates = np.concatenate([d1[failed], d2[has_second], d3[relapse], d_old[old],
                            d_old[old] + rng.integers(150, 330, old.sum())])
    natures = np.concatenate([first_nature[failed], second_nature[has_second],
                              np.full(relapse.sum(), "4"), np.full(old.sum(), "3"),
                              np.full(old.sum(), "5")])
    keep = dates <= cal.end
    ci, dates, natures = ci[keep], dates[keep], natures[keep]
    repeated = rng.random(len(ci)) < 0.03
    ci = np.concatenate([ci, ci[repeated]])
    dates = np.concatenate([dates, dates[repeated]])
    natures = np.concatenate([natures, natures[repeated]])
    order = np.lexsort((dates, ci))
    fates = _Fates(fail_m=fail_m, failed=failed, fail_date=np.where(failed, d1, far), closure_m=closure_m,
                   closed_voluntarily=(~failed) & (closure_m < months), exit=exit_m,
                   alive=exists & (t_grid < exit_m[:, None]), plan_date=np.where(plan, d2, far),
                   post_failure=post_failure, old_proceeding=old)
    return fates, restructured, (ci[order], dates[order], natures[order])


def _headcount(rng, companies: _Companies, health: _Health, fates: _Fates, cal, macro) -> _Headcount:
    """Monthly headcount (company x month), true and as recorded."""
    months = cal.n
    t_grid = np.arange(months)[None, :]
    smooth = _ema(health.h, 0.12)
    growth = rng.normal(0.0, 0.03, companies.n)[:, None] * (t_grid / 12.0)
    age = np.maximum(t_grid - companies.creation_m[:, None], 0)
    ramp = np.minimum(0.35 + 0.65 * age / 36.0, 1.0)
    level = (companies.size[:, None] * np.exp(0.45 * smooth + growth
                                              + 0.08 * health.beta[:, None] * macro.shock[None, :])
             * ramp * fates.post_failure)
    eff = np.rint(level * np.exp(rng.normal(0.0, 0.04, level.shape))).astype(np.int64)
    gaps = rng.random(eff.shape) < 0.004
    return _Headcount(eff=np.where(fates.alive, eff, 0), recorded=np.where(fates.alive & ~gaps, eff, -1))


class _Et:
    """Arrays describing the establishments of a chunk."""


def _establishments(rng, chunk: _Chunk, cal, counters) -> _Et:
    """Establishments (head office first), their headcount share and URSSAF accounts."""
    months = cal.n
    et = _Et()
    n_secondary = np.minimum(rng.poisson(0.05 * chunk.companies.size**0.6), 7)
    count = 1 + n_secondary
    et.company = np.repeat(np.arange(chunk.companies.n), count)
    starts = np.concatenate([[0], np.cumsum(count)[:-1]])
    rank = np.arange(len(et.company)) - np.repeat(starts, count)
    et.head = rank == 0
    e = len(et.company)
    nic = rank + 1 + 10 * rng.integers(0, 3, e)
    prefix = chunk.companies.siren[et.company] * 10_000 + nic
    et.siret = prefix * 10 + _luhn_check_digit(prefix, 13)

    birth, exit_ = chunk.companies.birth[et.company], chunk.fates.exit[et.company]
    later = (~et.head) & (rng.random(e) < 0.35)
    et.open = np.where(later, birth + (rng.random(e) * np.maximum(exit_ - birth, 1)).astype(int),
                       birth)
    closes = (~et.head) & (rng.random(e) < 0.2)
    et.close = np.where(closes, et.open + rng.integers(6, max(months, 7), e), months)
    et.close = np.minimum(et.close, exit_)
    t_grid = np.arange(months)[None, :]
    et.active = ((t_grid >= et.open[:, None]) & (t_grid < et.close[:, None])
                 & chunk.fates.alive[et.company])

    weight = rng.gamma(2.0, 1.0, e) * np.where(et.head, 2.0, 1.0)
    w = weight[:, None] * et.active
    total = np.add.reduceat(w, starts, axis=0)[et.company]
    share = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
    et.eff = np.rint(chunk.headcount.eff[et.company] * share).astype(np.int64)

    head_commune = _choice(rng, _COMMUNE_CODES, _COMMUNE_WEIGHT, chunk.companies.n)
    et.commune = np.where(rng.random(e) < 0.5, head_commune[et.company],
                          _choice(rng, _COMMUNE_CODES, _COMMUNE_WEIGHT, e))
    et.commune[et.head] = head_commune
    other_naf = _choice(rng, _NAF_CODES[_NAF_GROUP < _GROUP_ID["education"]],
                        _NAF_WEIGHT[_NAF_GROUP < _GROUP_ID["education"]], e)
    et.naf = np.where((~et.head) & (rng.random(e) < 0.12) & ~chunk.companies.public[et.company],
                      other_naf, chunk.companies.naf[et.company])

    # URSSAF accounts: one per establishment, renumbered once for some of them.
    et.index = counters["etab"] + np.arange(e)
    counters["etab"] += e
    span = et.close - et.open
    et.renumbered = (rng.random(e) < 0.10) & (span > 12)
    et.change = np.where(et.renumbered,
                         et.open + 6 + (rng.random(e) * np.maximum(span - 9, 1)).astype(int),
                         months)
    region = _URSSAF_CODES[rng.integers(0, len(_URSSAF_CODES), e)]
    # An affine map modulo 9e13 with a prime multiplier is a bijection: numbers stay unique.
    raw = np.concatenate([et.index * 2, et.index * 2 + 1])
    numbers = (raw * 982_451_653 + 104_729) % (9 * 10**13) + 10**13
    et.accounts = pa.array(np.char.add(np.concatenate([region, region]),
                                       np.char.zfill(numbers.astype(str), 15)), pa.string())
    et.quarterly = rng.random(e) < np.where(chunk.companies.size[et.company] < 10, 0.55, 0.12)
    return et


def _sirene_tables(rng, chunk: _Chunk, et, cal, siren_dict, siret_dict):
    """Static snapshots of companies and establishments, and the establishments' history."""
    e = len(et.company)
    yield "sirene_unites_legales", _table("sirene_unites_legales", {
        "siren": _ids(rng, siren_dict, np.arange(chunk.companies.n), 0.0),
        "categorieJuridiqueUniteLegale": chunk.companies.category,
        "dateCreationUniteLegale": chunk.companies.creation,
    })
    yield "sirene_etablissements", _table("sirene_etablissements", {
        "siren": _ids(rng, siren_dict, et.company, 0.0),
        "siret": _ids(rng, siret_dict, np.arange(e), 0.0),
        "etablissementSiege": et.head,
        "codeCommuneEtablissement": et.commune,
        "activitePrincipaleEtablissement": et.naf,
    })

    creation = chunk.companies.creation[et.company]
    start_day = cal.first_day(0)
    before = et.open <= 0
    pre_open = creation + (rng.random(e) * np.maximum((start_day - creation).astype(int), 1)
                           ).astype(int)
    open_date = np.where(before, np.where(rng.random(e) < 0.6, creation, pre_open),
                         cal.random_day(rng, et.open - 1))
    open_date = np.where(et.head, creation, np.maximum(open_date, creation))
    forgotten = chunk.fates.closed_voluntarily[et.company] & (rng.random(e) < 0.1)
    closed = (et.close < cal.n) & ~forgotten
    close_date = cal.first_day(et.close - 1) + rng.integers(0, 90, e)
    close_date = np.maximum(close_date, open_date + 1)
    closed &= close_date <= cal.end
    last = np.where(closed, close_date, cal.end)
    room = (last - open_date).astype(int)
    split = (rng.random(e) < 0.12) & (room > 60)
    split_date = open_date + 1 + (rng.random(e) * np.maximum(room - 2, 1)).astype(int)

    nat = np.datetime64("NaT", "D")
    first_end = np.where(split, split_date, np.where(closed, close_date, nat))
    second_end = np.where(closed, close_date, nat)
    idx = np.concatenate([np.arange(e), np.flatnonzero(split), np.flatnonzero(closed)])
    debut = np.concatenate([open_date, split_date[split], close_date[closed]])
    fin = np.concatenate([first_end, second_end[split], np.full(closed.sum(), nat)])
    state = np.concatenate([np.full(e + split.sum(), "A"), np.full(closed.sum(), "F")])
    order = np.lexsort((debut, idx))
    yield "sirene_etablissements_historique", _table("sirene_etablissements_historique", {
        "siret": _ids(rng, siret_dict, idx[order], 0.0),
        "dateDebut": debut[order], "dateFin": fin[order],
        "etatAdministratifEtablissement": state[order],
    })


def _urssaf_tables(rng, chunk: _Chunk, et, cal, macro, siret_dict, settings):
    """Contribution windows and the debts their unpaid part creates."""
    e, months = len(et.company), cal.n
    comp = et.company
    rate = (_G_WAGE[chunk.companies.group] / 12.0 * 0.45 * rng.lognormal(0.0, 0.1, chunk.companies.n))[comp]
    active = et.active
    du_month = np.where(active, et.eff * rate[:, None], 0.0)
    du_month *= np.exp(rng.normal(0.0, 0.03, du_month.shape))
    du_pad = np.pad(du_month, ((0, 0), (0, 2)))
    du_q = du_pad[:, :months] + du_pad[:, 1:months + 1] + du_pad[:, 2:]
    act_pad = np.pad(active, ((0, 0), (0, 2)))
    act_q = act_pad[:, :months] | act_pad[:, 1:months + 1] | act_pad[:, 2:]
    quarter_start = ((cal.months.astype(int) % 12) % 3 == 0)[None, :]
    window = np.where(et.quarterly[:, None], act_q & quarter_start, active)
    ei, mi = np.nonzero(window)
    length = np.where(et.quarterly[ei], 3, 1)
    du = np.round(np.where(et.quarterly[ei], du_q[ei, mi], du_month[ei, mi]), 2)

    ci = comp[ei]
    h = chunk.health.h[ci, mi]
    dist = _sigmoid(3.5 * (-h - 0.9)) * settings.debt_health_weight
    p_unpaid = 0.003 + 0.6 * dist + macro.deferral[mi] * np.minimum(chunk.health.beta[ci], 2.0) * 0.6
    unpaid = (rng.random(len(ei)) < p_unpaid) & (du > 0)
    frac = np.clip(rng.beta(1.2 + 3.0 * dist, 1.8), 0.03, 1.0)
    encaisse = np.round(np.where(unpaid, du * (1 - frac), du), 2)
    account = ei + e * (mi >= et.change[ei])
    debut = cal.first_day(mi)
    fin = cal.first_day(mi + length)
    yield "urssaf_cotisation", _table("urssaf_cotisation", {
        "siret": _ids(rng, siret_dict, ei, _STRIPPED_ID_SHARE["urssaf_cotisation"]),
        "numero_compte": pc.take(et.accounts, pa.array(account)),
        "periode_debut": debut, "periode_fin": fin, "du": du, "encaisse": encaisse,
    })

    owed = du - encaisse
    d = np.flatnonzero(owed >= 1.0)
    yield "urssaf_debit", _debts(rng, chunk, et, cal, siret_dict, ei[d], mi[d], length[d],
                                 account[d], owed[d])


def _debts(rng, chunk: _Chunk, et, cal, siret_dict, ei, mi, length, account, owed) -> pa.Table:
    """States of each debt: first record, then repayments, penalties or settlement."""
    order = np.lexsort((mi, account))
    ei, mi, length, account, owed = ei[order], mi[order], length[order], account[order], owed[order]
    new_group = np.r_[True, account[1:] != account[:-1]]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(len(account)), 0))
    ecart = np.arange(len(account)) - group_start + 1

    ci = et.company[ei]
    share = rng.uniform(0.2, 0.3, len(ei))
    ouv = np.round(owed * share, 2)
    pat = np.round(owed - ouv, 2)
    t = cal.first_day(mi + length) + rng.integers(10, 46, len(ei))
    hist = np.ones(len(ei), dtype=np.int64)
    frozen_versions = np.zeros(len(ei), dtype=np.int64)
    exit_date = cal.first_day(chunk.fates.exit)
    idx = np.arange(len(ei))
    out = []
    for _ in range(30):
        if not len(idx):
            break
        c = ci[idx]
        tt = t[idx]
        keep = tt <= cal.end
        idx, c, tt = idx[keep], c[keep], tt[keep]
        proc = tt >= chunk.fates.fail_date[c]
        plan = tt >= chunk.fates.plan_date[c]
        dead = (tt >= exit_date[c]) & (chunk.fates.exit[c] < cal.n)
        zero = (ouv[idx] == 0) & (pat[idx] == 0)
        code = np.where(plan, "2", np.where(proc, np.where(zero, "9", "1"), "0"))
        etat = np.where(dead, 3, np.where(proc & ~plan, 2, 1))
        out.append((idx, hist[idx].copy(), tt, ouv[idx].copy(), pat[idx].copy(), etat, code))

        frozen_versions[idx] += proc & ~plan
        go_on = ~zero & ~dead & (frozen_versions[idx] < 3)
        idx = idx[go_on]
        if not len(idx):
            break
        t[idx] += rng.integers(25, 76, len(idx))
        hist[idx] += 1 + (rng.random(len(idx)) < 0.1)
        m = np.clip(cal.month_of(t[idx]), 0, cal.n - 1)
        h = chunk.health.h[ci[idx], m]
        in_plan = t[idx] >= chunk.fates.plan_date[ci[idx]]
        in_proc = (t[idx] >= chunk.fates.fail_date[ci[idx]]) & ~in_plan
        p_settle = np.where(in_plan, 0.08, 0.7 * _sigmoid(2.5 * (h + 0.6)))
        p_partial = np.where(in_plan, 0.9, 0.5 * _sigmoid(1.5 * (h + 0.8)))
        u = rng.random(len(idx))
        factor = np.where(u < p_settle, 0.0,
                          np.where(u < p_settle + p_partial, rng.uniform(0.3, 0.9, len(idx)),
                                   1.0 + rng.uniform(0.005, 0.03, len(idx))))
        factor = np.where(in_proc, 1.0, factor)
        ouv[idx] = np.round(ouv[idx] * factor, 2)
        pat[idx] = np.round(pat[idx] * factor, 2)

    if not out:
        return _table("urssaf_debit", {c: np.array([]) for c in TABLES["urssaf_debit"].column_names})
    rows, hists, dates, ouvs, pats, etats, codes = (np.concatenate(x) for x in zip(*out))
    order = np.lexsort((hists, rows))
    rows = rows[order]
    return _table("urssaf_debit", {
        "siret": _ids(rng, siret_dict, ei[rows], _STRIPPED_ID_SHARE["urssaf_debit"]),
        "numero_compte": pc.take(et.accounts, pa.array(account[rows])),
        "numero_ecart_negatif": ecart[rows], "numero_historique": hists[order],
        "date_traitement": dates[order],
        "periode_debut": cal.first_day(mi[rows]),
        "periode_fin": cal.first_day(mi[rows] + length[rows]),
        "dette_sociale_ouvriere": ouvs[order], "dette_sociale_patronale": pats[order],
        "etat_compte": etats[order], "code_procedure_collective": codes[order],
    })


def _ap_tables(rng, chunk: _Chunk, et, cal, macro, siret_dict, counters):
    """Short-time-work requests (a surge in the crisis) and the hours used each month."""
    comp = et.company
    eligible = et.active & (et.eff >= 1) & ~chunk.companies.public[comp][:, None]
    dist = _distress(chunk.health.h_obs)[comp]
    wave = macro.ap_wave[None, :] * _G_AP[chunk.companies.group][comp][:, None] * (0.6 + 0.8 * dist)
    p = np.where(macro.ap_wave[None, :] > 0, wave, 0.0004 + 0.015 * dist)
    ei, mi = np.nonzero((rng.random(eligible.shape) < p) & eligible)
    crisis = macro.ap_wave[mi] > 0
    nr = len(ei)
    duration = np.where(crisis, rng.integers(2, 10, nr), rng.integers(1, 7, nr))
    debut = np.where(rng.random(nr) < 0.7, cal.first_day(mi), cal.random_day(rng, mi))
    fin = cal.first_day(mi + duration) - 1
    statut = debut + np.where(crisis, rng.integers(5, 60, nr), rng.integers(-30, 10, nr))
    eff_etab = et.eff[ei, mi]
    concerned = np.maximum(1, np.rint(eff_etab * rng.uniform(0.3, 1.0, nr))).astype(np.int64)
    hta = np.round(concerned * 151.67 * duration * rng.uniform(0.25, 0.9, nr), 1)
    motif = np.where(crisis,
                     _choice(rng, [5, 1, 2, 3, 4, 6, 7], [55, 33, 4, 2, 3, 2, 1], nr),
                     _choice(rng, [1, 2, 3, 4, 5, 6, 8], [70, 8, 5, 10, 4, 2, 1], nr))
    keep = statut <= cal.end
    ei, mi, duration, debut, fin, statut, eff_etab, concerned, hta, motif, crisis = (
        x[keep] for x in (ei, mi, duration, debut, fin, statut, eff_etab, concerned, hta, motif,
                          crisis))
    nr = len(ei)
    ids = (10**10 + counters["request"] + np.arange(nr)).astype(str)
    counters["request"] += nr
    yield "ap_demande", _table("ap_demande", {
        "id_da": ids, "siret": _ids(rng, siret_dict, ei, _STRIPPED_ID_SHARE["ap_demande"]),
        "date_statut": statut, "date_debut": debut, "date_fin": fin, "hta": hta,
        "eff_etab": eff_etab, "motif_recours_se": motif,
    })

    used = rng.random(nr) < np.where(crisis, 0.8, 0.9)
    req = np.repeat(np.arange(nr), duration)
    month = mi[req] + (np.arange(len(req)) - np.repeat(np.cumsum(duration) - duration, duration))
    ok = (used[req] & (month < cal.n) & (month < chunk.fates.exit[et.company[ei[req]]])
          & (rng.random(len(req)) < 0.85))
    req, month = req[ok], month[ok]
    heures = np.round(hta[req] / duration[req] * rng.uniform(0.2, 1.0, len(req)), 1)
    hourly = rng.uniform(8.5, 13.5, nr)
    yield "ap_consommation", _table("ap_consommation", {
        "id_da": ids[req], "siret": _ids(rng, siret_dict, ei[req], 0.0),
        "periode": cal.first_day(month), "heures": heures,
        "montant": np.round(heures * hourly[req], 2),
        "effectif": np.maximum(1, np.rint(concerned[req] * rng.uniform(0.5, 1.0, len(req)))
                               ).astype(np.int64),
    })


def _paydex(rng, chunk: _Chunk, cal, siren_dict) -> pa.Table:
    """Roughly monthly supplier payment measures for about three companies in four."""
    n, months = chunk.companies.n, cal.n
    has = (rng.random(n) < np.where(chunk.companies.size < 10, 0.72, 0.89)) & ~chunk.companies.public
    coverage = chunk.companies.birth + np.where(rng.random(n) < 0.45, 0, rng.integers(0, 72, n))
    t_grid = np.arange(months)[None, :]
    measured = (has[:, None] & (t_grid >= coverage[:, None]) & chunk.fates.alive
                & (rng.random((n, months)) < 0.9))
    ci, mi = np.nonzero(measured)
    day = np.clip(rng.integers(0, 28, n)[ci] + rng.integers(-2, 3, len(ci)), 0,
                  cal.days_in(mi) - 1)
    h = _ema(chunk.health.h_obs, 0.35)[ci, mi]
    paydex = np.round(rng.normal(6.0, 4.0, n)[ci] - 4.0 * h + 40.0 * _distress(h)
                      + rng.normal(0.0, 3.0, len(ci)), 1)
    fpi30 = np.clip(100 * _sigmoid(-2.0 + 0.07 * (paydex - 8) + rng.normal(0.0, 0.5, len(ci))) - 6,
                    0, 100)
    fpi90 = fpi30 * _sigmoid(-2.2 + 0.05 * paydex + rng.normal(0.0, 0.5, len(ci)))
    suppliers = rng.poisson(3 + 2 * np.sqrt(chunk.companies.size[ci]))
    amounts = suppliers * np.exp(rng.normal(np.log(6000) + 0.3 * np.log(chunk.companies.size[ci]), 0.5))
    return _table("altares_paydex", {
        "siren": _ids(rng, siren_dict, ci, _STRIPPED_ID_SHARE["altares_paydex"]),
        "date_valeur": cal.first_day(mi) + day, "paydex": paydex,
        "nbr_fournisseurs": suppliers, "encours_etudies": np.round(amounts),
        "fpi_30": np.round(fpi30, 1), "fpi_90": np.round(fpi90, 1),
    })


def _bilans(rng, chunk: _Chunk, cal, macro, siren_dict, settings) -> pa.Table:
    """Yearly statements for about seven companies in ten, some amended, some incomplete."""
    n, months = chunk.companies.n, cal.n
    has = (rng.random(n) < np.where(chunk.companies.size < 10, 0.62, 0.82)) & ~chunk.companies.public
    year_end_month = _choice(rng, [12, 3, 6, 9], [80, 7, 7, 6], n)
    first_year = int(str(cal.months[0])[:4]) - 1
    years = np.arange(first_year, int(str(cal.end)[:4]) + 1)
    ye = (np.array([f"{y}-01" for y in years], dtype="datetime64[M]")[None, :]
          + year_end_month[:, None])
    fin_ex = ye.astype("datetime64[D]") - 1
    prev_fin = (ye - 12).astype("datetime64[D]") - 1
    creation = chunk.companies.creation[:, None]
    fin_m = cal.month_of(fin_ex)
    valid = (has[:, None] & (creation <= fin_ex - 183) & (fin_m < chunk.fates.exit[:, None])
             & (rng.random(fin_ex.shape) < 0.95))
    depot = fin_ex + rng.integers(90, 216, fin_ex.shape)
    ci, yi = np.nonzero(valid & (depot <= cal.end))
    fin_ex, depot, fin_m = fin_ex[ci, yi], depot[ci, yi], fin_m[ci, yi]
    debut = np.where(creation[ci, 0] > prev_fin[ci, yi] - 183, creation[ci, 0],
                     prev_fin[ci, yi] + 1)
    a = np.clip(cal.month_of(debut), 0, months - 1)
    b = np.clip(fin_m, 0, months - 1)
    a = np.minimum(a, b)

    def fiscal_mean(x):
        cs = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x, axis=1)], axis=1)
        return (cs[ci, b + 1] - cs[ci, a]) / (b - a + 1)

    h = settings.statement_health_gain * (fiscal_mean(chunk.health.h)
                                          + rng.normal(0.0, settings.statement_noise, len(ci)))
    shock = fiscal_mean(chunk.health.beta[:, None] * macro.shock[None, :])
    alive_months = fiscal_mean(chunk.fates.alive.astype(float))
    staff = np.where(alive_months > 0,
                     fiscal_mean(chunk.headcount.eff.astype(float)) / np.maximum(alive_months, 1e-9),
                     chunk.companies.size[ci])
    staff = np.maximum(staff, 0.5)
    k = len(ci)

    def noise(sd):
        return rng.normal(0.0, sd, k)

    g = chunk.companies.group[ci]
    dist = _distress(h)
    th = np.tanh(h)
    salaires = staff * _G_WAGE[g] * rng.lognormal(0.0, 0.1, n)[ci] * (1 + noise(0.03))
    charges = salaires * rng.uniform(0.38, 0.45, k)
    syndic = salaires * np.where(rng.random(k) < 0.5, 0.0, rng.uniform(0.0, 0.02, k))
    personnel = salaires + charges + syndic
    va = personnel / np.clip(0.70 - 0.28 * th - 0.3 * shock + noise(0.05), 0.3, 1.6)
    ca = va / (_G_VA[g] * rng.lognormal(0.0, 0.15, n)[ci])
    ebe = va - personnel - va * rng.uniform(0.02, 0.05, k)
    assets = ca * rng.uniform(0.5, 0.9, k)
    fin_debt = np.maximum(assets * (0.25 - 0.12 * th + noise(0.05)), 0.0)
    caf = ebe * rng.uniform(0.6, 0.9, k) - 0.03 * fin_debt
    capital = _choice(rng, [1_000, 5_000, 7_500, 10_000, 37_000, 50_000, 100_000, 500_000],
                      [10, 15, 15, 15, 20, 10, 10, 5], n)[ci] * np.where(chunk.companies.size[ci] > 250, 10, 1)
    equity = capital + assets * (0.25 + 0.3 * np.tanh(h + 0.3) + noise(0.08))
    treso = assets * (0.10 + 0.08 * th + noise(0.04))
    stocks = ca * _G_STOCK[g] * rng.lognormal(0.0, 0.3, k)
    days_cli = np.clip(55 - 8 * th + noise(15), 0, None)
    days_fourn = np.clip(60 + 25 * dist + noise(15), 0, None)
    ace = ca * days_cli / 365 + stocks
    ache = ca * rng.uniform(0.005, 0.04, k)
    pce = ca * (1 - _G_VA[g]) * days_fourn / 365 + personnel * 0.15
    pche = ca * rng.uniform(0.005, 0.04, k)
    invest = 100 * np.clip(0.03 + 0.02 * th + noise(0.02), 0, None)

    values = {
        "mnt_af_ca": np.round(ca), "mnt_af_sig_ebe_ret": np.round(ebe),
        "mnt_af_sig_va_ret": np.round(va), "mnt_af_endettement_net": np.round(fin_debt - treso),
        "mnt_af_bfonc_bfr": np.round(ace - pce), "mnt_af_bfonc_tresorerie": np.round(treso),
        "mnt_af_bfonc_actif_circ_expl": np.round(ace),
        "mnt_af_bfonc_actif_circ_h_expl": np.round(ache),
        "mnt_af_bfonc_passif_circ_expl": np.round(pce),
        "mnt_af_bfonc_passif_circ_h_expl": np.round(pche),
        "nbr_af_jours_creance_cli": np.round(days_cli, 1),
        "nbr_af_jours_reglt_fourn": np.round(days_fourn, 1),
        "rto_af_endettement_a_terme": np.round(
            np.divide(equity, fin_debt, out=np.full(k, np.nan), where=fin_debt > 0), 4),
        "rto_af_rent_eco": np.round(100 * ebe / assets, 2),
        "rto_af_solidite_financiere": np.round(100 * equity / assets, 2),
        "rto_invest_ca": np.round(invest, 2), "rto_6": np.round(caf),
        "rto_56": np.round((ace - stocks + ache + np.maximum(treso, 0)) / (pce + pche), 3),
        "d_actf_stk_march_net": np.round(stocks), "d_cr_250_expl_salaire": np.round(salaires),
        "d_cr_252_expl_ch_soc": np.round(charges), "d_cr_260_expl_dt_syndic": np.round(syndic),
        "d_dvs_376_nbr_pers": np.rint(staff), "d_passf_120_k": capital.astype(float),
        "d_passf_142_k_propres": np.round(equity),
    }
    names = list(values)
    matrix = np.column_stack([values[c] for c in names])
    null_rate = np.full(len(names), 0.03)
    for col, rate in (("d_actf_stk_march_net", 0.15), ("d_cr_260_expl_dt_syndic", 0.2),
                      ("rto_invest_ca", 0.08)):
        null_rate[names.index(col)] = rate
    nulls = rng.random(matrix.shape) < null_rate
    simplified = (rng.random(k) < 0.2) & (chunk.companies.size[ci] < 20)
    simplified_cols = np.array([c.startswith(("mnt_af_bfonc", "nbr_af")) or c == "rto_56"
                                for c in names])
    nulls |= simplified[:, None] & simplified_cols[None, :]

    # Amendments: a later declaration of the same fiscal year, more complete than the first.
    amended = (rng.random(k) < 0.05) & (depot + 200 <= cal.end)
    first_nulls = nulls | (amended[:, None] & (rng.random(matrix.shape) < 0.25))
    depot2 = depot + rng.integers(20, 200, k)
    matrix2 = np.round(matrix * (1 + rng.normal(0.0, 0.01, matrix.shape)))
    default_ok = fin_ex.astype("datetime64[M]") + 5 <= cal.end.astype("datetime64[M]")
    depot_written = np.where((rng.random(k) < 0.04) & default_ok & ~amended,
                             np.datetime64("NaT", "D"), depot)

    a_idx = np.flatnonzero(amended)
    row_ci = np.concatenate([ci, ci[a_idx]])
    out = np.where(np.concatenate([first_nulls, nulls[a_idx]]), np.nan,
                   np.concatenate([matrix, matrix2[a_idx]]))
    fin_all = np.concatenate([fin_ex, fin_ex[a_idx]])
    depot_all = np.concatenate([depot_written, depot2[a_idx]])
    order = np.lexsort((np.concatenate([depot, depot2[a_idx]]), fin_all, row_ci))
    columns = {c: out[order, j] for j, c in enumerate(names)}
    columns.update({
        "siren": _ids(rng, siren_dict, row_ci[order], _STRIPPED_ID_SHARE["dgfip_bilans"]),
        "date_debut_exercice": np.concatenate([debut, debut[a_idx]])[order],
        "date_fin_exercice": fin_all[order], "date_depot": depot_all[order],
    })
    return _table("dgfip_bilans", columns)


# ----------------------------------------------------------------------------------------------
# Truth: each company's probability of failing within the horizon, given its latent state
# ----------------------------------------------------------------------------------------------

_TRUTH_NAME = "_truth"
_TRUTH_SCHEMA = pa.schema([("siren", pa.string()), ("periode", pa.date32()),
                           ("p_failure_18m", pa.float64()), ("failure_18m", pa.int32())])


@dataclass(frozen=True)
class _TruthRequest:
    """What the truth file covers.

    Attributes:
        months: Month indexes (of the window) of the prediction dates T.
        n_paths: Monte Carlo paths per company and date.
        macro: Window macro series, extended by the horizon past the end of the world.
        total_months: Months of the simulated paths (burn-in and window).
    """

    months: tuple[int, ...]
    n_paths: int
    macro: _Macro
    total_months: int


def _truth_request(cal, output_dir, truth_dir, truth_dates, truth_paths, settings):
    """Check the truth arguments; the :class:`_TruthRequest` (None when no truth is asked).

    Raises:
        ValueError: On a date that is not the first day of a month of the window after its
            first one, a truth directory inside the raw one, or only one of dir and dates.
    """
    truth_dir = None if truth_dir in (None, "") else truth_dir
    dates = [str(d).strip() for d in truth_dates if str(d).strip()]
    if truth_dir is None and not dates:
        return None
    if truth_dir is None or not dates:
        raise ValueError("truth_dir and truth_dates go together: give both or neither")
    raw, target = Path(output_dir).resolve(), Path(truth_dir).resolve()
    if target == raw or raw in target.parents:
        raise ValueError(f"truth_dir {truth_dir} must be outside the raw directory {output_dir}")
    if truth_paths < 1:
        raise ValueError(f"truth_paths must be positive, got {truth_paths}")
    months = set()
    for text in dates:
        try:
            day = np.datetime64(text, "D")
        except ValueError:
            raise ValueError(f"truth date {text!r} is not an ISO date (YYYY-MM-01)") from None
        m = int(cal.month_of(day))
        if day != cal.first_day(m) or not 1 <= m < cal.n:
            raise ValueError(f"truth date {text!r} must be the first day of a month from "
                             f"{cal.first_day(1)} to {cal.first_day(cal.n - 1)}")
        months.add(m)
    macro = _Macro.build(cal, _BURN_IN, settings.crisis_shift_months, TARGET_HORIZON_MONTHS)
    return _TruthRequest(tuple(sorted(months)), int(truth_paths), macro.window(_BURN_IN),
                         _BURN_IN + cal.n)


def _truth_table(rng, companies: _Companies, health: _Health, fates: _Fates, cal,
                 request: _TruthRequest) -> pa.Table:
    """Truth rows of a chunk: every company living at each date T.

    A company is living at T when it was created before T's month, has had no failure and
    no voluntary closure before T and no proceedings before the window. Companies outside the
    contract's scope (public bodies, schools, fewer than 10 employees ...) are included.

    Returns:
        ``siren`` (9 digits), ``periode`` (T), ``p_failure_18m`` (probability of a failure
        judgment in months T..T+17 given the latent state at the end of T-1) and
        ``failure_18m`` (the realised outcome, null when T + 18 months is after the end).
    """
    horizon = TARGET_HORIZON_MONTHS
    columns = {name: [] for name in _TRUTH_SCHEMA.names}
    for t0 in request.months:
        idx = np.flatnonzero((companies.birth <= t0) & (fates.fail_m >= t0) & (fates.closure_m >= t0)
                             & ~fates.old_proceeding)
        batches = [_truth_probability(rng, companies, health, idx[i:i + _TRUTH_BATCH], t0, request)
                   for i in range(0, len(idx), _TRUTH_BATCH)]
        known = cal.first_day(t0 + horizon) <= cal.end
        label = (fates.failed[idx] & (fates.fail_m[idx] < t0 + horizon)).astype(np.int32)
        columns["siren"].append(np.char.zfill(companies.siren[idx].astype(str), 9))
        columns["periode"].append(np.repeat(cal.first_day(t0), len(idx)))
        columns["p_failure_18m"].append(np.concatenate(batches) if batches else np.empty(0))
        columns["failure_18m"].append(np.ma.masked_array(label, mask=np.full(len(idx), not known)))
    arrays = [pa.array(np.concatenate(columns["siren"]).astype(object), pa.string()),
              pa.array(np.concatenate(columns["periode"]), pa.date32()),
              pa.array(np.concatenate(columns["p_failure_18m"]), pa.float64()),
              pa.array(np.ma.concatenate(columns["failure_18m"]), pa.int32())]
    return pa.Table.from_arrays(arrays, schema=_TRUTH_SCHEMA)


def _future_episodes(rng, health: _Health, idx, t0: int, request: _TruthRequest, shape):
    """Per slot, the episodes of the paths: ``(onset, duration, slope, active)`` arrays.

    Episodes begun by month T-1 are the company's own. A slot not begun yet starts in a given
    later month with the generator's onset probability, conditional on no start so far
    (uniform onsets: the same probability each month, continued past the end of the world).
    """
    parts = health.parts
    span = request.total_months + _EPISODE_LEAD
    per_month = min(1.0, _EPISODE_RATE * span) / span
    before = t0 + _BURN_IN + _EPISODE_LEAD  # onset months up to T-1
    rate = per_month / max(1.0 - per_month * before, 1e-12)
    out = []
    for j in range(_EPISODE_SLOTS):
        onset = parts["onset"][idx, j] - _BURN_IN
        begun = (parts["has"][idx, j] & (onset <= t0 - 1))[:, None]
        later = np.floor(rng.random(shape) / rate)
        new_duration = rng.integers(*_EPISODE_DURATION, shape)
        new_slope = rng.uniform(*_EPISODE_SLOPE, shape)
        out.append((np.where(begun, onset[:, None], t0 + later),
                    np.where(begun, parts["duration"][idx, j][:, None], new_duration),
                    np.where(begun, parts["slope"][idx, j][:, None], new_slope),
                    begun | (later < TARGET_HORIZON_MONTHS)))
    return out


def _truth_probability(rng, companies: _Companies, health: _Health, idx, t0: int,
                       request: _TruthRequest) -> np.ndarray:
    """Monte Carlo probability that companies ``idx`` fail in months T..T+17 (T = ``t0``).

    Paths continue the latent state at T-1 with the generator's own law: AR(1) noise, episodes
    (:func:`_future_episodes`), the macro factor and the sustained average the hazard sees.
    On each path the failure and closure draws are integrated exactly: a failure in month m
    needs no failure nor closure before m and no closure in m (a closure wins a tie).
    """
    shape = (len(idx), request.n_paths)
    parts, macro = health.parts, request.macro
    x = np.repeat(parts["x"][idx, _BURN_IN + t0 - 1][:, None], request.n_paths, axis=1)
    sustained = np.repeat(health.sustained[idx, t0 - 1][:, None], request.n_paths, axis=1)
    episodes = _future_episodes(rng, health, idx, t0, request, shape)
    mu, beta = parts["mu"][idx, None], health.beta[idx, None]
    size, closable_from = companies.size[idx], companies.birth[idx, None] + 3
    alive, p = np.ones(shape), np.zeros(shape)
    for m in range(t0, t0 + TARGET_HORIZON_MONTHS):
        x = _AR_PHI * x + rng.normal(0.0, _AR_SIGMA, shape)
        z = np.zeros(shape)
        for onset, duration, slope, active in episodes:
            z -= active * _episode_depth(m - onset, duration, slope)
        h = mu + x + z + beta * macro.struct[m]
        sustained = (1 - _HAZARD_MEMORY) * sustained + _HAZARD_MEMORY * h
        failure = _hazard(companies, idx, sustained, np.full(shape[1], m),
                          np.full(shape[1], macro.hazard[m]))
        closure = _closure(size, h) * (m >= closable_from)
        p += alive * failure * (1 - closure)
        alive *= (1 - failure) * (1 - closure)
    return p.mean(axis=1)


def _write_truth(truth_dir: Path, tables: list[pa.Table]) -> int:
    """Write ``truth_dir/truth.parquet`` (replaced atomically), rows sorted by date and siren.

    Returns:
        The number of rows written.
    """
    table = pa.concat_tables(tables) if tables else _TRUTH_SCHEMA.empty_table()
    table = table.sort_by([("periode", "ascending"), ("siren", "ascending")])
    truth_dir.mkdir(parents=True, exist_ok=True)
    staging = truth_dir / f".{TRUTH_FILE}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        pq.write_table(table, staging)
        os.replace(staging, truth_dir / TRUTH_FILE)
    finally:
        staging.unlink(missing_ok=True)
    return table.num_rows


# ----------------------------------------------------------------------------------------------
# Check: share of in-scope company-months that fail within the horizon
# ----------------------------------------------------------------------------------------------


def _read(raw_dir: Path, name: str):
    """A raw table as strings (CSV or single-file parquet), nulls as None."""
    csv = raw_dir / f"{name}.csv"
    if csv.exists():
        return pd.read_csv(csv, dtype=str, keep_default_na=False, na_values=[""])
    frame = pd.read_parquet(raw_dir / f"{name}.parquet")
    out = frame.astype(str).where(frame.notna(), None)
    for col in frame.columns[frame.dtypes == bool]:
        out[col] = frame[col].map({True: "true", False: "false"})
    return out


def _month_index(dates, first: np.datetime64) -> np.ndarray:
    """Month index of ISO date strings relative to the month ``first`` (null -> -10**6)."""
    d = np.array(dates, dtype="datetime64[D]")
    out = (d.astype("datetime64[M]") - first).astype(np.int64)
    return np.where(np.isnat(d), -10**6, out)


def _measure_positive_rate(raw_dir: str | Path, first_periode: str | None = None,
                           last_periode: str | None = None) -> dict[str, float]:
    """Share of in-scope company-months with a failure within 18 months, per the contract.

    An independent (NumPy, no Spark) reading of :data:`sf_ml.contract.SCOPE` and the target, so
    the generator can check its rate without building the panel; a test holds it equal to
    :func:`sf_ml.panel.build_panel`'s labelled rows.

    Args:
        raw_dir: A raw directory (as written by :func:`generate_world`).
        first_periode: First periode counted (ISO date; default: the first headcount month).
        last_periode: Last periode counted (default: the last whose horizon the judgments cover).

    Returns:
        ``{"rate", "positives", "samples"}`` over the months whose horizon the judgments cover.
    """
    raw_dir = Path(raw_dir)
    eff = _read(raw_dir, "urssaf_effectif")
    periode = np.array(eff["periode"], dtype="datetime64[D]")
    first = periode.min().astype("datetime64[M]")
    m_idx = _month_index(periode, first)
    sirens, s_idx = np.unique(eff["siren"].str.zfill(9).to_numpy(), return_inverse=True)
    n, months = len(sirens), int(m_idx.max()) + 2
    grid = np.full((n, months), -1.0)
    grid[s_idx, m_idx] = eff["effectif"].astype(float).to_numpy()
    cs = np.concatenate([np.zeros((n, 1)), np.cumsum(grid >= 0, axis=1)], axis=1)
    t = np.arange(months)
    recent = (cs[:, t] - cs[:, np.maximum(t - SCOPE.recent_months, 0)]) > 0
    largest = pd.DataFrame(grid.T).rolling(SCOPE.headcount_lookback_months, min_periods=1).max().to_numpy()
    largest = np.vstack([np.full((1, n), -1.0), largest[:-1]]).T  # over the months before T
    in_scope = recent & (largest >= SCOPE.min_headcount)

    etab = _read(raw_dir, "sirene_etablissements")
    head = etab[etab["etablissementSiege"] == "true"]
    head = head.set_index(head["siren"].str.zfill(9))
    division = head["activitePrincipaleEtablissement"].str[:2].reindex(sirens)
    ul = _read(raw_dir, "sirene_unites_legales")
    category = ul.set_index(ul["siren"].str.zfill(9))["categorieJuridiqueUniteLegale"]
    ok = (~division.isin(SCOPE.excluded_naf_divisions).to_numpy()
          & ~category.reindex(sirens).isin(SCOPE.excluded_legal_categories).to_numpy())
    in_scope &= ok[:, None]

    hist = _read(raw_dir, "sirene_etablissements_historique")
    position = pd.Series(np.arange(n), index=head["siret"].str.zfill(14).reindex(sirens).to_numpy())
    hist = hist[hist["siret"].str.zfill(14).isin(position.index)]
    covered = np.zeros(n, dtype=bool)
    covered[position[hist["siret"].str.zfill(14)].to_numpy()] = True
    active = hist[hist["etatAdministratifEtablissement"] == "A"]
    rows = position[active["siret"].str.zfill(14)].to_numpy()
    debut = np.array(active["dateDebut"], dtype="datetime64[D]")
    fin = np.array(active["dateFin"].fillna("NaT"), dtype="datetime64[D]")
    mid_month = debut != debut.astype("datetime64[M]").astype("datetime64[D]")
    lo = _month_index(debut, first) + mid_month
    hi = np.where(np.isnat(fin), months, _month_index(fin - 1, first) + 1)
    lo, hi = np.clip(lo, 0, months), np.clip(hi, 0, months)
    diff = np.zeros((n, months + 1))
    np.add.at(diff, (rows, lo), 1)
    np.add.at(diff, (rows, np.maximum(hi, lo)), -1)
    head_active = np.cumsum(diff, axis=1)[:, :months] > 0
    in_scope &= head_active | ~covered[:, None]

    judgments = _read(raw_dir, "procedures_collectives")
    dates = np.array(judgments["date_jugement"], dtype="datetime64[D]")
    failures = judgments["nature_jugement"].isin(FAILURE_NATURES).to_numpy()
    failed_siren = judgments["siren"].str.zfill(9).to_numpy()[failures]
    fail = pd.Series(dates[failures]).groupby(failed_siren).min()
    fail_date = fail.reindex(sirens).to_numpy(dtype="datetime64[D]")[:, None]
    periods = (first + t).astype("datetime64[D]")[None, :]
    horizon = (first + t + TARGET_HORIZON_MONTHS).astype("datetime64[D]")[None, :]
    failed_before = ~np.isnat(fail_date) & (fail_date < periods)
    target = ~np.isnat(fail_date) & (fail_date >= periods) & (fail_date < horizon)
    usable = in_scope & ~failed_before & (horizon <= dates.max())
    if first_periode is not None:
        usable &= periods >= np.datetime64(first_periode, "D")
    if last_periode is not None:
        usable &= periods <= np.datetime64(last_periode, "D")
    samples = int(usable.sum())
    positives = int((target & usable).sum())
    return {"rate": positives / max(samples, 1), "positives": positives, "samples": samples}
