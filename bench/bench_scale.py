"""Benchmark the whole pipeline at France scale: wall time and peak memory of every step, and its growth.

For each ``--companies`` N, in a fresh directory ``WORKDIR/N`` with its own MLflow store
(``sqlite:///WORKDIR/N/mlflow.db``, artifacts in ``WORKDIR/N/mlruns``), the stages run one after
the other, each in its own process (``python -m sf_ml.cli STAGE``, as ``main`` runs them), so that
each step pays and shows its own driver JVM:

- generate: ``sf_ml.generate.generate_world``, N companies over ``--start``..``--end`` (CSV);
- ingest: ``sf_ml.ingest.ingest``, validated typed tables and their manifest;
- build_features: ``sf_ml.features.build_features`` of the default config from the typed directory;
- train: the default config (``sf_ml.config.DEFAULT_CONFIG``) with ``sf_ml.train.train_model``;
- tune: ``--trials`` trials of ``sf_ml.tune.tune_model``, the best registered as challenger;
- promote: ``sf_ml.promote.promote`` of the challenger (no champion yet: the gate's lift floor);
- score: ``sf_ml.score.score_companies`` of ``--prediction-date`` with explanations, from the
  champion (from the challenger, said so, if the gate refused it).

Memory: every 0.5 s the step's process tree is read from ``/proc`` (each process's parent in
``/proc/PID/stat``). Peak RSS is the kernel's high-water mark ``VmHWM`` of ``/proc/PID/status``
(exact, except growth in the last half second of a process): ``JVM GB`` of the driver JVM (the
largest ``java`` process of the tree; local mode runs one), ``Py GB`` of the step's Python
process; ``tree GB`` is the largest sum of the ``VmRSS`` of all the tree's processes at one
sample (JVM, Python, the Python workers Spark forks, launchers): what the machine held at once,
which can be less than ``JVM GB + Py GB`` when their peaks do not coincide. Times are wall times
of the whole process (interpreter and JVM start-up included, ~10 s).

Prints one markdown table (step x N: seconds, peak JVM RSS, peak Python RSS, peak tree RSS; a
``pipeline`` row with the total time and the largest peaks), then the growth of every step from
the first N to the last (seconds and tree peak, target <= 1.1 x the ratio of companies: 4.4x
from 50,000 to 200,000), then whether the issue's targets hold at the last N (they are stated
for 200,000 companies): ingest + build_features <= 20 min, peak memory <= 12 GB, train <= 20 min,
score with explanations <= 3 min. Also written as ``scale.md`` under ``--workdir``; each step's
output is in ``WORKDIR/N/logs/STEP.log``. What a 3-node cluster run would need is not computed
here. Asserts nothing; a failing step is reported and ends that N.

Usage: python bench/bench_scale.py [--companies 50000,200000] [--start 2016-01-01] [--end 2025-12-01]
       [--train-start START] [--train-end END - 42 months] [--prediction-date END] [--trials 8]
       [--seed 1] [--workdir /tmp/sf_ml_bench_scale]
"""

from __future__ import annotations

import argparse
import calendar
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_quality  # noqa: E402  (bench/ is not a package: months_before, markdown)

STEPS = ("generate", "ingest", "build_features", "train", "tune", "promote", "score")
MODEL_NAME = "sf_failure"
SAMPLE_SECONDS = 0.5
GB = 1024 ** 2  # /proc reports kB
NAN = float("nan")  # not measured (a step failed)


def _children_by_parent() -> dict[int, list[int]]:
    """Every process's children, from ``/proc/PID/stat`` (the parent is the 2nd field after the name)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # gone meanwhile
            continue
        parent = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(parent, []).append(int(entry))
    return children


def _status_kb(pid: int) -> tuple[str, int, int] | None:
    """(name, VmRSS kB, VmHWM kB) of a live process, None once it is gone."""
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    values = {line.split(":")[0]: line.split()[1] for line in lines if line.startswith(("VmRSS:", "VmHWM:"))}
    return name, int(values.get("VmRSS", 0)), int(values.get("VmHWM", 0))


@dataclass
class Peaks:
    """Peak memory of one process tree (kB), updated by :meth:`sample`."""

    root: int
    jvm: int = 0
    python: int = 0
    tree: int = 0
    seen: set[int] = field(default_factory=set)

    def sample(self) -> None:
        children, pending, total = _children_by_parent(), [self.root], 0
        while pending:
            pid = pending.pop()
            pending += children.get(pid, [])
            status = _status_kb(pid)
            if status is None:
                continue
            name, rss, hwm = status
            self.seen.add(pid)
            total += rss
            if pid == self.root:
                self.python = max(self.python, hwm)
            elif name == "java":
                self.jvm = max(self.jvm, hwm)
        self.tree = max(self.tree, total)


@dataclass
class StepResult:
    step: str
    seconds: float
    jvm_gb: float
    python_gb: float
    tree_gb: float
    ok: bool


def run_step(step: str, arguments: list[str], work: Path, env: dict[str, str]) -> StepResult:
    """Run ``sf-ml STEP ARGUMENTS`` in its own process in ``work``, sampling its memory until it ends."""
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "sf_ml.cli", step.replace("_", "-"), *arguments]
    with open(logs / f"{step}.log", "w") as log:
        log.write(" ".join(command) + "\n")
        log.flush()
        began = time.monotonic()
        process = subprocess.Popen(command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
        peaks = Peaks(process.pid)
        while process.poll() is None:
            peaks.sample()
            time.sleep(SAMPLE_SECONDS)
        seconds = time.monotonic() - began
    result = StepResult(step, seconds, peaks.jvm / GB, peaks.python / GB, peaks.tree / GB, process.returncode == 0)
    state = "" if result.ok else f" FAILED (exit {process.returncode}, see {logs / f'{step}.log'})"
    print(f"  {step:15s} {seconds:7.1f} s, JVM {result.jvm_gb:.2f} GB, Python {result.python_gb:.2f} GB, "
          f"tree {result.tree_gb:.2f} GB{state}", flush=True)
    if not result.ok:
        print("    " + "\n    ".join((logs / f"{step}.log").read_text().splitlines()[-15:]))
    return result


def scored_model(tracking_uri: str) -> str:
    """The champion's URI after promotion, or the challenger's (said so) when the gate refused it."""
    import mlflow

    from sf_ml.registry import CHALLENGER, CHAMPION, current_version

    mlflow.set_tracking_uri(tracking_uri)
    if current_version(MODEL_NAME, CHAMPION) is not None:
        return f"models:/{MODEL_NAME}@{CHAMPION}"
    print(f"  (the gate refused the challenger: no {CHAMPION}, scoring models:/{MODEL_NAME}@{CHALLENGER})")
    return f"models:/{MODEL_NAME}@{CHALLENGER}"


def pipeline(companies: int, args, root: Path) -> list[StepResult]:
    """Every step for ``companies`` companies, in a fresh ``root/companies`` with its own store."""
    from sf_ml.config import DEFAULT_CONFIG

    work = root / str(companies)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_RUN")}
    env.update(MLFLOW_TRACKING_URI=tracking_uri, MLFLOW_EXPERIMENT_NAME="bench-scale")
    raw, typed, features, scores = (str(work / name) for name in ("raw", "typed", "features", "scores"))
    end = dt.date.fromisoformat(args.end)
    last_day = end.replace(day=calendar.monthrange(end.year, end.month)[1]).isoformat()
    training = ["--features-dir", features, "--config", DEFAULT_CONFIG, "--train-start", args.train_start,
                "--train-end", args.train_end, "--model-name", MODEL_NAME]
    arguments = {
        "generate": ["--output-dir", raw, "--n-companies", str(companies), "--start", args.start,
                     "--end", last_day, "--seed", str(args.seed)],
        "ingest": ["--raw-dir", raw, "--output-dir", typed],
        "build_features": ["--raw-dir", typed, "--output-dir", features, "--config", DEFAULT_CONFIG,
                           "--start", args.start, "--end", args.end],
        "train": training,
        "tune": [*training, "--max-evals", str(args.trials)],
        "promote": ["--model-name", MODEL_NAME, "--features-dir", features],
        "score": ["--prediction-date", args.prediction_date, "--features-dir", features, "--output-dir", scores],
    }
    print(f"[{companies} companies] {DEFAULT_CONFIG}, {args.start}..{args.end}, train {args.train_start}.."
          f"{args.train_end}, {args.trials} trials, score {args.prediction_date}; store {tracking_uri}", flush=True)
    results = []
    for step in STEPS:
        extra = ["--model-uri", scored_model(tracking_uri)] if step == "score" else []
        results.append(run_step(step, arguments[step] + extra, work, env))
        if not results[-1].ok:
            break
    return results


def scale_table(measured: dict[int, list[StepResult]]):
    """One row per step (and ``pipeline``), for each N its seconds and peaks, then the growth."""
    import pandas as pd

    sizes = list(measured)
    rows = []
    for step in [*STEPS, "pipeline"]:
        row = {"step": step}
        for size in sizes:
            done = [r for r in measured[size] if r.ok and (step == "pipeline" or r.step == step)]
            measured_here = bool(done) and (step != "pipeline" or len(done) == len(STEPS))
            row[f"{size:,} s"] = round(sum(r.seconds for r in done), 1) if measured_here else NAN
            for column, attribute in (("JVM GB", "jvm_gb"), ("Py GB", "python_gb"), ("tree GB", "tree_gb")):
                row[f"{size:,} {column}"] = round(max(getattr(r, attribute) for r in done), 2) if measured_here else NAN
        if len(sizes) > 1:
            for column in ("s", "tree GB"):
                first, last = row[f"{sizes[0]:,} {column}"], row[f"{sizes[-1]:,} {column}"]
                row[f"growth {column}"] = round(last / first, 2) if first else NAN
        rows.append(row)
    return pd.DataFrame(rows)


def verdict(ok: bool) -> str:
    return "holds" if ok else "MISSES"


def targets(table, sizes: list[int]) -> list[str]:
    """The issue's targets checked at the last N (stated for 200,000 companies) and on the growth."""
    by_step = table.set_index("step")
    last = sizes[-1]
    seconds = by_step[f"{last:,} s"]
    note = "" if last == 200_000 else f" (targets are for 200,000 companies: measured at {last:,}, indicative)"
    lines = [f"targets at {last:,} companies{note}:"]
    checks = [
        ("ingest + build_features", (seconds["ingest"] + seconds["build_features"]) / 60, 20, "min"),
        ("peak memory (largest tree peak of any step)", by_step[f"{last:,} tree GB"].max(), 12, "GB"),
        ("train the default config", seconds["train"] / 60, 20, "min"),
        ("score a month with explanations", seconds["score"] / 60, 3, "min"),
    ]
    for name, value, target, unit in checks:
        lines.append(f"- {name}: {value:.2f} {unit} (target <= {target} {unit}): "
                     + ("not measured" if value != value else verdict(value <= target)))
    if len(sizes) > 1:
        limit = 1.1 * sizes[-1] / sizes[0]
        steps = by_step.drop(index="pipeline")
        for column in ("s", "tree GB"):
            growth = steps[f"growth {column}"].dropna()
            worst = growth.idxmax() if len(growth) else None
            lines.append(f"- growth of {column} from {sizes[0]:,} to {last:,} ({sizes[-1] / sizes[0]:.1f}x the "
                         f"companies), target <= {limit:.1f}x: "
                         + (f"largest {growth.max():.2f}x ({worst}): {verdict(growth.max() <= limit)}"
                            if worst else "not measured"))
    lines.append("- what a 3-node cluster run would need, and which step limits: not computed here")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", default="50000,200000", help="comma-separated numbers of companies")
    parser.add_argument("--start", default="2016-01-01", help="first month of the world and of the panel")
    parser.add_argument("--end", default="2025-12-01", help="last month of the world and of the panel")
    parser.add_argument("--train-start", default=None, help="first training periode (default: --start)")
    parser.add_argument("--train-end", default=None,
                        help="last training periode (default: 42 months before --end, as main's 2022-06-01)")
    parser.add_argument("--prediction-date", default=None, help="month scored (default: --end)")
    parser.add_argument("--trials", type=int, default=8, help="tuning trials")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated worlds")
    parser.add_argument("--workdir", default="/tmp/sf_ml_bench_scale")
    args = parser.parse_args()
    sizes = [int(part) for part in args.companies.split(",") if part.strip()]
    args.train_start = args.train_start or args.start
    args.train_end = args.train_end or bench_quality.months_before(dt.date.fromisoformat(args.end), 42).isoformat()
    args.prediction_date = args.prediction_date or args.end

    root = Path(args.workdir).resolve()
    measured = {size: pipeline(size, args, root) for size in sizes}
    table = scale_table(measured)
    text = bench_quality.markdown(table) + "\n" + "\n".join(targets(table, sizes)) + "\n"
    (root / "scale.md").write_text(text)
    print(f"\nwall time and peak RSS per step, {args.start}..{args.end}, {os.cpu_count()} cores "
          f"(also in {root / 'scale.md'}):\n\n{text}")


if __name__ == "__main__":
    main()
