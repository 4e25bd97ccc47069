"""report.html and matrix.html in a real headless browser (Debian's chromium): the DOM after
pytest-html's JavaScript has run holds the certification summary, the feature rollup, the method
matrix, a failing check's transcript with the offending SSE event marked, and the repro curl; and
what a reader sees (the page's rendered text, CSS applied) leads with the verdict and the failing
checks, with none of pytest-html's leftovers."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import pytest
from support import certify

from conformance.refserver import ServerConfig, ServerThread
from conformance.report import render_matrix, render_reports, write_results

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                "(Debian: apt-get install -y chromium chromium-driver)")

KEY = "sk-browser-test-key"
ONLY = ("schema.chat-completion", "usage.total-is-sum", "stream.done-terminator", "methods.answer-shapes",
        "methods.no-server-error", "auth.missing-key")


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element] = field(default_factory=list)
    text: str = ""

    def all_text(self) -> str:
        return self.text + "".join(child.all_text() for child in self.children)

    def iter(self) -> Iterator[Element]:
        yield self
        for child in self.children:
            yield from child.iter()

    def find(self, tag: str | None = None, **attrs: str) -> list[Element]:
        wanted = {k.rstrip("_"): v for k, v in attrs.items()}
        return [e for e in self.iter() if (tag is None or e.tag == tag)
                and all(v in e.attrs.get(k, "").split() or e.attrs.get(k) == v for k, v in wanted.items())]


class DOM(HTMLParser):
    """Just enough of a DOM to query the browser's serialised document."""

    VOID: ClassVar[set[str]] = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
                                "track", "wbr"}

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in self.VOID:
            self.stack.append(element)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        target = self.stack[-1]
        if target.children:
            target.children.append(Element("#text", {}, text=data))
        else:
            target.text += data


def dump_dom(path: Path, fragment: str = "") -> Element:
    """The document after its scripts ran, as chromium serialises it."""
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        done = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=3000", "--dump-dom",
             path.resolve().as_uri() + fragment],
            capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "<html" in done.stdout, done.stderr[-2000:]
    return DOM(done.stdout).root


# Added to a copy of the page: once it has loaded (its own scripts ran), record what a reader sees.
READER_VIEW = """<script>
window.addEventListener("load", function () {
  ACTION
  var facts = {text: document.body.innerText, marks: []};
  document.querySelectorAll("article pre.transcript mark.offending").forEach(function (mark) {
    var pre = mark.closest("pre"), m = mark.getBoundingClientRect(), p = pre.getBoundingClientRect();
    facts.marks.push({text: mark.innerText, background: getComputedStyle(mark).backgroundColor,
                      inView: m.top >= p.top && m.top < p.bottom, check: mark.closest("article").id});
  });
  var out = document.createElement("pre");
  out.id = "reader-view";
  out.textContent = JSON.stringify(facts);
  document.body.appendChild(out);
});
</script>"""


def reader_view(path: Path, tmp: Path, action: str = "") -> dict[str, Any]:
    """The page's rendered text (`innerText`: CSS-hidden and collapsed content left out) and its marks,
    after the reader's `action` (JavaScript, e.g. a click)."""
    copy = tmp / path.name
    copy.write_text(path.read_text().replace("</body>", READER_VIEW.replace("ACTION", action) + "</body>"))
    facts: dict[str, Any] = json.loads(one(dump_dom(copy).find("pre", id="reader-view")).all_text())
    return facts


@pytest.fixture(scope="module")
def reports(reference_server: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("browser")
    paths = {}
    with ServerThread(ServerConfig(api_key=KEY, faults=frozenset({"stream-no-done", "usage-total-off-by-one"}))) as s:
        broken = certify(s.base_url, only=ONLY, api_key=KEY).to_json()
    paths["broken"] = render_reports(write_results(broken, out / "broken"), out / "broken")
    clean = certify(reference_server.base_url, only=ONLY).to_json()
    paths["clean"] = render_reports(write_results(clean, out / "clean"), out / "clean")
    matrix = render_matrix([paths["clean"]["results"], paths["broken"]["results"]], out / "matrix.html")
    return {"paths": paths, "matrix": matrix, "broken": broken}


@pytest.fixture(scope="module")
def broken_dom(reports: dict[str, Any]) -> Element:
    return dump_dom(reports["paths"]["broken"]["html"])


def one(elements: list[Element]) -> Element:
    assert len(elements) == 1, [e.attrs for e in elements]
    return elements[0]


def test_report_renders_the_certification_summary(broken_dom: Element) -> None:
    dom = broken_dom
    verdict = one(dom.find(id="cert-verdict"))
    assert "NOT CERTIFIED" in verdict.all_text()
    assert "2 MUST checks failed" in verdict.all_text()
    rollup = one(dom.find("table", id="feature-rollup"))
    rows = {row.attrs["data-feature"]: row.all_text() for row in rollup.find("tr") if "data-feature" in row.attrs}
    assert set(rows) == {"core", "streaming", "tools", "json_mode", "methods"}
    assert "failed" in rows["streaming"]
    assert "certified" in rows["methods"]
    matrix = one(dom.find("table", id="method-matrix"))
    probes = [row.all_text() for row in matrix.find("tr")][1:]
    assert any("POST /v1/chat/completions" in p and "200" in p for p in probes)
    assert any("405" in p for p in probes)
    failing = one(dom.find("ol", id="failing-checks"))
    links = [a.attrs["href"] for a in failing.find("a")]
    assert links == ["#check-stream.done-terminator", "#check-usage.total-is-sum"]


def test_failing_check_shows_the_marked_event_and_a_curl(reports: dict[str, Any], broken_dom: Element) -> None:
    detail = one(broken_dom.find("article", id="check-stream.done-terminator"))
    text = detail.all_text()
    assert "Expected" in text
    assert "Received" in text
    assert "a final `data: [DONE]` event" in text
    assert "terminated with a data: [DONE] message" in text  # the clause's quote
    transcript = one(detail.find("pre", class_="transcript"))
    mark = one(transcript.find("mark", class_="offending"))
    marked = mark.all_text()
    # The marked bytes are the stream's last event: the one after which [DONE] should have come.
    check = next(c for c in reports["broken"]["checks"] if c["id"] == "stream.done-terminator")
    transcript_json = check["transcripts"][check["failures"][0]["exchange"]]
    start, end, _ = transcript_json["sse"]["event_offsets"][-1]
    assert marked == transcript_json["response"]["body"].encode()[start:end].decode().rstrip("\r\n")
    assert marked.startswith("data: {")
    curl = one(detail.find("pre", class_="repro")).all_text()
    assert curl.startswith("curl ")
    assert '"Authorization: Bearer $OPENAI_API_KEY"' in curl
    assert KEY not in curl


def test_pytest_html_table_is_rendered_by_its_javascript(broken_dom: Element) -> None:
    table = one(broken_dom.find("table", id="results-table"))
    rows = table.find("tbody", class_="results-table-row")
    assert len(rows) == len(ONLY)  # built by pytest-html's app.js from its data blob
    ids = {cell.all_text().strip() for row in rows for cell in row.find("td", class_="col-testId")}
    assert ids == set(ONLY)
    failed = [row for row in rows if "stream.done-terminator" in row.all_text()]
    assert failed[0].find("a", href="#check-stream.done-terminator")  # the row links to the full detail


def extras_row(dom: Element, check_id: str) -> Element:
    """The row of pytest-html's table that holds a check's detail."""
    return one([row for row in dom.find("tr", class_="extras-row") if row.find(id=f"check-{check_id}")])


def test_a_link_to_a_collapsed_check_opens_it(reports: dict[str, Any], broken_dom: Element) -> None:
    assert "hidden" in extras_row(broken_dom, "schema.chat-completion").attrs["class"].split()  # passed: collapsed
    opened = dump_dom(reports["paths"]["clean"]["html"], "#check-schema.chat-completion")
    assert "hidden" not in extras_row(opened, "schema.chat-completion").attrs["class"].split()
    assert "hidden" in extras_row(opened, "usage.total-is-sum").attrs["class"].split()  # only the linked one
    assert "PARTIAL RUN" in one(opened.find(id="cert-verdict")).all_text()  # a selection never certifies


def test_what_a_reader_sees(reports: dict[str, Any], tmp_path: Path) -> None:
    """The verdict first, then the failing checks in full, then one list of every check (failures on top),
    and none of pytest-html's leftovers: no empty "Summary", no second Environment table."""
    view = reader_view(reports["paths"]["broken"]["html"], tmp_path)
    text = view["text"]
    lines = [line.strip() for line in text.splitlines()]
    assert "Summary" not in lines
    assert "Environment" not in lines
    assert "Other checks" not in text
    position = 0
    for seen in ("NOT CERTIFIED", "2 MUST checks failed", "Failing checks (2)", "stream.done-terminator", "Expected",
                 "All checks (6)"):
        position = text.index(seen, position)  # each one after the one before
    body = table_rows(text)
    header = next(line for line in text[text.index("All checks (6)"):].splitlines() if line.startswith("Result"))
    assert header.split("\t") == ["Result", "Check ID", "Level", "Feature", "Duration"]  # no empty Links column
    assert [cells[1] for cells in body[:2]] == ["stream.done-terminator", "usage.total-is-sum"], body
    assert {cells[0] for cells in body[2:]} == {"Passed"}
    assert len(body) == len(ONLY)  # each check once
    durations = [cells[4] for cells in body]
    assert all(d.endswith((" ms", " s")) and ":" not in d for d in durations), durations
    # The stream failure's transcript is scrolled to its offending event, marked in red.
    stream = [mark for mark in view["marks"] if mark["check"] == "check-stream.done-terminator"]
    assert len(stream) == 1
    check = next(c for c in reports["broken"]["checks"] if c["id"] == "stream.done-terminator")
    transcript = check["transcripts"][check["failures"][0]["exchange"]]
    start, end, _ = transcript["sse"]["event_offsets"][-1]
    assert stream[0]["text"] == transcript["response"]["body"].encode()[start:end].decode().rstrip("\r\n")
    assert stream[0]["background"] not in ("rgba(0, 0, 0, 0)", "transparent")
    assert stream[0]["inView"]
    assert KEY not in text


def table_rows(text: str) -> list[list[str]]:
    table = text[text.index("All checks ("):]
    rows = [line.split("\t") for line in table.splitlines() if "\t" in line]
    return [cells for cells in rows if cells[0] in ("Failed", "Passed", "Skipped", "Error")]


def test_sorting_by_duration_orders_ms_and_seconds(reports: dict[str, Any], tmp_path: Path) -> None:
    """pytest-html sorts its duration column by parsing `00:00:09`; ours (`25 ms`, `9.3 s`) sorts too."""
    results = json.loads(reports["paths"]["broken"]["results"].read_text())
    for check, seconds in zip(results["checks"], (9.3, 0.025, 1.2, 0.3, 0.004, 0.05), strict=True):
        check["duration_s"] = seconds
    out = tmp_path / "sorted"
    page = render_reports(write_results(results, out), out)["html"]
    view = reader_view(page, tmp_path, 'document.querySelector(\'th[data-column-type="elapsed"]\').click();')
    durations = [cells[4] for cells in table_rows(view["text"])]
    assert durations == ["4 ms", "25 ms", "50 ms", "300 ms", "1.2 s", "9.3 s"]


def test_matrix_page(reports: dict[str, Any]) -> None:
    dom = dump_dom(reports["matrix"])
    table = one(dom.find("table", id="matrix"))
    headers = [th.all_text() for th in table.find("th", class_="target")]
    assert len(headers) == 2
    for header, run in zip(headers, ("clean", "broken"), strict=True):  # one model, two base URLs
        results = json.loads(reports["paths"][run]["results"].read_text())
        assert results["target"]["base_url"].removeprefix("http://") in header
        assert results["target"]["model"] in header
    row = one(table.find("tr", **{"data-check": "stream.done-terminator"}))
    cells = row.find("td", class_="cell")
    assert [c.attrs["class"].split()[-1] for c in cells] == ["c-passed", "c-failed"]
    assert cells[1].find("a")[0].attrs["href"] == "broken/report.html#check-stream.done-terminator"
