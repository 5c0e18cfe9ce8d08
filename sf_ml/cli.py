"""The ``sf-ml`` command line: one sub-command per stage, each a thin wrapper that parses
parameters, opens the stage's MLflow run and calls one function of one module.

Each command imports its stage's module when it runs, so that ``sf-ml --help`` and a mistyped
option answer at once, without loading Spark or MLflow."""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys

import click

from sf_ml import server as server_defaults  # standard library only: nothing heavy at import
from sf_ml.config import DEFAULT_CONFIG


def _fail(error: Exception) -> None:
    click.echo(f"error: {error}", err=True)
    sys.exit(2)


# Libraries whose INFO lines are about their internals, not the stage: WARNING and above only.
QUIET_LOGGERS = ("py4j", "alembic", "urllib3", "XGBoost-PySpark", "mlflow")


@click.group()
@click.option("--log-level", default="INFO", show_default=True,
              help="Level of the project's lines (one per phase); Spark's own: SF_ML_SPARK_LOG_LEVEL.")
def cli(log_level: str) -> None:
    """sf_ml: predict French companies' collective proceedings within 18 months."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S")
    quiet = logging.DEBUG if log_level.upper() == "DEBUG" else logging.WARNING
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    # MLflow configures its logger when imported (later, by the stage): tell it through its variable.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", logging.getLevelName(quiet))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


# Input directories must exist (MLproject declares them `type: path`); outputs are created.
EXISTING_DIR = click.Path(exists=True, file_okay=False)


def _check_iso_date(text: str, first_of_month: bool = False) -> None:
    """Raise click.BadParameter unless ``text`` is an ISO date (YYYY-MM-DD), a first of month if asked."""
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO date (YYYY-MM-DD)") from None
    if len(text) != 10:
        raise click.BadParameter(f"{text!r} is not an ISO date (YYYY-MM-DD)")
    if first_of_month and day.day != 1:
        raise click.BadParameter(f"{text!r} is not the first day of a month (YYYY-MM-01)")


def _iso_date(ctx, param, value: str | None) -> str | None:
    """An ISO date kept as the string the stages take, checked (click callback; empty allowed)."""
    if value and value.strip():
        _check_iso_date(value.strip())
        return value.strip()
    return value


def _split_dates(value: str | None) -> tuple[str, ...]:
    """The non-empty parts of a comma-separated list, stripped."""
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _iso_date_list(ctx, param, value: str) -> str:
    """Comma-separated ISO dates, each checked, kept as the string the stage takes (click callback)."""
    for text in _split_dates(value):
        _check_iso_date(text)
    return value


def _optional_int(ctx, param, value: str) -> str:
    """An integer or empty (the config's value), kept as given (click callback)."""
    if value.strip():
        try:
            int(value)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not an integer (or empty for the config's)") from None
    return value


def _truth_dates(ctx, param, value: str) -> tuple[str, ...]:
    """Comma-separated first-of-month ISO dates, checked (click callback)."""
    dates = _split_dates(value)
    for text in dates:
        _check_iso_date(text, first_of_month=True)
    return dates


@cli.command()
@click.option("--output-dir", required=True, help="Directory the raw tables are written to.")
@click.option("--n-companies", type=int, default=5000, show_default=True, help="Number of companies (sirens).")
@click.option("--start", callback=_iso_date, default="2014-01-01", show_default=True, help="First month of the world (ISO date).")
@click.option("--end", callback=_iso_date, default="2025-12-31", show_default=True, help="Last day of the world (ISO date).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed; same seed, same files.")
@click.option("--file-format", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True,
              help="Format of the raw tables.")
@click.option("--settings", default="baseline", show_default=True,
              type=click.Choice(["baseline", "late_crisis", "statement_driven"]),
              help="Preset of the world's law: baseline; late_crisis (crisis 24 months later); "
                   "statement_driven (debts follow health less, financial statements more).")
@click.option("--truth-dir", default="", help="Directory (outside --output-dir) receiving truth.parquet: each "
              "living company's true 18-month failure probability at each --truth-dates (default: none).")
@click.option("--truth-dates", default="", callback=_truth_dates,
              help="Comma-separated prediction dates of the truth file, first days of months "
                   "(e.g. 2022-01-01,2023-01-01).")
@click.option("--truth-paths", type=int, default=200, show_default=True,
              help="Monte Carlo paths per company and date of the truth file.")
def generate(output_dir: str, n_companies: int, start: str, end: str, seed: int, file_format: str,
             settings: str, truth_dir: str, truth_dates: tuple[str, ...], truth_paths: int) -> None:
    """Write a synthetic raw directory that follows the data contract (and, optionally, its truth)."""
    import mlflow

    from sf_ml.generate import generate_world
    from sf_ml.tracking import stage_run

    truth_dir = truth_dir.strip() or None
    if (truth_dir is None) != (not truth_dates):
        _fail(click.UsageError("--truth-dir and --truth-dates go together: give both or neither"))
    params = dict(output_dir=output_dir, n_companies=n_companies, start=start, end=end, seed=seed,
                  file_format=file_format, settings=settings, truth_dir=truth_dir or "",
                  truth_dates=",".join(truth_dates), truth_paths=truth_paths)
    with stage_run("generate", params):
        try:
            counts = generate_world(output_dir, n_companies=n_companies, start=start, end=end, seed=seed,
                                    file_format=file_format, truth_dir=truth_dir, truth_dates=truth_dates,
                                    settings=settings, truth_paths=truth_paths)
        except ValueError as error:
            _fail(error)
        mlflow.log_metrics({f"rows.{table}": n for table, n in counts.items()})
    click.echo(f"world written to {output_dir}: " + ", ".join(f"{t}={n}" for t, n in counts.items()))


@cli.command()
@click.option("--raw-dir", required=True, type=EXISTING_DIR, help="Raw directory following the data contract.")
@click.option("--output-dir", required=True, help="Directory the typed parquet tables are written to.")
def ingest(raw_dir: str, output_dir: str) -> None:
    """Validate a raw directory and write its tables as typed parquet (nothing on bad input)."""
    from sf_ml.ingest import RawDataError, ingest as ingest_raw
    from sf_ml.tracking import stage_run

    with stage_run("ingest", dict(raw_dir=raw_dir, output_dir=output_dir)):
        try:
            counts = ingest_raw(raw_dir, output_dir)
        except RawDataError as error:
            _fail(error)
    click.echo(f"typed tables written to {output_dir}: " + ", ".join(f"{t}={n}" for t, n in counts.items()))


@cli.command("build-features")
@click.option("--raw-dir", required=True, type=EXISTING_DIR,
              help="Raw directory following the data contract, or a typed directory written by ingest.")
@click.option("--output-dir", required=True, help="Features directory (parquet partitioned by periode).")
@click.option("--config", default=DEFAULT_CONFIG, show_default=True, help="Experiment config (name or path).")
@click.option("--start", callback=_iso_date, required=True, help="First periode to build (ISO date, first of a month).")
@click.option("--end", callback=_iso_date, required=True, help="Last periode to build (ISO date).")
@click.option("--labels-until", callback=_iso_date, default=None, help="Date the judgments are known to (default: latest judgment).")
@click.option("--override", "overrides", multiple=True, help="Config override section.key=value (repeatable).")
def build_features(raw_dir: str, output_dir: str, config: str, start: str, end: str,
                   labels_until: str | None, overrides: tuple[str, ...]) -> None:
    """Build the point-in-time siren x month panel with features and target."""
    from sf_ml.config import load_config
    from sf_ml.features import build_features as build
    from sf_ml.ingest import RawDataError
    from sf_ml.manifest import TypedDataError
    from sf_ml.tracking import stage_run

    labels_until = labels_until or None
    cfg = load_config(config, list(overrides))
    params = dict(raw_dir=raw_dir, output_dir=output_dir, config=config, start=start, end=end,
                  labels_until=labels_until, overrides=";".join(overrides))
    with stage_run("build_features", params, cfg.to_dict()):
        try:
            summary = build(raw_dir, output_dir, cfg, start=start, end=end, labels_until=labels_until)
        except (RawDataError, TypedDataError) as error:
            _fail(error)
    click.echo(f"features written to {output_dir}: {summary['rows']} rows, "
               f"positive rate {summary['positive_rate']:.4f}")


@cli.command()
@click.option("--features-dir", required=True, type=EXISTING_DIR, help="Features directory (parquet partitioned by periode).")
@click.option("--config", default=DEFAULT_CONFIG, show_default=True, help="Experiment config (name or path).")
@click.option("--train-start", callback=_iso_date, required=True, help="First training periode (ISO date).")
@click.option("--train-end", callback=_iso_date, required=True, help="Last training periode (ISO date); later ones are out-of-time.")
@click.option("--model-name", default="sf_failure", show_default=True, help="Registered model name.")
@click.option("--seed", default="", callback=_optional_int, help="Seed of split, resampling and model (default: the config's).")
@click.option("--override", "overrides", multiple=True, help="Config override section.key=value (repeatable).")
@click.option("--no-register", is_flag=True, help="Log the model without registering a version.")
def train(features_dir: str, config: str, train_start: str, train_end: str, model_name: str, seed: str,
          overrides: tuple[str, ...], no_register: bool) -> None:
    """Train, evaluate and register (alias challenger) a failure model."""
    from sf_ml.config import load_config
    from sf_ml.tracking import stage_run
    from sf_ml.train import TrainingDataError, train_model

    cfg = load_config(config, list(overrides))
    seed_value = int(seed) if str(seed).strip() else None
    params = dict(features_dir=features_dir, config=config, train_start=train_start, train_end=train_end,
                  model_name=model_name, seed=seed, overrides=";".join(overrides), register=not no_register,
                  resolved_seed=cfg.seed if seed_value is None else seed_value)
    with stage_run("train", params, cfg.to_dict()):
        try:
            summary = train_model(features_dir, cfg, train_start, train_end, model_name=model_name,
                                  seed=seed_value, register=not no_register)
        except TrainingDataError as error:
            _fail(error)
    metrics = summary["metrics"]
    version = f"{model_name} version {summary['version']} (alias challenger)" if summary["version"] else "not registered"
    click.echo(
        f"run {summary['run_id']}: {version}; average precision test {metrics['test_average_precision']:.3f}, "
        f"out-of-time {metrics.get('oot_average_precision', float('nan')):.3f}; thresholds "
        + ", ".join(f"{level}={value:.3f}" for level, value in summary["thresholds"].items())
    )

@cli.command()
@click.option("--features-dir", required=True, type=EXISTING_DIR, help="Features directory (parquet partitioned by periode).")
@click.option("--config", default=DEFAULT_CONFIG, show_default=True, help="Experiment config (name or path).")
@click.option("--train-start", callback=_iso_date, required=True, help="First training periode (ISO date).")
@click.option("--train-end", callback=_iso_date, required=True, help="Last training periode (ISO date); later ones are out-of-time.")
@click.option("--max-evals", type=int, default=20, show_default=True, help="Number of trials.")
@click.option("--parallelism", type=int, default=1, show_default=True, help="Trials evaluated at the same time.")
@click.option("--model-name", default="sf_failure", show_default=True, help="Registered model name.")
@click.option("--seed", default="", callback=_optional_int, help="Seed of split, resampling, models and search (default: the config's).")
@click.option("--override", "overrides", multiple=True, help="Config override section.key=value (repeatable).")
def tune(features_dir: str, config: str, train_start: str, train_end: str, max_evals: int, parallelism: int,
         model_name: str, seed: str, overrides: tuple[str, ...]) -> None:
    """Search the config's search space (hyperopt TPE), register the best model as challenger."""
    from sf_ml.config import load_config
    from sf_ml.tracking import stage_run
    from sf_ml.train import TrainingDataError
    from sf_ml.tune import tune_model

    cfg = load_config(config, list(overrides))
    seed_value = int(seed) if str(seed).strip() else None
    params = dict(features_dir=features_dir, config=config, train_start=train_start, train_end=train_end,
                  max_evals=max_evals, parallelism=parallelism, model_name=model_name, seed=seed,
                  overrides=";".join(overrides))
    with stage_run("tune", params, cfg.to_dict()):
        try:
            summary = tune_model(features_dir, cfg, train_start, train_end, max_evals=max_evals,
                                 parallelism=parallelism, model_name=model_name, seed=seed_value)
        except TrainingDataError as error:
            _fail(error)
    click.echo(f"best trial {summary['best_trial']} {summary['best_params']}: {model_name} version "
               f"{summary['version']} (alias challenger), out-of-time average precision "
               f"{summary['metrics'].get('oot_average_precision', float('nan')):.3f}")


@cli.command()
@click.option("--features-dir", required=True, type=EXISTING_DIR, help="Features directory (parquet partitioned by periode).")
@click.option("--config", default=DEFAULT_CONFIG, show_default=True, help="Experiment config (name or path).")
@click.option("--prediction-dates", required=True, callback=_iso_date_list, help="Comma-separated prediction dates (ISO).")
@click.option("--train-start", callback=_iso_date, default="", help="First training periode (default: the panel's first).")
@click.option("--seed", default="", callback=_optional_int, help="Seed of split, resampling and models (default: the config's).")
@click.option("--override", "overrides", multiple=True, help="Config override section.key=value (repeatable).")
def backtest(features_dir: str, config: str, prediction_dates: str, train_start: str, seed: str,
             overrides: tuple[str, ...]) -> None:
    """For each date T: train on outcomes known at T, predict at T, evaluate on realised outcomes."""
    from sf_ml.backtest import backtest as run_backtest
    from sf_ml.config import load_config
    from sf_ml.tracking import stage_run
    from sf_ml.train import TrainingDataError

    cfg = load_config(config, list(overrides))
    seed_value = int(seed) if str(seed).strip() else None
    params = dict(features_dir=features_dir, config=config, prediction_dates=prediction_dates,
                  train_start=train_start, seed=seed, overrides=";".join(overrides))
    with stage_run("backtest", params, cfg.to_dict()):
        try:
            table = run_backtest(features_dir, cfg, prediction_dates, train_start=train_start or None,
                                 seed=seed_value)
        except (TrainingDataError, ValueError) as error:
            _fail(error)
    click.echo(table[["prediction_date", "rows", "positive_rate", "average_precision", "roc_auc"]].to_string(index=False))


@cli.command()
@click.option("--model-name", default="sf_failure", show_default=True, help="Registered model name.")
@click.option("--candidate", default="challenger", show_default=True, help="Candidate alias or version number.")
@click.option("--features-dir", required=True, type=EXISTING_DIR, help="Features panel holding the evaluation periodes.")
@click.option("--dry-run", type=click.BOOL, default=False, show_default=True,
              help="true: evaluate and record the decision without moving the alias.")
@click.option("--eval-start", callback=_iso_date, default="", help="First evaluation periode (default: after both training windows).")
@click.option("--eval-end", callback=_iso_date, default="", help="Last evaluation periode (default: last labelled periode).")
def promote(model_name: str, candidate: str, features_dir: str, dry_run: bool, eval_start: str, eval_end: str) -> None:
    """Compare candidate and champion on one evaluation set; move alias champion if the gate passes."""
    from sf_ml.promote import format_record, promote as run_promote
    from sf_ml.tracking import stage_run

    params = dict(model_name=model_name, candidate=candidate, features_dir=features_dir, dry_run=dry_run,
                  eval_start=eval_start, eval_end=eval_end)
    with stage_run("promote", params):
        try:
            record = run_promote(model_name, candidate, features_dir, dry_run=dry_run,
                                 eval_start=eval_start or None, eval_end=eval_end or None)
        except ValueError as error:
            _fail(error)
    click.echo(format_record(record))


@cli.command()
@click.option("--model-uri", default="models:/sf_failure@champion", show_default=True,
              help="Registered model: models:/<name>@<alias> or models:/<name>/<version>.")
@click.option("--prediction-date", required=True, type=click.DateTime(formats=["%Y-%m-%d"]),
              help="Date scored (ISO, YYYY-MM-DD); its month's first day is the periode.")
@click.option("--features-dir", default="", help="Features panel holding the periode (or --raw-dir).")
@click.option("--raw-dir", default="",
              help="Raw (or typed, from ingest) directory: the month is built with the model's config (or --features-dir).")
@click.option("--output-dir", required=True, help="Directory replaced atomically by predictions, alert list, manifest.")
@click.option("--explain", type=click.Choice(["alerts", "all"]), default="alerts", show_default=True,
              help="Companies explained in the predictions: those on alert (all the alert list needs) or every one.")
def score(model_uri: str, prediction_date: dt.datetime, features_dir: str, raw_dir: str, output_dir: str,
          explain: str) -> None:
    """Score every company in scope at a date with a registered model; write the alert list."""
    from sf_ml.ingest import RawDataError
    from sf_ml.manifest import TypedDataError
    from sf_ml.score import ScoringError, score_companies
    from sf_ml.tracking import stage_run

    features_dir, raw_dir = features_dir.strip() or None, raw_dir.strip() or None
    if (features_dir is None) == (raw_dir is None):
        _fail(ScoringError("give exactly one of --features-dir and --raw-dir"))
    prediction_date = prediction_date.date().replace(day=1)
    params = dict(model_uri=model_uri, prediction_date=prediction_date.isoformat(), features_dir=features_dir or "",
                  raw_dir=raw_dir or "", output_dir=output_dir, explain=explain)
    with stage_run("score", params):
        try:
            summary = score_companies(model_uri, prediction_date, output_dir, features_dir=features_dir,
                                      raw_dir=raw_dir, explain=explain)
        except (ScoringError, RawDataError, TypedDataError) as error:
            _fail(error)
    counts = summary["counts"]
    click.echo(
        f"{summary['rows']} companies scored at {summary['prediction_date']} with {summary['model_name']} "
        f"version {summary['model_version']}: risque_fort={counts['risque_fort']}, "
        f"risque_modere={counts['risque_modere']}; alert list: {summary['alert_list']}"
    )


@cli.command()
@click.option("--scores-dir", required=True, type=EXISTING_DIR,
              help="Directory of past scoring outputs (each predictions.parquet with its manifest.json), at any depth.")
@click.option("--features-dir", required=True, type=EXISTING_DIR,
              help="Features panel from a later export: its known failure_18m labels are the outcomes.")
def monitor(scores_dir: str, features_dir: str) -> None:
    """Compare past alert lists with the outcomes now known: AP, alert precision/recall, calibration."""
    from sf_ml.monitor import MonitoringError, format_summary, monitor_scorings
    from sf_ml.tracking import stage_run

    with stage_run("monitor", dict(scores_dir=scores_dir, features_dir=features_dir)):
        try:
            summary = monitor_scorings(scores_dir, features_dir)
        except MonitoringError as error:
            _fail(error)
    click.echo(format_summary(summary))


@cli.command("run-all")
@click.option("--workdir", default="data", show_default=True, help="Directory for world, features and scores.")
@click.option("--raw-dir", default="", help="Contract raw directory (default: generate a synthetic world).")
@click.option("--config", default=DEFAULT_CONFIG, show_default=True, help="Experiment config (name or path).")
@click.option("--n-companies", type=int, default=5000, show_default=True, help="Companies of the generated world.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the generated world.")
@click.option("--start", callback=_iso_date, default="2016-01-01", show_default=True, help="First periode of the panel.")
@click.option("--end", callback=_iso_date, default="2025-12-01", show_default=True, help="Last periode of the panel.")
@click.option("--train-start", callback=_iso_date, default="2016-01-01", show_default=True, help="First training periode.")
@click.option("--train-end", callback=_iso_date, default="2022-06-01", show_default=True, help="Last training periode.")
@click.option("--prediction-date", default="2025-12-01", callback=_iso_date, show_default=True, help="Month to score.")
@click.option("--model-name", default="sf_failure", show_default=True, help="Registered model name.")
def run_all(workdir: str, raw_dir: str, config: str, n_companies: int, seed: int, start: str, end: str,
            train_start: str, train_end: str, prediction_date: str, model_name: str) -> None:
    """Whole pipeline: generate -> ingest -> build_features -> train -> promote -> score, as child runs."""
    from sf_ml.pipeline import PipelineStopped
    from sf_ml.pipeline import run_all as run_pipeline
    from sf_ml.tracking import stage_run

    params = dict(workdir=workdir, raw_dir=raw_dir, config=config, n_companies=n_companies, seed=seed,
                  start=start, end=end, train_start=train_start, train_end=train_end,
                  prediction_date=prediction_date, model_name=model_name)
    with stage_run("main", params):
        try:
            summary = run_pipeline(workdir, raw_dir or None, config, n_companies, seed, start, end, train_start,
                                   train_end, prediction_date, model_name)
        except PipelineStopped as error:
            _fail(error)
    for name, step in summary["steps"].items():
        click.echo(f"{name:15s} run {step['run_id']}{' (reused)' if step['reused'] else ''}")
    click.echo(f"trained {model_name} version {summary['trained_version']}: {summary['promotion']}; "
               f"champion is version {summary['champion_version']}")
    click.echo(f"alert list: {summary['alert_list']}")


@cli.command(context_settings={"ignore_unknown_options": True})
@click.option("--host", default=server_defaults.DEFAULT_HOST, show_default=True,
              help="Interface to bind (0.0.0.0 to serve other machines: then pass -- --allowed-hosts ...).")
@click.option("--port", type=int, default=server_defaults.DEFAULT_PORT, show_default=True, help="Port.")
@click.option("--backend-store-uri", default=server_defaults.DEFAULT_BACKEND_URI, show_default=True,
              help="Runs and registry store: sqlite:///... or postgresql+psycopg2://user@host:5432/db.")
@click.option("--artifacts-destination", default=server_defaults.DEFAULT_ARTIFACTS_DESTINATION, show_default=True,
              help="Where the server stores the artifacts it proxies (directory, or s3://... etc.).")
@click.option("--workers", type=int, default=server_defaults.DEFAULT_WORKERS, show_default=True,
              help="Server worker processes.")
@click.option("--job-execution/--no-job-execution", default=False, show_default=True,
              help="MLflow's background job runner (unused here; ~2.5 GB more memory).")
@click.option("--print-command", is_flag=True, help="Print the mlflow server command line and exit.")
@click.argument("mlflow_args", nargs=-1, type=click.UNPROCESSED)
def server(host: str, port: int, backend_store_uri: str, artifacts_destination: str, workers: int,
           job_execution: bool, print_command: bool, mlflow_args: tuple[str, ...]) -> None:
    """Run the team's MLflow tracking server (foreground) with proxied artifacts.

    Clients use MLFLOW_TRACKING_URI=http://HOST:PORT. Arguments after -- go to mlflow server.
    """
    import shlex

    from sf_ml.server import JOB_EXECUTION_VARIABLE, run_server, server_command

    if print_command:
        command = server_command(backend_store_uri, artifacts_destination, host, port, workers, mlflow_args)
        value = "true" if job_execution else "false"
        click.echo(f"{JOB_EXECUTION_VARIABLE}={value} " + shlex.join(command))
        return
    click.echo(f"tracking server on http://{host}:{port} (store {backend_store_uri}, artifacts "
               f"{artifacts_destination})", err=True)
    run_server(backend_store_uri, artifacts_destination, host, port, workers, job_execution, mlflow_args)


def _unreachable_server(error: BaseException) -> str | None:
    """The connection failure behind ``error`` when it is one (walking the exception chain), else None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        text = str(error)
        for marker in ("Connection refused", "Failed to establish a new connection", "Max retries exceeded",
                       "Connection aborted", "RemoteDisconnected"):
            if marker in text:
                lines = [line.strip() for line in text.splitlines() if marker in line]
                return lines[0][-300:] if lines else marker
        error = error.__cause__ or error.__context__
    return None


def main() -> None:
    """Console-script entry point: a lost tracking server is one clear error line (exit 3), not a traceback."""
    try:
        cli.main(prog_name="sf-ml")
    except Exception as error:  # noqa: BLE001 - only connection failures are rewritten
        reason = _unreachable_server(error)
        if reason is None:
            raise
        import mlflow

        logging.getLogger(__name__).debug("tracking server unreachable", exc_info=True)
        click.echo(f"error: the MLflow tracking server {mlflow.get_tracking_uri()} is unreachable ({reason}). "
                   "The stage stopped: its run is left unfinished and no registry alias was changed; "
                   "rerun the stage once the server is back.", err=True)
        sys.exit(3)


if __name__ == "__main__":
    main()
