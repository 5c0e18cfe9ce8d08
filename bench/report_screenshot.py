"""Report check: a scoring's ``alert_report.html``, rendered by headless Chromium.

Opens the alert report of a scoring directory (``sf-ml score``'s ``output_dir``) in headless
Chromium from the file itself (no server, no network): ``--dump-dom`` must show every company of
``alert_list.json`` as a row of its alert level, in the list's order, and ``--screenshot`` saves
what an agent sees. The Chromium helpers are those of ``bench/ui_check.py``.

    .venv/bin/python bench/report_screenshot.py data/scores/2025-12-01 --screenshot alert_report.png

Prints the page, the Chromium times, the rows per level and the screenshot path; exits 1 if a
company is missing or out of place, 2 if no Chromium is installed (``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ui_check  # noqa: E402  (bench/ is not a package)

REPORT, ALERT_LIST = "alert_report.html", "alert_list.json"
LEVEL_CLASSES = {"fort": "risque_fort", "modere": "risque_modere"}


@dataclass
class Row:
    """One company row of the report: its siren, its level's section and its visible text."""

    siren: str
    level: str
    text: str


def _collapse(parts: list[str]) -> str:
    """The text of ``parts`` with runs of ASCII white space as one space (no-break spaces are kept)."""
    return re.sub(r"[ \t\r\n\f]+", " ", "".join(parts)).strip()


class _Rows(HTMLParser):
    """Collects the report's company rows (``<tr data-siren>``) under their level ``<section>``."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.rows: list[Row] = []
        self.headings: list[str] = []
        self._level: str | None = None
        self._row: list[str] | None = None
        self._siren = ""
        self._heading: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self._level = next((LEVEL_CLASSES[c] for c in (attrs.get("class") or "").split() if c in LEVEL_CLASSES),
                               None)
        elif tag == "tr" and attrs.get("data-siren"):
            self._siren, self._row = attrs["data-siren"], []
        elif tag == "h2":
            self._heading = []
        elif tag in ("td", "li", "div") and self._row is not None:
            self._row.append(" ")  # cells and items read apart

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self.rows.append(Row(self._siren, self._level or "", _collapse(self._row)))
            self._row = None
        elif tag == "h2" and self._heading is not None:
            self.headings.append(_collapse(self._heading))
            self._heading = None

    def handle_data(self, data):
        for sink in (self._row, self._heading):
            if sink is not None:
                sink.append(data)


def page_rows(html: str) -> tuple[list[Row], list[str]]:
    """The company rows and the section headings of a report page (its source or a dumped DOM)."""
    parser = _Rows()
    parser.feed(html)
    parser.close()
    return parser.rows, parser.headings


@dataclass
class ReportCheck(ui_check.PageCheck):
    """The report page: its URL, its company rows and section headings."""

    url: str
    rows: list[Row]
    headings: list[str]


def check_report(scores_dir: str | Path, screenshot_path: str | Path | None = None, binary: str | None = None,
                 size: str = "1600,1400") -> ReportCheck:
    """Open a scoring's report in headless Chromium and check it shows the alert list.

    Args:
        scores_dir: A scoring's output directory (``alert_report.html`` and ``alert_list.json``).
        screenshot_path: Where to save a PNG of the page (none when None).
        binary: Chromium executable (default: the first found on PATH).
        size: Window size of the screenshot, ``width,height`` in pixels.

    Returns:
        The result; ``missing`` names each company of the alert list not shown in its level, in
        the list's order (``siren (level)``).

    Raises:
        FileNotFoundError: No Chromium, or no report in ``scores_dir``.
    """
    binary = binary or ui_check.chromium_binary()
    if binary is None:
        raise FileNotFoundError("no chromium on PATH (apt-get install chromium)")
    report = Path(scores_dir).resolve() / REPORT
    if not report.is_file():
        raise FileNotFoundError(f"no {REPORT} in {scores_dir}")
    alerts = json.loads((report.parent / ALERT_LIST).read_text(encoding="utf-8"))["alerts"]
    began = time.monotonic()
    dom = ui_check.dump_dom(report.as_uri(), binary, budget_ms=2000)
    result = ReportCheck(report.as_uri(), *page_rows(dom))
    result.seconds["dump_dom"] = time.monotonic() - began
    shown = [(row.siren, row.level) for row in result.rows]
    expected = [(str(e["siren"]), e["alert"]) for e in alerts]
    if shown != expected:
        present = set(shown)
        result.missing = [f"{siren} ({level})" for siren, level in expected if (siren, level) not in present] or [
            "companies in another order than alert_list.json"]
    if screenshot_path is not None:
        began = time.monotonic()
        result.screenshot = str(ui_check.screenshot(result.url, screenshot_path, binary, size=size, budget_ms=2000))
        result.seconds["screenshot"] = time.monotonic() - began
    return result


def main(argv: list[str] | None = None) -> int:
    """Check the report of ``scores_dir``, save its screenshot; the exit code of the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scores_dir", help="A scoring's output directory (sf-ml score --output-dir).")
    parser.add_argument("--screenshot", default="alert_report.png", help="Screenshot path.")
    parser.add_argument("--size", default="1600,1400", help="Window size, width,height in pixels.")
    args = parser.parse_args(argv)
    if ui_check.chromium_binary() is None:
        print("no chromium on PATH: apt-get install chromium", file=sys.stderr)
        return 2
    result = check_report(args.scores_dir, args.screenshot, size=args.size)
    found = [f"{level}: {sum(row.level == level for row in result.rows)} companies" for level in LEVEL_CLASSES.values()]
    return ui_check.print_outcome(result, found, "every company of the alert list is on the page, under its level")


if __name__ == "__main__":
    sys.exit(main())
