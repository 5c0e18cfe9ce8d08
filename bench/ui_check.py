"""UI check: the tracking server's run-comparison page, rendered by headless Chromium.

On a running tracking server (``sf-ml server``), takes the newest finished ``sf-ml train`` run
of two different configs (e.g. ``standard`` and ``tree_based``) in an experiment, opens their
run-comparison page in headless Chromium: ``--dump-dom`` must show both runs (ids and names),
and ``--screenshot`` saves what a user sees.

    .venv/bin/python bench/ui_check.py --tracking-uri http://127.0.0.1:5000 --experiment Default

Prints the page URL, the Chromium times and the screenshot path; exits 1 if a run is missing
from the page, 2 if no Chromium is installed (``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-extensions",
    "--hide-scrollbars", "--mute-audio",
)
def chromium_binary() -> str | None:
    """The path of an installed Chromium (or Chrome), or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass(kw_only=True)
class PageCheck:
    """What a page check found: what is missing from the page, its screenshot, the times."""

    missing: list[str] = field(default_factory=list)
    screenshot: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.missing


@dataclass
class UiCheck(PageCheck):
    """The comparison page: its URL and the runs it must show."""

    url: str
    experiment_id: str
    runs: dict[str, str]  # run id -> run name


def latest_train_runs(tracking_uri: str, experiment_name: str) -> tuple[str, dict[str, str]]:
    """The newest finished ``train`` run of each of the two most recent configs of an experiment.

    Args:
        tracking_uri: The tracking server.
        experiment_name: Experiment holding ``sf-ml train`` runs (tag ``stage=train``).

    Returns:
        The experiment id and {run id: run name} for two runs of different ``config_name``.

    Raises:
        LookupError: The experiment is missing or holds fewer than two configs' train runs.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise LookupError(f"no experiment {experiment_name!r} on {tracking_uri}")
    found = client.search_runs([experiment.experiment_id], "tags.stage = 'train' and attributes.status = 'FINISHED'",
                               order_by=["attributes.start_time DESC"], max_results=200)
    runs: dict[str, str] = {}
    configs: set[str] = set()
    for run in found:
        config = run.data.tags.get("config_name", run.data.params.get("config", ""))
        if config not in configs:
            configs.add(config)
            runs[run.info.run_id] = run.info.run_name
        if len(runs) == 2:
            return experiment.experiment_id, runs
    raise LookupError(f"experiment {experiment_name!r} needs finished train runs of two configs "
                      f"(found {sorted(configs)}): run `sf-ml train --config standard` and `--config tree_based`")


def compare_url(server_url: str, experiment_id: str, run_ids: list[str]) -> str:
    """The UI's run-comparison page of ``run_ids`` (hash route ``#/compare-runs``)."""
    query = urllib.parse.urlencode({"runs": json.dumps(run_ids), "experiments": json.dumps([experiment_id])},
                                   quote_via=urllib.parse.quote)
    return f"{server_url.rstrip('/')}/#/compare-runs?{query}"


def _chromium(binary: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="sf_ml_chromium_") as profile:
        command = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def dump_dom(url: str, binary: str | None = None, budget_ms: int = 20000, timeout: float = 120) -> str:
    """The DOM of ``url`` after ``budget_ms`` of virtual time (the UI's scripts have rendered)."""
    binary = binary or chromium_binary()
    done = _chromium(binary, ["--window-size=1600,1000", f"--virtual-time-budget={budget_ms}", "--dump-dom", url],
                     timeout)
    if done.returncode != 0:
        raise RuntimeError(f"chromium --dump-dom failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def screenshot(url: str, path: str | Path, binary: str | None = None, size: str = "1600,1400",
               budget_ms: int = 20000, timeout: float = 120) -> Path:
    """Save a PNG of ``url`` as rendered in a ``size`` window."""
    binary = binary or chromium_binary()
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    done = _chromium(binary, [f"--window-size={size}", f"--virtual-time-budget={budget_ms}",
                              f"--screenshot={path}", url], timeout)
    if done.returncode != 0 or not path.exists():
        raise RuntimeError(f"chromium --screenshot failed ({done.returncode}): {done.stderr[-2000:]}")
    return path


def check(tracking_uri: str, runs: dict[str, str], experiment_id: str,
          screenshot_path: str | Path | None = None, binary: str | None = None) -> UiCheck:
    """Open the comparison page of ``runs`` on a running server and check that it shows them all.

    Args:
        tracking_uri: ``http://host:port`` of a running tracking server (its UI is at the root).
        runs: {run id: run name} of the runs to compare (e.g. from :func:`latest_train_runs`).
        experiment_id: Their experiment.
        screenshot_path: Where to save a screenshot of the page (none when None).
        binary: Chromium executable (default: the first found on PATH).

    Returns:
        The result; ``missing`` lists the run names or ids absent from the rendered page.
    """
    binary = binary or chromium_binary()
    if binary is None:
        raise FileNotFoundError("no chromium on PATH (apt-get install chromium)")
    result = UiCheck(compare_url(tracking_uri, experiment_id, list(runs)), experiment_id, dict(runs))
    began = time.monotonic()
    dom = dump_dom(result.url, binary)
    result.seconds["dump_dom"] = time.monotonic() - began
    result.missing = sorted({text for run_id, name in runs.items() for text in (run_id, name) if text not in dom})
    if screenshot_path is not None:
        began = time.monotonic()
        result.screenshot = str(screenshot(result.url, screenshot_path, binary))
        result.seconds["screenshot"] = time.monotonic() - began
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", default="http://127.0.0.1:5000", help="A running tracking server.")
    parser.add_argument("--experiment", default="Default", help="Experiment holding the train runs.")
    parser.add_argument("--screenshot", default="ui_compare.png", help="Screenshot path.")
    args = parser.parse_args(argv)
    if chromium_binary() is None:
        print("no chromium on PATH: apt-get install chromium", file=sys.stderr)
        return 2
    experiment_id, runs = latest_train_runs(args.tracking_uri, args.experiment)
    result = check(args.tracking_uri, runs, experiment_id, args.screenshot)
    return print_outcome(result, [f"runs: {result.runs}"], "both runs are on the comparison page")


def print_outcome(result, found: list[str], success: str) -> int:
    """Print a page check's URL, times, what it found and its screenshot; the exit status.

    Args:
        result: A check result with ``url``, ``seconds``, ``screenshot`` and ``missing``.
        found: Lines saying what the page showed.
        success: The line printed when nothing is missing.

    Returns:
        1 when something is missing from the page, else 0.
    """
    print(f"page: {result.url}")
    print("; ".join(f"{k}: {v:.1f} s" for k, v in result.seconds.items()))
    for line in found:
        print(line)
    print(f"screenshot: {result.screenshot}")
    if result.missing:
        print(f"MISSING from the page: {result.missing}", file=sys.stderr)
        return 1
    print(success)
    return 0


if __name__ == "__main__":
    sys.exit(main())
