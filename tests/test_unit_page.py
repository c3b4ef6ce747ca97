"""`--units_page`: the unit galleries of an
analysis and their static HTML page, opened in a real browser.

Every page is opened in headless Chromium (`chromium --headless
--dump-dom`) with a check script injected at the top of its <head> (into a
copy beside the original, so relative links resolve alike): it records
uncaught errors, failed resource loads and ``console.error`` calls, and after
the load event every image's ``naturalWidth`` and, for every link, whether
the browser loaded its target (a synchronous XMLHttpRequest of the file: URL,
allowed by ``--allow-file-access-from-files``). The check is shown to fail on
a deliberately broken page. Where no Chromium is found the browser tests
skip and say so; under CI (``CI=true``, where `.ci/run` installs Debian's
package) they fail instead.
"""

import contextlib
import html
import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from tf_selectivity.analysis.options import AnalysisOptions, SelectivityOptions, SimilarityOptions, TrainingCurvesOptions, UnitsOptions
from tf_selectivity.analysis.pipeline import analyze
from tf_selectivity.analysis.stages.units.pages import GalleryUnit, LayerPage, RunPage, write_unit_pages
from tf_selectivity.core.settings import ParameterError

CHECK_SCRIPT = """
window.__problems = [];
window.addEventListener("error", function (event) {
  var target = event.target && event.target !== window ? (event.target.src || event.target.href || event.target.tagName) : "";
  window.__problems.push("error event: " + (event.message || "") + " " + target);
}, true);
(function () {
  var original = console.error;
  console.error = function () {
    window.__problems.push("console.error: " + Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
})();
window.addEventListener("load", function () {
  var images = Array.prototype.map.call(document.images, function (img) {
    return {src: img.getAttribute("src"), width: img.complete ? img.naturalWidth : 0};
  });
  var links = Array.prototype.map.call(document.querySelectorAll("a[href]"), function (a) {
    var href = a.getAttribute("href");
    if (href.charAt(0) === "#") { return {href: href, loaded: document.getElementById(href.slice(1)) !== null}; }
    var request = new XMLHttpRequest(), loaded = false;
    try {
      request.open("GET", a.href, false);
      request.send();
      loaded = (request.status === 0 || request.status === 200) && request.responseText.length > 0;
    } catch (error) { loaded = false; }
    return {href: href, loaded: loaded};
  });
  var sorted = null, table = document.getElementById("units");
  if (table) {  // click the SI column's header: ascending, then descending
    var header = Array.prototype.filter.call(table.tHead.rows[0].cells, function (th) {
      return th.textContent.trim() === "selectivity"; })[0];
    var column = header.cellIndex, read = function () {
      return Array.prototype.map.call(table.tBodies[0].rows, function (row) {
        return parseFloat(row.cells[column].dataset.value); }); };
    header.click();
    var ascending = read();
    header.click();
    sorted = {ascending: ascending, descending: read()};
  }
  var out = document.createElement("pre");
  out.id = "__check";
  out.textContent = JSON.stringify({images: images, links: links, problems: window.__problems, sorted: sorted});
  document.body.appendChild(out);
});
"""

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                  "--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0"]


NO_CHROMIUM = "Chromium is not installed: apt-get install -y --no-install-recommends chromium (see .ci/run)"


def chromium() -> str:
    """The browser's path; a browser test skips without it, and fails under CI (CI=true)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{NO_CHROMIUM}; CI=true, where the browser test must run")
        pytest.skip(NO_CHROMIUM)
    return path


@pytest.fixture(scope="session")
def browser():
    """Chromium, checked before any other fixture of a browser test is set up (a skip costs nothing)."""
    return chromium()


def browser_check(page: str) -> dict:
    """Opens `page` (a copy with the check script) in headless Chromium; returns what the script saw.

    Also fails on any line of Chromium's log that reports a console message
    of the page (``CONSOLE``), which the script might not see.
    """
    with open(page, encoding="utf-8") as f:
        text = f.read()
    checked = os.path.join(os.path.dirname(page), "__check__" + os.path.basename(page))
    with open(checked, "w", encoding="utf-8") as f:
        f.write(text.replace("<head>", f"<head><script>{CHECK_SCRIPT}</script>", 1))
    try:
        done = subprocess.run([chromium(), *CHROMIUM_FLAGS, "--dump-dom", "file://" + os.path.abspath(checked)],
                              capture_output=True, text=True, timeout=120)
    finally:
        os.remove(checked)
    found = re.search(r'<pre id="__check">(.*?)</pre>', done.stdout, re.S)
    assert found, (page, done.stdout[-2000:], done.stderr[-2000:])
    result = json.loads(html.unescape(found.group(1)))
    result["problems"] += [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    return result


def page_problems(page: str, result: dict) -> list:
    """What is wrong with a page: undecoded images, links whose file is missing or not loaded, errors."""
    problems = [f"image {image['src']} did not decode" for image in result["images"] if image["width"] <= 0]
    for link in result["links"]:
        target = link["href"].split("#")[0]
        if target and not os.path.exists(os.path.join(os.path.dirname(page), target)):
            problems.append(f"link {link['href']}: no such file")
        if not link["loaded"]:
            problems.append(f"link {link['href']}: the browser did not load it")
    return problems + result["problems"]


def screenshot(page: str, path: str) -> None:
    subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1280,1600", f"--screenshot={path}", "file://" + os.path.abspath(page)],
                   capture_output=True, timeout=120, check=True)
    assert os.path.getsize(path) > 0


# ------------------------------------------------------------ the analysis
LAYERS = ("probe_stem", "probe_s3b1_out")


PAGE_OPTIONS = AnalysisOptions(
    units=UnitsOptions(page=True, gallery_k=3, gallery_layers=LAYERS, named_units=("probe_stem:0,2",)),
    selectivity=SelectivityOptions(null_permutations=20), n_resamples=200,
    similarity=SimilarityOptions(enabled="false"), figures=False)


@pytest.fixture(scope="module")
def unit_pages_log():
    """What `unit_pages` printed (not on a terminal: a log file's lines)."""
    return io.StringIO()


@pytest.fixture(scope="module")
def unit_pages(tiny_runs, tmp_path_factory, unit_pages_log):
    out = tmp_path_factory.mktemp("unit_pages")
    with contextlib.redirect_stdout(unit_pages_log):
        result = analyze([str(tiny_runs / "runs" / "a0_s0")], str(out), PAGE_OPTIONS, verbose=1)
    return result, out


def test_the_galleries_show_one_line_per_pass(unit_pages, unit_pages_log):
    from conftest import log_lines

    result, _ = unit_pages
    figures = len(result.tables["unit_gallery"])
    lines = [line.split(", ")[0] for line in log_lines(unit_pages_log.getvalue())]
    # The pass over the test images, then every figure drawn: per layer its histogram, grid and unit figures.
    assert lines[-4:] == ["Selectivity null: 20/20 permutations", "Unit galleries: 200/200 images",
                          f"Drawing unit galleries: {figures + 2 * len(LAYERS)}/{figures + 2 * len(LAYERS)} figures",
                          "Per-run analysis: 1/1 runs"]


def _html_pages(root):
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.endswith(".html"))


def test_every_page_opens_in_chromium_with_its_images_links_and_no_errors(browser, unit_pages, tmp_path):
    result, out = unit_pages
    pages = _html_pages(out / "units")
    # The index, the run's page and one page per gallery layer.
    assert len(pages) == 2 + len(LAYERS)
    for page in pages:
        check = browser_check(page)
        assert not page_problems(page, check), (page, page_problems(page, check))
        assert check["links"] and (check["images"] or page.endswith(os.path.join("units", "index.html"))), page
        if check["sorted"] is not None:  # the layer pages' units table sorts by SI both ways
            ascending = check["sorted"]["ascending"]
            assert ascending == sorted(ascending) and check["sorted"]["descending"] == ascending[::-1]
    # The browser renders a layer page (its screenshot was looked at by eye when this was written).
    screenshot(pages[-1], str(tmp_path / "layer_page.png"))
    # report.md links to the index.
    report = (out / "report.md").read_text()
    assert "[units/index.html](units/index.html)" in report and (out / "units" / "index.html").exists()


def test_the_check_fails_on_a_broken_page(browser, tmp_path):
    (tmp_path / "good.png").write_bytes(b"")  # exists but does not decode
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
        '<img src="missing.png"><img src="good.png"><a href="nowhere.html">x</a><a href="#no-anchor">y</a>'
        '<script>console.error("logged on purpose"); undefinedFunction();</script></body></html>'
    )
    problems = page_problems(str(page), browser_check(str(page)))
    text = "\n".join(problems)
    assert "image missing.png did not decode" in text and "image good.png did not decode" in text
    assert "link nowhere.html: no such file" in text and "link nowhere.html: the browser did not load it" in text
    assert "link #no-anchor: the browser did not load it" in text
    assert "console.error: logged on purpose" in text
    assert "undefinedFunction is not defined" in text


def test_galleries_show_the_most_and_least_selective_and_named_units_with_the_analysis_numbers(unit_pages):
    result, out = unit_pages
    units = result.units
    gallery = pd.read_csv(out / "unit_gallery.csv")
    for layer in LAYERS:
        rows = units[units["layer"] == layer]
        alive = rows[~rows["dead"]]
        expected = {int(alive.loc[alive["selectivity"].idxmax(), "unit"]),
                    int(alive.loc[alive["selectivity"].idxmin(), "unit"])}
        if layer == "probe_stem":
            expected |= {0, 2}
        shown = gallery[gallery["layer"] == layer]
        assert set(shown["unit"]) == expected
        # The gallery's own SI (from the maps it streamed) is the analysis' SI.
        reference = rows.set_index("unit").loc[shown["unit"], "selectivity"].to_numpy()
        np.testing.assert_allclose(shown["selectivity"].to_numpy(), reference, rtol=1e-5, atol=1e-7)
        directory = next((out / "units").glob(f"*/{layer}"))
        for unit in expected:
            assert (directory / f"unit_{unit}.png").stat().st_size > 0
        page = (directory / "index.html").read_text()
        # Every unit of the layer in the table; the null's p-value of a shown unit on the page.
        table = re.search(r'<table class="sortable" id="units">(.*?)</table>', page, re.S).group(1)
        assert table.count("<tr") == len(rows) + 1
        p = float(rows.set_index("unit").loc[max(expected), "si_p"])
        assert f"<dt>null p-value</dt><dd>{p:.4f}</dd>" in page
    assert len(pd.read_csv(out / "unit_gallery_images.csv")) == len(gallery) * 2 * 3  # 2 rankings x k = 3


def test_a_repeated_analysis_draws_no_gallery_again_and_writes_the_same_pages(unit_pages, tiny_runs, monkeypatch):
    from tf_selectivity.analysis.stages.units import run_galleries

    result, out = unit_pages
    files = lambda: {p.relative_to(out): p.read_bytes() for p in sorted((out / "units").rglob("*")) if p.is_file()}
    before = files()

    def no_drawing(*args, **kwargs):
        raise AssertionError("the galleries were drawn again")

    monkeypatch.setattr(run_galleries, "draw_run_galleries", no_drawing)
    again = analyze([str(tiny_runs / "runs" / "a0_s0")], str(out), PAGE_OPTIONS, verbose=0)
    assert files() == before  # copied from the cache entry, pages from the cached tables
    for name in ("unit_gallery", "unit_gallery_images", "unit_gallery_tuning"):
        pd.testing.assert_frame_equal(again.tables[name], result.tables[name])


def test_a_unit_out_of_range_fails_before_anything_is_written(tiny_runs, tmp_path):
    out = tmp_path / "analysis"
    options = AnalysisOptions(units=UnitsOptions(page=True, named_units=("probe_stem:16",)), n_resamples=100,
                              similarity=SimilarityOptions(enabled="false"), figures=False,
                              training_curves=TrainingCurvesOptions(enabled=False))
    message = r"units.named_units unit 16 of layer probe_stem is out of range: it has units 0\.\.15"
    with pytest.raises(ParameterError, match=message):
        analyze([str(tiny_runs / "runs" / "a0_s0")], str(out), options, verbose=0)
    assert not out.exists()


def test_unit_indices_are_checked_from_the_model_file_before_any_data_pass(tiny_runs):
    # The widths come from model.keras's config alone (no weights, no responses).
    from tf_selectivity.analysis.pipeline import find_runs
    from tf_selectivity.analysis.runs import load_run_model, probe_widths
    from tf_selectivity.analysis.stages.units.selection import check_unit_choices

    records, _, _ = find_runs([str(tiny_runs / "runs" / "a0_s0")])
    model = load_run_model(records[0])
    expected = {name: int(model.get_layer(name).output.shape[-1]) for name in records[0].probe_names}
    assert probe_widths(records[0]) == expected
    last = expected["probe_stem"] - 1
    options = AnalysisOptions(units=UnitsOptions(page=True, named_units=(f"probe_stem:{last}",)))
    assert check_unit_choices(records, options) == {"probe_stem": [last]}
    options = AnalysisOptions(units=UnitsOptions(page=True, named_units=(f"probe_stem:{last + 1}",)))
    with pytest.raises(ParameterError, match=f"unit {last + 1} of layer probe_stem is out of range"):
        check_unit_choices(records, options)


def test_pages_escape_names_and_link_relatively(tmp_path):
    evil = '<script>alert("x")</script>&'
    tuning = pd.DataFrame({"class": [evil, "b"], "count": [3, 4], "mean": [0.5, 0.1], "ci_low": [0.4, 0.0],
                           "ci_high": [0.6, 0.2], "preferred": [True, False]})
    units = pd.DataFrame({"unit": [1, 0], "selectivity": [0.9, np.nan], "preferred_class": [evil, "b"]})
    layer = LayerPage(evil, "layer", units, "h.png", None, [GalleryUnit(1, "u.png", {"SI": evil}, tuning)])
    written = write_unit_pages(str(tmp_path), [RunPage(evil, "run", {"model": evil}, [layer])], notes=[evil])
    assert [os.path.relpath(p, tmp_path) for p in written] == ["index.html", "run/index.html",
                                                               "run/layer/index.html"]
    for path in written:
        text = open(path, encoding="utf-8").read()
        assert "<script>alert" not in text and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in text
        hrefs = re.findall(r'(?:href|src)="([^"]*)"', text)
        assert hrefs and not any(h.startswith(("/", "file:", "http")) for h in hrefs)
    layer_page = open(written[2], encoding="utf-8").read()
    assert '<a href="#unit-1">1</a>' in layer_page and 'data-value="NaN"' in layer_page
