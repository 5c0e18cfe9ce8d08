"""MLproject parameters carry their types, agree with the CLI options they feed, and bad values
are refused before any stage starts: integers, input directories that must exist, ISO dates."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from sf_ml.cli import cli

ROOT = Path(__file__).resolve().parent.parent
PROJECT = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
DATE_CALLBACKS = {"_iso_date", "_iso_date_list", "_truth_dates"}
# Values for parameters that have no default, so that only the parameter under test is wrong.
REQUIRED_VALUES = {"prediction_date": "2020-01-01"}


def _options(entry: str) -> tuple[click.Command, dict[str, click.Option]]:
    """The CLI command an entry point runs and, per MLproject parameter, the option it fills."""
    command_line = PROJECT[entry]["command"]
    command = cli.commands[re.search(r"sf_ml\.cli (\S+)", command_line).group(1)]
    by_flag = {flag: option for option in command.params for flag in option.opts}
    return command, {param: by_flag[f"--{flag}"] for flag, param in re.findall(r"--([\w-]+) \{(\w+)\}", command_line)}


def _valid_args(entry: str, tmp_path: Path) -> dict[str, str]:
    """Every parameter of an entry point at its default, directories existing, as CLI flags."""
    args = {}
    for param, spec in PROJECT[entry]["parameters"].items():
        value = spec.get("default", REQUIRED_VALUES.get(param, str(tmp_path / param)))
        if spec["type"] == "path":
            value = str(tmp_path)
        args[param] = str(value)
    return args


def _is_date_param(name: str) -> bool:
    return re.search(r"(^|_)(start|end|date|dates|until)$", name) is not None


def _checks_dates(option: click.Option) -> bool:
    return isinstance(option.type, click.DateTime) or getattr(option.callback, "__name__", "") in DATE_CALLBACKS


def _invoke(entry: str, args: dict[str, str]):
    command, options = _options(entry)
    flags = [f"{options[param].opts[0]}={value}" for param, value in args.items()]
    return CliRunner().invoke(cli, [command.name, *flags])


def test_every_parameter_feeds_an_option_of_the_same_type():
    for entry, spec in PROJECT.items():
        _, options = _options(entry)
        assert set(options) == set(spec["parameters"]), entry
        for param, option in options.items():
            declared = spec["parameters"][param]["type"]
            where = f"{entry}.{param}"
            assert declared in {"int", "float", "path", "string"}, where
            assert (declared == "int") == (option.type == click.INT), where
            assert (declared == "float") == (option.type == click.FLOAT), where
            is_input_dir = isinstance(option.type, click.Path) and option.type.exists
            assert (declared == "path") == is_input_dir, where
            if _is_date_param(param):
                assert declared == "string" and _checks_dates(option), f"{where}: dates stay strings, checked by the CLI"
    declared = [p["type"] for spec in PROJECT.values() for p in spec["parameters"].values()]
    assert declared.count("int") >= 7 and declared.count("path") >= 8


@pytest.mark.parametrize("entry", sorted(PROJECT))
def test_bad_values_are_refused_before_the_stage_starts(entry, tmp_path):
    _, options = _options(entry)
    valid = _valid_args(entry, tmp_path)
    checked = 0
    for param, option in options.items():
        declared = PROJECT[entry]["parameters"][param]["type"]
        if _is_date_param(param):
            bad, expected = "2020-13-01", "2020-13-01"
        elif declared == "int" or getattr(option.callback, "__name__", "") == "_optional_int":
            bad, expected = "twelve", "twelve"
        elif declared == "path":
            bad, expected = str(tmp_path / "missing"), "does not exist"
        else:
            continue
        done = _invoke(entry, {**valid, param: bad})
        assert done.exit_code == 2, f"{entry}.{param}={bad}: {done.output}"
        assert expected in done.output and option.opts[0] in done.output, done.output
        checked += 1
    assert checked >= 1


def test_mlflow_checks_path_parameters_and_makes_them_absolute(tmp_path, monkeypatch):
    from mlflow.exceptions import ExecutionException
    from mlflow.projects._project_spec import load_project

    monkeypatch.chdir(tmp_path)
    (tmp_path / "features").mkdir()
    train = load_project(str(ROOT)).get_entry_point("train")
    with pytest.raises(ExecutionException, match="no such file or directory"):
        train.compute_parameters({"features_dir": "nowhere"}, storage_dir=str(tmp_path))
    params, _ = train.compute_parameters({"features_dir": "features"}, storage_dir=str(tmp_path))
    assert params["features_dir"] == str(tmp_path / "features")
