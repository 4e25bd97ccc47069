"""HTML that pytest-html's hooks place around its own results table: the certification summary.

Everything is computed from results.json, read as its records (`_records.py`). The API key never
reaches this module: transcripts are redacted by the engine, and repro commands read the key from
`$OPENAI_API_KEY` at run time.

Layout, top to bottom: a verdict banner, the run's facts, the per-feature rollup, the GET-vs-POST
method matrix, the failing checks (a linked list, then each one in full: Expected / Received, the
clause, the transcript with the offending SSE bytes marked, a repro curl). Then pytest-html's
sortable, filterable table is the one list of every check: a failing check's row links up to its
detail, any other check's row opens on its detail (collapsed when it passed). What pytest-html
would add besides (its Environment table, an empty "Summary" heading, a test-run timer) is left
empty by its hooks and hidden. Before that table comes the coverage of the documented API (each
statement of the document with the verdict of its checks, `_coverage_html.py`).
"""

from __future__ import annotations

import html
import itertools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from .._model import Level, RunVerdict, Verdict
from ._coverage_html import coverage_section
from ._records import CheckRecord, Results, Transcript
from ._results import (
    VERDICTS,
    anchor,
    concurrency_note,
    curl_for,
    duration,
    example_transcript,
    failing,
    feature_rollup,
    first_line,
    flaky_note,
    repeat_note,
    root_cause_line,
    route_label,
)

TRANSCRIPTS_PER_CHECK = 3
FAILURES_PER_CHECK = 10

STYLE = """
<style>
.cert, .row-detail { --ok:#1a7f37; --ok-bg:#dafbe1; --bad:#cf222e; --bad-bg:#ffebe9; --warn:#9a6700;
  --warn-bg:#fff8c5; --na:#57606a; --na-bg:#f6f8fa; --line:#d0d7de;
  font: 14px/1.5 -apple-system, "Segoe UI", "Noto Sans", Helvetica, Arial, sans-serif; color:#1f2328; }
.cert { max-width: 1200px; margin: 0 0 1em 0; }
.cert h2 { font-size: 22px; margin: .2em 0 .6em; }
.cert h3 { font-size: 17px; margin: 1.6em 0 .5em; padding-bottom: .2em; border-bottom: 1px solid var(--line); }
.cert h4 { font-size: 15px; margin: 0 0 .4em; }
.cert p, .cert li, .cert dd, .cert td, .cert th, .cert summary { color:#1f2328; }
.cert code, .cert pre, .row-detail code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font-size: 12.5px; }
.cert a { color: #0969da; }
.cert pre.transcript { position: relative; }
.cert pre { white-space: pre-wrap; overflow-wrap: anywhere; background:#f6f8fa; border:1px solid var(--line);
  border-radius: 6px; padding: .6em .8em; margin: .3em 0 .8em; max-height: 32em; overflow-y: auto; }
.banner { border-radius: 8px; padding: .8em 1.2em; margin-bottom: 1em; border: 1px solid; }
.banner .label { font-size: 28px; font-weight: 700; letter-spacing: .02em; }
.banner .sub { font-size: 15px; margin-top: .2em; }
.v-passed, .f-certified, .c-passed { background: var(--ok-bg); color: var(--ok); border-color: var(--ok); }
.v-failed, .f-failed, .c-failed { background: var(--bad-bg); color: var(--bad); border-color: var(--bad); }
.v-incomplete, .v-invalid, .v-partial, .f-partial, .c-error, .c-inconclusive {
  background: var(--warn-bg); color: var(--warn); border-color: var(--warn); }
.f-not-tested, .f-unsupported, .c-skipped, .c-unsupported, .c-not_applicable {
  background: var(--na-bg); color: var(--na); border-color: var(--line); }
.banner .label, .banner .sub { color: inherit; }
.badge { display: inline-block; border: 1px solid; border-radius: 1em; padding: 0 .6em; font-size: 12px;
  font-weight: 600; white-space: nowrap; }
.cert table { border-collapse: collapse; margin: .4em 0; }
.cert td, .cert th { border: 1px solid var(--line); padding: .3em .7em; text-align: left; vertical-align: top; }
.cert th { background: #f6f8fa; font-weight: 600; }
.cert td.num { text-align: right; font-variant-numeric: tabular-nums; }
.cert td.zero { color: #8c959f; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15em 1.2em; margin: 0; }
.facts dt { font-weight: 600; color: #57606a; }
.facts dd { margin: 0; }
#failing-checks li { margin: .25em 0; }
#failing-checks a { color: #0969da; font-weight: 600; }
/* A check's box takes its verdict's colour on the left edge only; its text stays readable. */
.check { border: 1px solid var(--line); border-left: 6px solid; border-radius: 6px; padding: .8em 1em;
  margin: 1em 0; background: #fff; color: #1f2328; }
.check.c-failed { border-left-color: var(--bad); }
.check.c-error { border-left-color: var(--warn); }
.check.c-passed { border-left-color: var(--ok); }
.check.c-skipped, .check.c-unsupported { border-left-color: #8c959f; }
.check > summary { cursor: pointer; }
.check .meta { color: #57606a; font-size: 13px; }
.check dl.ver { display: grid; grid-template-columns: max-content 1fr; gap: .1em 1em; margin: .5em 0; }
.check dl.ver dt { font-weight: 600; }
.check dl.ver dd { margin: 0; }
.check dl.ver dd pre { margin: 0; max-height: 12em; }
.check blockquote { margin: .3em 0; padding: .2em .8em; border-left: 4px solid var(--line); color: #424a53; }
.check mark.offending { background: #ffd1d1; outline: 2px solid var(--bad); border-radius: 2px; }
.check .t::before { content: attr(data-t); color: #8c959f; font-size: 11px; margin-right: .6em;
  user-select: none; }
.check pre.repro { background: #0d1117; color: #e6edf3; border-color: #0d1117; }
.check .note { color: #57606a; font-size: 13px; }
.row-detail { white-space: normal; max-width: none; margin: 0; }
.row-detail .check { margin: .2em 0; }
.row-detail a { color: #0969da; }
.row-detail pre { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 12.5px; }
:target { scroll-margin-top: 1em; }
.check:target { box-shadow: 0 0 0 3px #0969da55; }
/* pytest-html's leftovers: its Environment table (emptied by the pytest_metadata hook: the run's facts
   are above), its "Summary" heading (the certification is the summary), the time it took to replay
   results.json, an empty log box, and its xfail/rerun filters: none means anything for a conformance run. */
#environment-header, #environment, .summary__data > h2, .logwrapper:not(:has(.log)), p.run-count,
.filters input[data-test-result="xfailed"], .filters input[data-test-result="xpassed"],
.filters input[data-test-result="rerun"], .filters input[data-test-result="retried"],
.filters input[data-test-result="xfailed"] + span, .filters input[data-test-result="xpassed"] + span,
.filters input[data-test-result="rerun"] + span, .filters input[data-test-result="retried"] + span { display: none; }
</style>
<script>
// Following a link to a check opens its row of pytest-html's table (or a collapsed <details>) first.
function openTarget() {
  var id = location.hash ? decodeURIComponent(location.hash.slice(1)) : "";
  var el = id ? document.getElementById(id) : null;
  var row = el ? el.closest("tr.extras-row") : null;
  if (row && row.classList.contains("hidden")) {
    var toggle = row.parentElement.querySelector("tr.collapsible td:not(.col-links)");
    if (toggle) toggle.click();  // pytest-html redraws its table: find the element again
    el = document.getElementById(id);
  }
  for (var node = el; node; node = node.parentElement) { if (node.tagName === "DETAILS") node.open = true; }
  if (el) el.scrollIntoView();
}
// Scroll each transcript to its first offending event, so the marked bytes are in view.
function showMarks() {
  document.querySelectorAll("pre.transcript mark.offending").forEach(function (mark) {
    var pre = mark.closest("pre");
    if (pre.scrollTop === 0) pre.scrollTop = Math.max(0, mark.offsetTop - 80);
  });
}
window.addEventListener("hashchange", openTarget);
window.addEventListener("DOMContentLoaded", function () { showMarks(); openTarget(); });
</script>
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def title(results: Results) -> str:
    return f"Chat Completions conformance — {results.target.model} @ {results.target.base_url}"


def summary_sections(results: Results, senders: dict[str, list[str | None]] | None = None) -> list[str]:
    """Our part of the page, above pytest-html's table; `senders` is `exchange_senders(results.checks)`."""
    senders = senders or {}
    return [
        STYLE,
        '<section class="cert" id="certification">',
        "<h2>Certification</h2>",
        banner(results),
        root_causes_section(results),
        facts(results),
        feature_table(results),
        method_matrix(results),
        flaky_section(results),
        failing_section(results, senders),
        not_executed(results),
        coverage_section(results.checks),
        all_checks_heading(results),  # right above pytest-html's table, which is the list of every check
        "</section>",
    ]


def banner(results: Results) -> str:
    verdict = results.verdict
    musts = [c for c in results.checks if c.level is Level.MUST and c.outcome is Verdict.FAILED]
    if verdict is RunVerdict.FAILED:
        sub = f"{len(musts)} MUST check{'s' if len(musts) != 1 else ''} failed"
    elif verdict is RunVerdict.PASSED:
        sub = (f"every MUST check{' (and SHOULD: --strict)' if results.strict else ''} passed or did "
               f"not apply ({results.executed} checks judged)")
    else:
        sub = results.reason or "the run did not judge every planned check: it certifies nothing"
    target = results.target
    return (f'<div class="banner v-{esc(verdict)}" id="cert-verdict" data-verdict="{esc(verdict)}">'
            f'<div class="label">{esc(results.headline)}</div>'
            f'<div class="sub">{esc(sub)} · {esc(target.model)} @ {esc(target.base_url)} · '
            f'profile {esc(results.profile)} · depth {esc(results.depth)}</div></div>')


def root_causes_section(results: Results) -> str:
    """The failures grouped by cause (decided by the engine), each with a curl that reproduces it."""
    causes = results.root_causes
    if not causes:
        return ""
    out = [f'<h3 id="root-causes">{esc(root_cause_line(results))}</h3>'
           '<p class="note">Failures that share one cause, grouped by the engine from the evidence: the same '
           "answer shape, the same status for one class of input, one framing or ignored parameter, one schema key. "
           "Each cause lists the checks it fails and one exchange that shows it.</p>",
           '<ol class="root-causes" id="root-causes-list">']
    for number, cause in enumerate(causes, start=1):
        links = ", ".join(f'<a href="#{esc(anchor(c))}"><code>{esc(c)}</code></a>' for c in cause.checks)
        transcript = example_transcript(results, cause)
        repro = ""
        if transcript is not None and cause.example is not None:
            example = cause.example
            repro = (f'<p><b>Reproduce</b> <span class="note">(transcript #{example.transcript} of '
                     f'<a href="#{esc(anchor(example.check))}">{esc(example.check)}</a>; reads the key from '
                     f"<code>$OPENAI_API_KEY</code>)</span></p>"
                     f'<pre class="repro"><code>{esc(curl_for(transcript))}</code></pre>')
        failures = cause.failures
        out.append(f'<li id="root-cause-{number}" data-cause="{esc(cause.id)}"><b>{_code(cause.title)}</b> '
                   f'<span class="badge">{esc(cause.rule)}</span><br><span class="meta">'
                   f'{len(cause.checks)} check{"s" if len(cause.checks) != 1 else ""}, {failures} '
                   f'failure{"s" if failures != 1 else ""}: {links}</span>{repro}</li>')
    out.append("</ol>")
    return "".join(out)


def _code(text: str) -> str:
    """Escaped text with its `backticked` parts as <code>."""
    parts = esc(text).split("`")
    return "".join(f"<code>{part}</code>" if i % 2 else part for i, part in enumerate(parts))


def flaky_section(results: Results) -> str:
    """--repeat: pass^k, and each check whose verdict changed between runs."""
    if results.repeat is None:
        return ""
    flaky = [c for c in results.checks if c.flaky]
    items = "".join(f'<li><span class="badge">{esc(c.level)}</span> <a href="#{esc(anchor(c.id))}"><code>'
                    f"{esc(c.id)}</code></a> — {esc(flaky_note(c))}</li>" for c in flaky)
    listing = (f'<ul id="flaky-checks">{items}</ul><p class="note">A flaky MUST check leaves its feature partial: '
               f"neither a pass nor a failure is proven.</p>" if flaky else
               '<p id="flaky-checks">None: every repeated check gave the same verdict each time.</p>')
    return f'<h3 id="flaky">Repeated checks</h3><p>{esc(repeat_note(results))}</p>{listing}'


def facts(results: Results) -> str:
    counted = results.summary.counts
    counts = ", ".join(f"{counted[v]} {v}" for v in VERDICTS if counted.get(v))
    target = results.target
    rows = [
        ("Checks", f"{results.executed} of {results.planned} planned judged: {counts}"),
        ("Run complete", "yes" if results.run_complete else f"NO — {results.reason or 'stopped early'}"),
        ("Cost", f"{results.requests} requests, {results.tokens} tokens, {duration(results.duration_s)}"),
        ("Target", target.base_url + (" (built-in reference server)" if target.builtin else "")),
        ("Model", target.model),
        ("Profile / depth", f"{results.profile} / {results.depth}"
                            + (" / strict: every SHOULD counted as MUST" if results.strict else "")),
        ("Chat route", route_label(results)),
        ("Selection", "; ".join(results.selection) or "the whole catalogue"),
        *([("Concurrency", concurrency_note(results))] if concurrency_note(results) else []),
        *([("Repeat", repeat_note(results))] if repeat_note(results) else []),
        ("Suite", f"openai-conformance {results.suite_version}, started {results.started_at}"),
    ]
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in rows)
    return f'<dl class="facts" id="run-facts">{items}</dl>'


def feature_table(results: Results) -> str:
    out = ['<h3>Per feature</h3><table id="feature-rollup"><tr><th>Feature</th><th>Certification</th>'
           "<th>MUST passed</th>" + "".join(f"<th>{v}</th>" for v in VERDICTS) + "</tr>"]
    for feature, row in feature_rollup(results).items():
        state = row.certification
        cells = "".join(f'<td class="num{" zero" if n == 0 else ""}">{n}</td>' for n in row.counts.values())
        out.append(f'<tr data-feature="{esc(feature)}"><td><b>{esc(feature)}</b></td>'
                   f'<td class="f-{esc(state)}"><b>{esc(state)}</b></td>'
                   f'<td class="num">{row.must_passed} / {row.must_total}</td>{cells}</tr>')
    out.append("</table>")
    return "".join(out)


def method_matrix(results: Results) -> str:
    rows: list[Mapping[str, Any]] = []
    for check in results.checks:
        rows.extend(check.details.get("method_matrix", []))
    head = "<h3>GET vs POST: method matrix</h3>"
    if not rows:
        return head + '<p id="method-matrix">Not probed in this run (the methods checks did not run).</p>'
    out = [head, '<table id="method-matrix"><tr><th>Request</th><th>Status</th><th>Answered as</th>'
           "<th>Allow</th><th>Judgement</th></tr>"]
    for row in rows:
        out.append(f"<tr><td><code>{esc(row.get('request'))}</code></td><td>{esc(row.get('status'))}</td>"
                   f"<td>{esc(row.get('shape', ''))}</td><td>{esc(row.get('allow') or '')}</td>"
                   f'<td class="{_judgement_class(row)}">{esc(row.get("judgement", ""))}</td></tr>')
    out.append("</table>")
    return "".join(out)


def _judgement_class(row: Mapping[str, Any]) -> str:
    ok = row.get("ok", row.get("verdict", row.get("judgement")))
    if ok in (True, "passed", "ok"):
        return "c-passed"
    if ok in (False, "failed", "invalid"):
        return "c-failed"
    return ""


def failing_section(results: Results, senders: dict[str, list[str | None]] | None = None) -> str:
    checks = failing(results)
    errors = sum(c.outcome is Verdict.ERROR for c in checks)
    title = f"Failing checks ({len(checks) - errors})" + (f" and errors ({errors})" if errors else "")
    out = [f'<h3 id="failing">{title}</h3>']
    if not checks:
        return out[0] + '<p id="failing-checks">None: every check that ran passed, was skipped or is unsupported.</p>'
    out.append('<ol id="failing-checks">')
    for check in checks:
        why = first_line(check.failures[0].expected if check.failures else check.message, 110)
        flaky = ' <span class="badge c-inconclusive">flaky</span>' if check.flaky else ""
        out.append(f'<li><span class="badge c-{esc(check.outcome)}">{esc(check.outcome)}</span> '
                   f'<span class="badge">{esc(check.level)}</span>{flaky} '
                   f'<a href="#{esc(anchor(check.id))}"><code>{esc(check.id)}</code></a> — {esc(why)}</li>')
    out.append("</ol>")
    out.extend(check_detail(check, senders=(senders or {}).get(check.id, [])) for check in checks)
    return "".join(out)


def not_executed(results: Results) -> str:
    ids = results.not_executed
    if not ids:
        return ""
    items = "".join(f'<li id="{esc(anchor(i))}"><code>{esc(i)}</code></li>' for i in ids)
    return (f'<h3>Not executed ({len(ids)})</h3><p>The run stopped before these checks sent a request: '
            f'{esc(results.reason or "budget or deadline")}.</p><ul id="not-executed">{items}</ul>')


def all_checks_heading(results: Results) -> str:
    """The heading of pytest-html's table, which follows: the one list of every check."""
    return (f'<h3 id="all-checks">All checks ({len(results.checks)})</h3><p class="note">Sort by a column, filter '
            f"by verdict, open a row for the check's detail; passed checks are collapsed.</p>")


def check_detail(check: CheckRecord, *, collapsed: bool = False, prefix: str = "",
                 senders: list[str | None] | None = None) -> str:
    """One check in full; passed/skipped/unsupported ones are collapsed to a line.

    `prefix` keeps HTML ids unique when several runs share a page (the matrix); `senders` names the
    checks that sent the shared exchanges this one judged (`exchange_senders`).
    """
    outcome = check.outcome
    head = (f'<span class="badge c-{esc(outcome)}">{esc(outcome)}</span> <span class="badge">{esc(check.level)}'
            f'</span> <code><b>{esc(check.id)}</b></code> <span class="meta">{esc(check.feature)} — '
            f"{esc(check.description)}</span>")
    body = _detail_body(check, prefix, senders or [])
    cid = esc(prefix + anchor(check.id))
    if collapsed:
        return (f'<details class="check c-{esc(outcome)}" id="{cid}" data-outcome="{esc(outcome)}"><summary>{head}'
                f"</summary>{body}</details>")
    return (f'<article class="check c-{esc(outcome)}" id="{cid}" data-outcome="{esc(outcome)}"><h4>{head}</h4>'
            f"{body}</article>")


def _detail_body(check: CheckRecord, prefix: str, senders: list[str | None]) -> str:
    outcome = check.outcome
    body = [_clause(check)]
    if check.flaky:
        body.append(f'<p class="flaky"><b>{esc(flaky_note(check))}</b>; shown: the most severe run.</p>')
    if outcome is Verdict.FAILED and check.failures:
        body.append(_failures(check))
        body.append(_transcripts(check, prefix))
    elif outcome is not Verdict.PASSED:
        body.append(f"<pre>{esc(check.message)}</pre>")
        if outcome is Verdict.ERROR and check.transcripts:
            body.append(_transcript_block(check, len(check.transcripts) - 1, [], prefix))
    if check.details:
        details = json.dumps(check.details, indent=1, ensure_ascii=False)
        body.append(f"<details><summary>Details</summary><pre>{esc(details[:8000])}</pre></details>")
    body.append(f'<p class="note">{requests_note(check, senders, prefix)} · {duration(check.duration_s)}</p>')
    return "".join(body)


def requests_note(check: CheckRecord, senders: list[str | None], prefix: str = "") -> str:
    """`2 requests`, `no request of its own: shared with schema.chat-completion`, `1 request + 1 shared …`."""
    made = check.requests_made
    names = list(dict.fromkeys(s for s in senders if s is not None))
    links = ", ".join(f'<a href="#{esc(prefix + anchor(name))}">{esc(name)}</a>' for name in names)
    shared = (f"shared with {links}" if names else "") + (
        (", and a shared exchange" if names else "shared exchange") if None in senders else "")
    own = f"{made} request{'s' if made != 1 else ''}"
    if not senders:
        return own if made or check.transcripts else "no request"
    return f"{own} + {len(senders)} {shared}" if made else f"no request of its own: {shared}"


def _clause(check: CheckRecord) -> str:
    clause = check.clause
    return (f'<p class="clause"><b>Clause</b> — {esc(clause.source)} § {esc(clause.section)}:</p>'
            f"<blockquote>{esc(clause.quote)}</blockquote>")


def _failures(check: CheckRecord) -> str:
    out = []
    for failure in check.failures[:FAILURES_PER_CHECK]:
        out.append(f'<dl class="ver"><dt>Expected</dt><dd>{esc(failure.expected)}</dd>'
                   f"<dt>Received</dt><dd><pre>{esc(failure.received)}</pre></dd>"
                   f"<dt>Where</dt><dd><code>{esc(failure.where)}</code></dd></dl>")
    hidden = len(check.failures) - FAILURES_PER_CHECK
    if hidden > 0:
        out.append(f'<p class="note">… and {hidden} more failures (see results.json)</p>')
    return "".join(out)


def _transcripts(check: CheckRecord, prefix: str) -> str:
    """The exchanges the failures point at (or the check's last one), offending bytes marked."""
    ranges: dict[int, list[tuple[int, int]]] = {}
    for failure in check.failures:
        index = failure.exchange
        if index is not None and 0 <= index < len(check.transcripts):
            marks = ranges.setdefault(index, [])
            if failure.byte_range:
                marks.append(failure.byte_range)
    if not ranges and check.transcripts:
        ranges[len(check.transcripts) - 1] = []
    shown = sorted(ranges)[:TRANSCRIPTS_PER_CHECK]
    return "".join(_transcript_block(check, index, ranges[index], prefix) for index in shown)


def _transcript_block(check: CheckRecord, index: int, marks: list[tuple[int, int]], prefix: str) -> str:
    transcript = check.transcripts[index]
    mark_id = f"{prefix}{anchor(check.id)}-x{index}"
    jump = f' — <a href="#{esc(mark_id)}-m0">jump to the offending event</a>' if marks else ""
    return (f'<p><b>Transcript #{index}</b>{jump}</p>{transcript_html(transcript, marks, mark_id)}'
            f'<p><b>Reproduce</b> <span class="note">(reads the key from <code>$OPENAI_API_KEY</code>)</span></p>'
            f'<pre class="repro"><code>{esc(curl_for(transcript))}</code></pre>')


def transcript_html(transcript: Transcript, marks: list[tuple[int, int]], mark_id: str) -> str:
    request, response = transcript.request, transcript.response
    head = f"{request.method} {request.url}\n" + "".join(f"{k}: {v}\n" for k, v in request.headers.items())
    if request.body:
        head += "\n" + request.body[:4000] + "\n"
    status = response.status if response.status is not None else "(no response)"
    resp_head = f"HTTP {status}\n" + "".join(f"{k}: {v}\n" for k, v in response.headers.items())
    notes = []
    if transcript.error:
        notes.append(f"[transport error] {transcript.error}")
    if transcript.limit_exceeded:
        notes.append(f"[limit] {transcript.limit_exceeded}")
    contended = transcript.contended
    if contended:
        notes.append(f"[contention] {contended.kind} alongside {contended.in_flight_with} other request(s) "
                     f"(see the run's concurrency record)")
    if response.truncated:
        notes.append(f"[body cut at {len(response.body.encode())} of {response.body_bytes} bytes]")
    sse = transcript.sse
    timing = f"[first byte {_time(transcript.ttfb_s)}, complete {_time(transcript.elapsed_s)}"
    if sse:
        timing += f"; {sse.events} SSE events, arrival time shown before each"
    notes.append(timing + "]")
    body = body_html(response.body, sse.event_offsets if sse else (), marks, mark_id)
    return (f"<pre class='transcript'>{esc(head)}\n{esc(resp_head)}\n{body}\n"
            f"<span class='note'>{esc(chr(10).join(notes))}</span></pre>")


def _time(seconds: float | None) -> str:
    return "—" if seconds is None else duration(seconds)


def body_html(body: str, events: Sequence[tuple[int, int, float]], marks: list[tuple[int, int]],
              mark_id: str) -> str:
    """The raw body with each SSE event's arrival time before it and the offending bytes marked.

    Offsets are bytes of the raw body; the text is cut at those offsets in bytes, not characters.
    """
    raw = body.encode("utf-8")
    size = len(raw)
    starts = {int(e[0]): float(e[2]) for e in events if int(e[0]) < size}
    bounds = {0, size, *starts}
    clean_marks = [(max(0, s), _trim_end(raw, s, min(size, e))) for s, e in sorted(marks) if s < size and e > s]
    for start, end in clean_marks:
        bounds.update((start, end))
    edges = sorted(bounds)
    out: list[str] = []
    opened: set[int] = set()
    for left, right in itertools.pairwise(edges):
        text = esc(raw[left:right].decode("utf-8", errors="replace"))
        if left in starts:
            text = f'<span class="t" data-t="+{duration(starts[left])}"></span>' + text
        hit = next((i for i, (s, e) in enumerate(clean_marks) if s <= left and right <= e), None)
        if hit is None:
            out.append(text)
            continue
        first = hit not in opened
        opened.add(hit)
        ident = f' id="{esc(mark_id)}-m{hit}"' if first else ""
        out.append(f'<mark class="offending"{ident}>{text}</mark>')
    return "".join(out)


def _trim_end(raw: bytes, start: int, end: int) -> int:
    """Leave an event's blank-line terminator outside the mark: the mark then hugs the event's text."""
    while end - 1 > start and raw[end - 1 : end] in (b"\n", b"\r"):
        end -= 1
    return end


def row_extra(check: CheckRecord, senders: list[str | None] | None = None) -> str:
    """What pytest-html shows when its table row opens: a failing check's gist and a link up to its
    detail; any other check's detail itself (its anchor is here: the table is its only place)."""
    outcome = check.outcome
    if outcome in (Verdict.FAILED, Verdict.ERROR):
        return (f'<div class="row-detail"><p><a href="#{esc(anchor(check.id))}">Full detail of '
                f"<code>{esc(check.id)}</code> ↑</a> — [{esc(check.level)}, {esc(check.feature)}] "
                f"{esc(check.clause.source)} § {esc(check.clause.section)}</p>"
                f"<pre>{esc(check.message[:1500])}</pre></div>")
    return (f'<div class="cert row-detail"><div class="check c-{esc(outcome)}" id="{esc(anchor(check.id))}" '
            f'data-outcome="{esc(outcome)}"><p class="meta">{esc(check.description)}</p>'
            f"{_detail_body(check, '', senders or [])}</div></div>")


def run_note_extra(message: str) -> str:
    """The row of an item that stands for no check (one never executed, an unfinished run): why, and the way up."""
    return f'<div class="row-detail"><a href="#certification">Certification ↑</a><pre>{esc(message)}</pre></div>'
