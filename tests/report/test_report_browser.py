"""report.html in a real headless browser (Debian's chromium; scripts/setup.sh installs it where it can): every
image decodes, every table renders with its rows, and a screenshot is kept in tests/.artifacts/."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report import fabricate

from thinksafe.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
ARTIFACTS = Path(__file__).resolve().parents[1] / ".artifacts"
# Runs in the page once it has loaded: what a person would see, as JSON in the body's data-check attribute.
CHECK = """<script>addEventListener('load', () => { const r = {
  images: [...document.images].map(i => ({ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth, shown: i.width})),
  tables: [...document.querySelectorAll('table')].map(t => ({rows: t.rows.length, height: t.offsetHeight,
    cells: t.querySelectorAll('td').length})),
  links: document.querySelectorAll('td a').length};
  document.body.setAttribute('data-check', JSON.stringify(r)); });</script>"""

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium (scripts/setup.sh installs it with apt-get as root)")


def browser(*args: str) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
           "--virtual-time-budget=10000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


def test_report_html_renders_in_a_real_browser(tmp_path):
    run_dir = fabricate(tmp_path / "run")
    page = write_report(run_dir)["html"]
    checked = page.with_name("report_checked.html")
    checked.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    dom = browser("--dump-dom", checked.as_uri())
    found = re.search(r'data-check="([^"]*)"', dom)
    assert found, "the check script did not run"
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    n_images = page.read_text().count("<img ")
    assert n_images >= 3 and len(result["images"]) == n_images
    assert all(i["ok"] and i["w"] > 100 and i["shown"] > 100 for i in result["images"]), result["images"]
    assert len(result["tables"]) >= 3
    assert all(t["rows"] >= 2 and t["cells"] > 0 and t["height"] > 20 for t in result["tables"]), result["tables"]
    assert result["links"] > 0  # the numbers link to their files

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    browser(f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri())
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
