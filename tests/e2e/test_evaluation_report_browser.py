"""The accuracy report in a real browser: headless Chromium (the system's), driven by Playwright.

The reports come from the lab itself: `python -m lab.evaluate` on the sample against the fake
upstream of test_evaluation_command.py (two of the twelve students fail), and the same run
without a provider key (every student fails). Each is opened at a desktop width (1280 px) and a
phone width (420 px). The page must not scroll sideways; anything wider than the screen must sit
in its own scroll box (nothing cut off); no text drawn over another; no console error; text
contrast at least WCAG AA; and
the texts a teacher relies on are there, with the meaning of every coloured cell also in text.

Full-page screenshots go to test-artifacts/accuracy-report/ (git-ignored) for a person to look
at: one per report and width, and a grey-scale one per report (Chromium's achromatopsia
emulation) to see that it reads without colour. The reports' HTML is copied beside them.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from testbed.openai_upstream import FakeOpenAI
from tests.e2e.test_evaluation_command import PROVIDER_KEY, SAMPLE, ScriptedModel, evaluate

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "accuracy-report"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; Playwright's own download is not used
# Headless on a closed network: without the background-networking flags Chromium's own
# connections (updates, sync, field trials) are refused and logged as errors.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP, PHONE = 1280, 420
TIMES = "\N{MULTIPLICATION SIGN}"  # as in "2 times this cause" in the report

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"Chromium is not installed ({CHROMIUM}; .ci/run installs it with apt-get): "
    "the accuracy report is not checked in a browser",
)

# Elements reaching past the left or right edge of the screen that are not inside a box that
# scrolls sideways (so part of them cannot be seen), and boxes that clip what overflows them.
CUT_OFF = """() => {
  const width = window.innerWidth;
  const name = e => e.tagName.toLowerCase() + (e.className ? '.' + String(e.className).split(' ')[0] : '')
    + ' "' + e.textContent.trim().slice(0, 30) + '"';
  const scrolls = e => ['auto', 'scroll'].includes(getComputedStyle(e).overflowX);
  const problems = [];
  for (const element of document.querySelectorAll('body, body *')) {
    if (!element.checkVisibility()) continue;  // not shown, e.g. inside a closed <details>
    const overflow = getComputedStyle(element).overflowX;
    if (['hidden', 'clip'].includes(overflow) && element.scrollWidth > element.clientWidth + 1)
      problems.push(name(element) + ' clips its content');
    const box = element.getBoundingClientRect();
    if (box.left >= -1 && box.right <= width + 1) continue;
    let holder = element.parentElement;
    while (holder && !scrolls(holder)) holder = holder.parentElement;
    const held = holder && holder !== document.documentElement && holder !== document.body;
    const inside = held && holder.getBoundingClientRect().right <= width + 1;
    if (!inside) problems.push(`${name(element)} spans ${box.left.toFixed(0)}..${box.right.toFixed(0)} px`);
  }
  return problems;
}"""

# Pairs of texts drawn over each other (e.g. a label too wide for its column running into the
# value beside it): the boxes of the lines of every text node, compared with those below them.
OVERLAPPING_TEXT = """() => {
  const lines = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.textContent.trim() || !node.parentElement.checkVisibility()) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    for (const box of range.getClientRects())
      if (box.width > 0 && box.height > 0) lines.push({box, node});
  }
  lines.sort((a, b) => a.box.top - b.box.top);
  const overlaps = [];
  for (let i = 0; i < lines.length; i++) {
    const a = lines[i].box;
    for (let j = i + 1; j < lines.length && lines[j].box.top < a.bottom - 1; j++) {
      const b = lines[j].box;
      const across = Math.min(a.right, b.right) - Math.max(a.left, b.left);
      if (across > 1 && lines[i].node !== lines[j].node)
        overlaps.push(`"${lines[i].node.textContent.trim().slice(0, 30)}" over `
          + `"${lines[j].node.textContent.trim().slice(0, 30)}"`);
    }
  }
  return overlaps;
}"""

# Every shown text whose colour contrasts less than WCAG AA with the background painted under it
# (4.5:1; 3:1 for large text). Backgrounds are composited from the page down to the element.
LOW_CONTRAST = """() => {
  const parse = value => {
    const m = value.match(/rgba?\\(([^)]*)\\)/);
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, under) => [0, 1, 2].map(i => top[i] * top[3] + under[i] * (1 - top[3])).concat(1);
  const luminance = rgb => {
    const c = v => (v /= 255) <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    return 0.2126 * c(rgb[0]) + 0.7152 * c(rgb[1]) + 0.0722 * c(rgb[2]);
  };
  const painted = element => {
    const chain = [];
    for (let e = element; e; e = e.parentElement) chain.unshift(e);
    let colour = [255, 255, 255, 1];
    for (const e of chain) {
      const own = parse(getComputedStyle(e).backgroundColor);
      if (own && own[3] > 0) colour = over(own, colour);
    }
    return colour;
  };
  const low = [];
  const seen = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const element = walker.currentNode.parentElement;
    if (!walker.currentNode.textContent.trim() || seen.has(element)) continue;
    seen.add(element);
    const style = getComputedStyle(element);
    if (!element.checkVisibility({visibilityProperty: true})) continue;
    const background = painted(element);
    const text = over(parse(style.color), background);
    const [a, b] = [luminance(text), luminance(background)];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(style.fontSize), weight = Number(style.fontWeight);
    const large = size >= 24 || (size >= 18.66 && weight >= 700);
    if (ratio < (large ? 3 : 4.5))
      low.push(`"${element.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}:1`);
  }
  return low;
}"""


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    """The folders of two runs of the lab: 'some-failed' (2 of 12, and thresholds) and 'all-failed'
    (no provider key)."""
    workdir = tmp_path_factory.mktemp("reports")
    with FakeOpenAI(api_key=PROVIDER_KEY) as fake:
        fake.responder = ScriptedModel(SAMPLE)
        # Two thresholds, one met (82.5%) and one not (Variables and Conditionals at 90%): exit 1.
        limits = ["--min-accuracy", "0.8", "--min-concept-pass-fail-accuracy", "0.95"]
        some = evaluate(fake, workdir, "--output", "some-failed", "--quiet", *limits)
        assert some.returncode == 1, some.stdout + some.stderr
        no_key = {"OPENAI_API_KEY": ""}
        every = evaluate(fake, workdir, "--output", "all-failed", "--quiet", "--no-cache", env=no_key)
        assert every.returncode == 3, every.stderr
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    for name in ("some-failed", "all-failed"):
        shutil.copy(workdir / name / "report.html", ARTIFACTS / f"{name}.html")
    return {name: workdir / name for name in ("some-failed", "all-failed")}


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Opened:
    """A report open in a page of `width` CSS pixels, with the console errors it logged."""

    def __init__(self, browser: Browser, folder: Path, width: int) -> None:
        self.page: Page = browser.new_page(viewport={"width": width, "height": 900})
        self.errors: list[str] = []
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto((folder / "report.html").as_uri())

    def text(self, selector: str) -> str:
        return " ".join(self.page.locator(selector).inner_text().split())

    def texts(self, selector: str) -> list[str]:
        return [" ".join(text.split()) for text in self.page.locator(selector).all_inner_texts()]


@pytest.fixture
def opened(browser):
    pages: list[Opened] = []

    def open_report(folder: Path, width: int) -> Opened:
        pages.append(Opened(browser, folder, width))
        return pages[-1]

    yield open_report
    for report in pages:
        report.page.close()


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
@pytest.mark.parametrize("run", ["some-failed", "all-failed"])
def test_the_report_fits_the_screen_and_its_text_is_legible(reports, opened, run, width):
    report = opened(reports[run], width)
    page = report.page
    page.screenshot(path=ARTIFACTS / f"{run}-{width}px.png", full_page=True)

    scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll_width <= inner_width, f"the page scrolls sideways: {scroll_width} px in {inner_width} px"
    assert page.evaluate(CUT_OFF) == []
    assert page.evaluate(OVERLAPPING_TEXT) == []
    assert page.evaluate(LOW_CONTRAST) == []
    assert report.errors == []

    if width == DESKTOP:  # for a person to check that the page reads without colour
        session = page.context.new_cdp_session(page)
        session.send("Emulation.setEmulatedVisionDeficiency", {"type": "achromatopsia"})
        page.screenshot(path=ARTIFACTS / f"{run}-{width}px-grey.png", full_page=True)


def test_a_run_where_some_students_failed_says_how_many_and_why(reports, opened):
    report = opened(reports["some-failed"], PHONE)
    notice = report.text("[data-notice]")
    assert "2 of 12 students could not be graded" in notice
    assert f"1 {TIMES} no usable answer from the AI (status 502)" in notice
    assert f"1 {TIMES} the AI provider refused the request (status 400)" in notice
    assert "maximum context length" in notice  # the provider's own words
    assert report.texts("tr[data-failed] th") == ["hana", "lea"]


def test_threshold_checks_say_in_words_what_was_needed_and_whether_it_was_met(reports, opened):
    report = opened(reports["some-failed"], DESKTOP)
    assert report.text("[data-measure='thresholds.passed']") == "FAIL"
    rows = report.texts("tr[data-check]")
    assert rows[0] == "Exact-match accuracy, all key concepts at least 80.0% 82.5% ✓ met"
    assert "Pass/fail accuracy of Variables at least 95.0% 90.0% ✗ not met" in rows
    assert len(rows) == 5


def test_the_heat_maps_name_their_axes_and_mark_agreement_in_text(reports, opened):
    report = opened(reports["some-failed"], PHONE)
    page = report.page
    captions = report.texts("[data-matrix] caption")
    assert captions == ["All key concepts", "Variables", "Conditionals", "Functions", "User Input"]
    for matrix in page.locator("[data-matrix]").all():
        assert [" ".join(t.split()) for t in matrix.locator("th.axis").all_inner_texts()] == [
            "Human label",
            "AI grade",
        ]
    # Overall matrix (test_evaluation_command.py): rows are labels E, C, L, N; columns grades.
    overall = [report.texts(f"[data-matrix=overall] tr:nth-child({row}) td") for row in range(3, 7)]
    assert overall == [
        ["10 ✓", "1 ≠", "0", "0"],
        ["2 ≠", "11 ✓", "1 ✗", "0"],
        ["0", "1 ✗", "3 ✓", "1 ≠"],
        ["0", "0", "1 ≠", "9 ✓"],
    ]
    for legend in report.texts("ul.legend"):  # the heat maps' and the per-student table's
        assert "✓ same grade" in legend and "≠ different grade, same pass/fail" in legend
        assert "✗ pass/fail differs" in legend

    # The per-student table says in text what its colours say.
    summaries = {
        kind: report.texts(f"table.students td.{kind} summary") for kind in ("agree", "disagree", "flip")
    }
    assert len(summaries["disagree"]) == 5 and len(summaries["flip"]) == 2
    assert all(text.startswith("✓ ") for text in summaries["agree"])
    assert all(text.startswith("≠ ") for text in summaries["disagree"])
    assert summaries["flip"] == ["✗ Limited → Convincing", "✗ Convincing → Limited"]  # ivo, jun


def test_numbers_time_parameters_and_confidence_read_as_a_teacher_would_say_them(reports, opened):
    report = opened(reports["some-failed"], DESKTOP)
    assert re.fullmatch(r"\d{1,2} [A-Z][a-z]+ \d{4}, \d\d:\d\d UTC", report.text("time"))
    assert report.text("[data-measure='usage.total_tokens']") == "3,850"
    parameters = dict(zip(report.texts("dl.parameters dt"), report.texts("dl.parameters dd"), strict=True))
    assert parameters["Comments removed"] == "yes: comments were taken out of each program before grading"
    assert parameters["Students"] == "all 12 labelled students"
    assert parameters["Answers per student"] == "1"
    assert not any(word in " ".join(parameters.values()) for word in ("True", "False", "None"))

    confidence = json.loads((reports["some-failed"] / "confidence.json").read_text(encoding="utf-8"))
    shown = {concept: report.text(f"[data-measure='confidence.{concept}']") for concept in confidence}
    assert (
        shown == confidence == dict.fromkeys(["Variables", "Conditionals", "Functions", "User Input"], "HIGH")
    )
    assert "confidence.json" in report.text("body")


def test_a_run_where_every_student_failed_says_so_first_and_shows_no_empty_measures(reports, opened):
    report = opened(reports["all-failed"], PHONE)
    page = report.page
    notice = page.locator("[data-notice=nothing-graded]")
    assert "No student could be graded. All 12 grading attempts failed" in report.text("[data-notice]")
    assert f"12 {TIMES} no key for the AI provider (status 503)" in report.text("[data-notice]")
    assert "OPENAI_API_KEY" in report.text("[data-notice]")
    # Up front: the first thing after the title, on the first screen of a phone.
    box = notice.bounding_box()
    assert box["y"] + box["height"] < 900
    assert page.evaluate("document.querySelector('h1 ~ div').dataset.notice") == "nothing-graded"

    assert page.locator("[data-matrix]").count() == 0
    assert page.locator("table.students").count() == 0
    headings = report.texts("h2")
    assert "Confusion matrices" not in headings and "Per key concept" not in headings
    body = report.text("body")
    assert "n/a" not in body and "0.0%" not in body
    assert len(report.texts("tr[data-failed]")) == 12
