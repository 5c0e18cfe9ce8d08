"""The documentation site builds with warnings as errors and says what the code does.

``mkdocs build --strict`` runs once per session into a temporary directory (a few seconds: the
API reference is read statically by griffe, nothing imports Spark). A broken link or anchor, a
page missing from the nav, a docstring griffe cannot parse, or a generated table whose prose no
longer covers the code (docs/hooks/sf_docs.py) fails the build, hence this test. The checks below
then read the built pages: the contract page lists every table and column of
``sf_ml.contract.TABLES``, the feature catalogue every base feature and aggregation kind, the
reference one page per module.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HOOK = ROOT / "docs" / "hooks" / "sf_docs.py"
PAGES = ("index", "getting-started", "data-contract", "stages", "features", "models", "mlflow", "team",
         "reference")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built by ``mkdocs build --strict`` (the build's own output on failure)."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{log[-6000:]}"
    assert "WARNING" not in log, log[-6000:]
    return out


def _page(site: Path, name: str) -> str:
    path = site / name / "index.html" if name != "index" else site / "index.html"
    assert path.is_file(), f"page {name} was not built"
    return path.read_text(encoding="utf-8")


def _section(page: str, anchor: str) -> str:
    """The HTML from the heading with id ``anchor`` to the next heading of the same or higher level."""
    match = re.search(rf'<h([1-6]) id="{re.escape(anchor)}"', page)
    assert match, f"no heading #{anchor}"
    level = int(match.group(1))
    end = re.compile(rf"<h[1-{level}][ >]").search(page, match.end())
    return page[match.start():end.start() if end else len(page)]


def _codes(fragment: str) -> set[str]:
    return {html.unescape(c) for c in re.findall(r"<code>([^<]*)</code>", fragment)}


def test_every_page_is_built(site):
    for name in PAGES:
        _page(site, name)
    modules = sorted(p.stem for p in (ROOT / "sf_ml").glob("*.py") if p.stem != "__init__")
    for module in modules:
        page = _page(site, f"reference/{module}")
        assert f'id="sf_ml.{module}"' in page, f"reference page of sf_ml.{module} has no module heading"
    index = _page(site, "reference")
    assert all(f"sf_ml.{m}" in index for m in modules)


def test_contract_page_lists_every_table_and_column(site):
    from sf_ml.contract import OPTIONAL_TABLES, REQUIRED_TABLES, SCOPE, TABLES, TARGET_HORIZON_MONTHS

    page = _page(site, "data-contract")
    for name, table in TABLES.items():
        section = _section(page, name)
        codes = _codes(section)
        missing = [c for c in table.column_names if c not in codes]
        assert not missing, f"{name}: columns {missing} not on the contract page"
        assert ("Required table" if table.required else "Optional table") in section, name
        for key in table.key:
            assert key in codes
    listed = _codes(_section(page, "files"))
    assert set(REQUIRED_TABLES) | set(OPTIONAL_TABLES) <= listed
    rules = html.unescape(_section(page, "scope-at-t"))
    assert f"{SCOPE.recent_months} months" in rules and f"{SCOPE.headcount_lookback_months} months" in rules
    assert all(c in rules for c in SCOPE.excluded_legal_categories + SCOPE.excluded_naf_divisions)
    assert f"T + {TARGET_HORIZON_MONTHS} months" in html.unescape(_section(page, "target"))


def test_feature_catalogue_lists_every_feature_and_aggregation(site):
    from sf_ml.config import AGGREGATIONS
    from sf_ml.panel import BASE_FEATURES, METADATA_COLUMNS
    from sf_ml.sources import FINANCIAL_RATIOS

    page = _page(site, "features")
    features = _codes(_section(page, "base-features"))
    assert not [f for f in BASE_FEATURES if f not in features]
    for numerator, denominator in FINANCIAL_RATIOS.values():
        assert set(numerator) | set(denominator or ()) <= features
    assert set(METADATA_COLUMNS) <= _codes(_section(page, "metadata-columns"))
    kinds = _codes(_section(page, "time-aggregations"))
    assert not [k for k in AGGREGATIONS if k not in kinds]


def test_stages_and_models_pages_follow_the_code(site):
    import yaml

    from sf_ml.promote import GATE

    stages = _page(site, "stages")
    entry_points = yaml.safe_load((ROOT / "MLproject").read_text(encoding="utf-8"))["entry_points"]
    for name, spec in entry_points.items():
        assert set(spec.get("parameters") or {}) <= _codes(_section(stages, name)), name
    models = _page(site, "models")
    for path in (ROOT / "experiments").glob("*.yaml"):
        assert path.stem in _codes(_section(models, "experiment-configs"))
    gate = html.unescape(_section(_page(site, "mlflow"), "the-promotion-gate"))
    assert f"{GATE.max_average_precision_drop:g}" in gate and f"{GATE.min_lift_without_champion:g}" in gate


def test_reference_renders_docstrings_and_cross_references(site):
    page = _page(site, "reference/panel")
    assert 'id="sf_ml.panel.build_panel"' in page
    assert ":func:" not in page  # Sphinx roles became links or code
    assert 'href="../windows/#sf_ml.windows.MonthlyGrid"' in page


def _hook():
    spec = importlib.util.spec_from_file_location("sf_docs_hook", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_blocks_fail_when_the_code_outgrows_their_prose(monkeypatch):
    from mkdocs.exceptions import PluginError

    hook = _hook()
    hook.block_contract_table("urssaf_debit")
    monkeypatch.delitem(hook.COLUMN_TEXT["urssaf_debit"], "etat_compte")
    with pytest.raises(PluginError, match="etat_compte"):
        hook.block_contract_table("urssaf_debit")
    monkeypatch.delitem(hook.AGGREGATION_TEXT, "slope")
    with pytest.raises(PluginError, match="slope"):
        hook.block_aggregations()
    monkeypatch.delitem(hook.BASE_FEATURE_TEXT, "cotisation")
    with pytest.raises(PluginError, match="cotisation"):
        hook.block_base_features()


def test_a_page_whose_generated_block_is_stale_fails_the_build():
    from mkdocs.exceptions import PluginError

    hook = _hook()
    page = (ROOT / "docs" / "data-contract.md").read_text(encoding="utf-8")
    assert hook.check_blocks(page, "data-contract.md") == page
    stale = page.replace("| `etat_compte` |", "| `etat_du_compte` |", 1)
    assert stale != page
    with pytest.raises(PluginError, match="contract-table urssaf_debit.*python docs/hooks/sf_docs.py"):
        hook.check_blocks(stale, "data-contract.md")
    with pytest.raises(PluginError, match="closing"):
        hook.check_blocks("".join(page.rsplit("<!-- /sf-docs -->", 1)), "data-contract.md")
    assert hook.check_blocks(hook.refresh_blocks(stale, "data-contract.md"), "data-contract.md")


def test_readme_links_only_to_files_in_the_repository():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    assert targets, "the README links to nothing"
    for target in targets:
        if target.startswith("#"):
            continue
        assert not re.match(r"^[a-z][a-z0-9+.-]*:", target), f"README links outside the repository: {target}"
        path = (ROOT / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"README links outside the repository: {target}"
        assert path.exists(), f"README links to a missing file: {target}"
