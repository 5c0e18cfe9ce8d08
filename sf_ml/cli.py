"""The ``sf-ml`` command line: one sub-command per stage, each a thin wrapper that parses
parameters, opens the stage's MLflow run and calls one function of one module."""

from __future__ import annotations

import logging
import sys

import click


def _fail(error: Exception) -> None:
    click.echo(f"error: {error}", err=True)
    sys.exit(2)


@click.group()
@click.option("--log-level", default="INFO", show_default=True, help="Python logging level.")
def cli(log_level: str) -> None:
    """sf_ml: predict French companies' collective proceedings within 18 months."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@cli.command()
@click.option("--output-dir", required=True, help="Directory the raw tables are written to.")
@click.option("--n-companies", type=int, default=5000, show_default=True, help="Number of companies (sirens).")
@click.option("--start", default="2014-01-01", show_default=True, help="First month of the world (ISO date).")
@click.option("--end", default="2025-12-31", show_default=True, help="Last day of the world (ISO date).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed; same seed, same files.")
@click.option("--file-format", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True,
              help="Format of the raw tables.")
def generate(output_dir: str, n_companies: int, start: str, end: str, seed: int, file_format: str) -> None:
    """Write a synthetic raw directory that follows the data contract."""
    import mlflow

    from sf_ml.generate import generate_world
    from sf_ml.tracking import stage_run

    params = dict(output_dir=output_dir, n_companies=n_companies, start=start, end=end, seed=seed,
                  file_format=file_format)
    with stage_run("generate", params):
        counts = generate_world(output_dir, n_companies=n_companies, start=start, end=end, seed=seed,
                                file_format=file_format)
        mlflow.log_metrics({f"rows.{table}": n for table, n in counts.items()})
    click.echo(f"world written to {output_dir}: " + ", ".join(f"{t}={n}" for t, n in counts.items()))


@cli.command()
@click.option("--raw-dir", required=True, help="Raw directory following the data contract.")
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
@click.option("--raw-dir", required=True, help="Raw directory following the data contract.")
@click.option("--output-dir", required=True, help="Features directory (parquet partitioned by periode).")
@click.option("--config", default="standard", show_default=True, help="Experiment config (name or path).")
@click.option("--start", required=True, help="First periode to build (ISO date, first of a month).")
@click.option("--end", required=True, help="Last periode to build (ISO date).")
@click.option("--labels-until", default=None, help="Date the judgments are known to (default: latest judgment).")
@click.option("--override", "overrides", multiple=True, help="Config override section.key=value (repeatable).")
def build_features(raw_dir: str, output_dir: str, config: str, start: str, end: str,
                   labels_until: str | None, overrides: tuple[str, ...]) -> None:
    """Build the point-in-time siren x month panel with features and target."""
    from sf_ml.config import load_config
    from sf_ml.features import build_features as build
    from sf_ml.ingest import RawDataError
    from sf_ml.tracking import stage_run

    labels_until = labels_until or None
    cfg = load_config(config, list(overrides))
    params = dict(raw_dir=raw_dir, output_dir=output_dir, config=config, start=start, end=end,
                  labels_until=labels_until, overrides=";".join(overrides))
    with stage_run("build_features", params, cfg.to_dict()):
        try:
            summary = build(raw_dir, output_dir, cfg, start=start, end=end, labels_until=labels_until)
        except RawDataError as error:
            _fail(error)
    click.echo(f"features written to {output_dir}: {summary['rows']} rows, "
               f"positive rate {summary['positive_rate']:.4f}")


@cli.command()
@click.option("--features-dir", required=True, help="Features directory (parquet partitioned by periode).")
@click.option("--config", default="standard", show_default=True, help="Experiment config (name or path).")
@click.option("--train-start", required=True, help="First training periode (ISO date).")
@click.option("--train-end", required=True, help="Last training periode (ISO date); later ones are out-of-time.")
@click.option("--model-name", default="sf_failure", show_default=True, help="Registered model name.")
@click.option("--seed", default="", help="Seed of split, resampling and model (default: the config's).")
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


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="sf-ml")


if __name__ == "__main__":
    main()
