"""report.html as a person sees it: rendered by headless Chromium, offline, from disk.

The screenshot is kept in test-artifacts/ (git-ignored) and its path printed. Without Chromium
the test skips, unless MLLOOP_REQUIRE_CHROMIUM is set (CI sets it), where it fails instead.
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from chromium import PAGE_FACTS, REQUIRE_ENV, Page, find_chromium
from mlloop.cli import cli

# Trains, evaluates or spawns interpreters: `pytest -m "not slow"` leaves it out (see conftest.py).
pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{REQUIRE_ENV} is set but no chromium binary is on PATH (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (set MLLOOP_REQUIRE_CHROMIUM=1 to make this a failure)")
    return binary


def _report(factory) -> Path:
    factory.complete(versions=3, accuracies=[0.6, 0.8, 0.7])
    result = CliRunner().invoke(cli, ["report", "--project", str(factory.root)])
    assert result.exit_code == 0, result.output
    (folder,) = [p for p in (factory.root / "Models/Report").iterdir() if not p.name.startswith(".")]
    return folder


def test_report_html_renders_in_chromium(factory, chromium):
    folder = _report(factory)
    page_file = folder / "report.html"
    text = page_file.read_text(encoding="utf-8")
    assert not re.search(r"(src|href)=\"(https?:)?//", text), "the page must not load anything from the network"
    with Page(chromium) as page:
        page.open(page_file)
        facts = page.evaluate(PAGE_FACTS)
        shot = page.screenshot(ARTIFACTS / "report-html.png")
        errors = list(page.errors)
    print(f"\nscreenshot of report.html: {shot}")
    with open(folder / "leaderboard.csv", encoding="utf-8") as fh:
        board = [row["version_id"] for row in csv.DictReader(fh)]
    assert [row[1] for row in facts["rows"]] == board == ["v002", "v003", "v001"]
    assert facts["headers"][:3] == ["rank", "version", "valid accuracy"]
    assert [row[2] for row in facts["rows"]] == ["0.8", "0.7", "0.6"]
    pictures = sorted(p.name for p in (folder / "pictures").glob("*.png"))
    assert {"metric_by_version.png", "cost.png", "samples.png", "confusion_matrix.png"} <= set(pictures)
    assert len(facts["images"]) == len(pictures)
    assert all(img["complete"] and img["width"] > 0 and not img["external"] for img in facts["images"]), facts["images"]
    assert facts["external"] == []
    assert errors == []
    assert shot.stat().st_size > 20_000  # a real page, not a blank frame
    analysis = (folder / "final-analysis.md").read_text(encoding="utf-8")
    for name in pictures:  # final-analysis.md links every picture too
        assert f"(pictures/{name})" in analysis


def test_chromium_check_catches_a_broken_page(tmp_path, chromium):
    """The same assertions fail on a page with a missing image and a console error."""
    page_file = tmp_path / "broken.html"
    page_file.write_text('<!DOCTYPE html><html><body><table id="leaderboard"><tbody><tr><td>1</td><td>v001</td></tr>'
                         '</tbody></table><img src="pictures/missing.png" alt="gone">'
                         '<script>console.error("boom")</script></body></html>', encoding="utf-8")
    with Page(chromium) as page:
        page.open(page_file)
        facts = page.evaluate(PAGE_FACTS)
        errors = list(page.errors)
    assert [row[1] for row in facts["rows"]] == ["v001"]
    assert facts["images"] == [{"alt": "gone", "complete": True, "width": 0, "external": True}]
    assert any("boom" in e for e in errors), errors
    assert any("missing.png" in e or "load failed" in e for e in errors), errors
