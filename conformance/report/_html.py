"""HTML fragments that pytest-html's hooks place around its own results table.

Everything is computed from results.json; the API key never reaches this module (transcripts are
redacted by the engine, and curl commands use $OPENAI_API_KEY).
"""

from __future__ import annotations

import html
import json
import shlex
from typing import Any

FEATURES = ("core", "streaming", "tools", "json_mode", "methods")
VERDICT_LABEL = {
    "passed": "CERTIFIED",
    "failed": "NOT CERTIFIED",
    "incomplete": "INCOMPLETE",
    "invalid": "INVALID RUN",
}

STYLE = """
<style>
.cert { font-family: sans-serif; margin: 0 0 1.5em 0; }
.cert-verdict { font-size: 1.6em; font-weight: bold; padding: .4em .8em; border-radius: 6px; display: inline-block; }
.v-passed, .f-certified, .c-passed { background: #d4f7d4; color: #0a5a0a; }
.v-failed, .f-failed, .c-failed { background: #fbd3d3; color: #8a0b0b; }
.v-incomplete, .v-invalid, .f-partial, .c-error { background: #fdf0c4; color: #6b5000; }
.f-not-tested, .c-skipped, .c-unsupported { background: #eee; color: #555; }
.cert table { border-collapse: collapse; margin: .6em 0; }
.cert td, .cert th { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
.check-detail { font-family: sans-serif; white-space: normal; }
.check-detail pre { background: #f6f6f6; padding: .5em; overflow-x: auto; max-height: 30em; }
.check-detail .mark { background: #ffb3b3; }
.check-detail dt { font-weight: bold; }
</style>
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def title(results: dict[str, Any]) -> str:
    target = results["target"]
    return f"Chat Completions conformance — {target['model']} @ {target['base_url']}"


def summary_sections(results: dict[str, Any]) -> list[str]:
    verdict = results["verdict"]
    summary = results["summary"]
    parts = [STYLE, '<section class="cert" id="certification">']
    parts.append(f'<h2>Certification</h2><div class="cert-verdict v-{esc(verdict)}" id="cert-verdict">'
                 f'{esc(VERDICT_LABEL.get(verdict, verdict))}</div>')
    if results.get("reason"):
        parts.append(f'<p id="cert-reason"><b>Why:</b> {esc(results["reason"])}</p>')
    target = results["target"]
    parts.append(
        "<table><tr><th>Target</th><td>" + esc(target["base_url"]) + (" (built-in reference server)"
                                                                     if target.get("builtin") else "")
        + f"</td></tr><tr><th>Model</th><td>{esc(target['model'])}</td></tr>"
        f"<tr><th>Profile / depth</th><td>{esc(results['profile'])} / {esc(results['depth'])}</td></tr>"
        f"<tr><th>Checks</th><td>{results['executed']} of {results['planned']} planned</td></tr>"
        f"<tr><th>Requests / tokens</th><td>{results['requests']} / {results['tokens']}</td></tr>"
        f"<tr><th>Duration</th><td>{results['duration_s']:.1f} s</td></tr></table>"
    )
    parts.append('<h3>Per feature</h3><table id="feature-rollup"><tr><th>Feature</th><th>Verdict</th>'
                 "<th>passed</th><th>failed</th><th>skipped</th><th>unsupported</th><th>error</th></tr>")
    for feature in FEATURES:
        state = summary["features"].get(feature, "not-tested")
        counts = {k: 0 for k in ("passed", "failed", "skipped", "unsupported", "error")}
        for check in results["checks"]:
            if check["feature"] == feature:
                counts[check["outcome"]] += 1
        parts.append(f'<tr><td>{feature}</td><td class="f-{esc(state)}">{esc(state)}</td>'
                     + "".join(f"<td>{counts[k]}</td>" for k in counts) + "</tr>")
    parts.append("</table>")
    parts.append(method_matrix(results))
    failing = [c for c in results["checks"] if c["outcome"] in ("failed", "error")]
    level_order = {"MUST": 0, "SHOULD": 1, "INFO": 2}
    failing.sort(key=lambda c: (c["outcome"] != "failed", level_order.get(c["level"], 3), c["id"]))
    parts.append(f'<h3>Failing checks ({len(failing)})</h3>')
    if failing:
        parts.append('<table id="failing-checks"><tr><th>Check</th><th>Level</th><th>Outcome</th>'
                     "<th>First problem</th></tr>")
        for check in failing:
            first = check["message"].split("\n\n")[0]
            parts.append(f'<tr class="c-{esc(check["outcome"])}"><td><code>{esc(check["id"])}</code></td>'
                         f'<td>{esc(check["level"])}</td><td>{esc(check["outcome"])}</td>'
                         f"<td><pre>{esc(first)}</pre></td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p>None.</p>")
    parts.append("</section>")
    return parts


def method_matrix(results: dict[str, Any]) -> str:
    rows: list[dict[str, Any]] = []
    for check in results["checks"]:
        rows.extend(check.get("details", {}).get("method_matrix", []))
    if not rows:
        return '<h3>GET-vs-POST method matrix</h3><p id="method-matrix">Not probed in this run.</p>'
    out = ['<h3>GET-vs-POST method matrix</h3><table id="method-matrix"><tr><th>Request</th><th>Status</th>'
           "<th>Answered as</th><th>Allow</th><th>Judgement</th></tr>"]
    for row in rows:
        out.append(f"<tr><td>{esc(row.get('request'))}</td><td>{esc(row.get('status'))}</td>"
                   f"<td>{esc(row.get('shape'))}</td><td>{esc(row.get('allow') or '')}</td>"
                   f"<td>{esc(row.get('judgement'))}</td></tr>")
    out.append("</table>")
    return "".join(out)


def curl_for(transcript: dict[str, Any]) -> str:
    """A copy-pasteable curl; the key is always $OPENAI_API_KEY, never the real one."""
    request = transcript["request"]
    parts = ["curl", "-sS", "-X", request["method"], shlex.quote(request["url"])]
    for name, value in request["headers"].items():
        if name.lower() == "authorization":
            parts += ["-H", '"Authorization: Bearer $OPENAI_API_KEY"']
        else:
            parts += ["-H", shlex.quote(f"{name}: {value}")]
    if request.get("body") is not None:
        parts += ["--data-raw", shlex.quote(request["body"])]
    return " ".join(parts)


def _transcript_html(transcript: dict[str, Any], byte_range: list[int] | None) -> str:
    request, response = transcript["request"], transcript["response"]
    head = f"{request['method']} {request['url']}\n" + "".join(
        f"{k}: {v}\n" for k, v in request["headers"].items())
    if request.get("body"):
        head += "\n" + request["body"][:4000] + "\n"
    status = response["status"] if response["status"] is not None else "(no response)"
    resp_head = f"HTTP {status}\n" + "".join(f"{k}: {v}\n" for k, v in response["headers"].items())
    body = response["body"]
    if byte_range and 0 <= byte_range[0] <= len(body):
        start, end = byte_range
        body_html = (esc(body[:start]) + f'<mark class="mark" id="offending-event">{esc(body[start:end])}</mark>'
                     + esc(body[end:]))
    else:
        body_html = esc(body)
    extra = ""
    if transcript.get("error"):
        extra += f"\n[transport error] {transcript['error']}"
    if transcript.get("limit_exceeded"):
        extra += f"\n[limit] {transcript['limit_exceeded']}"
    if response.get("truncated"):
        extra += f"\n[body truncated in this report: {response['body_bytes']} bytes in all]"
    timing = f"\n[elapsed {transcript['elapsed_s']} s, first byte {transcript.get('ttfb_s')} s]"
    return (f"<pre class='transcript'>{esc(head)}\n{esc(resp_head)}\n{body_html}{esc(extra + timing)}</pre>")


def check_detail(check: dict[str, Any], results: dict[str, Any]) -> str:
    clause = check["clause"]
    parts = ['<div class="check-detail">',
             f"<p><b>{esc(check['id'])}</b> [{esc(check['level'])}, {esc(check['feature'])}] — "
             f"{esc(check['description'])}</p>",
             f"<p><b>Clause</b> ({esc(clause['source'])} § {esc(clause['section'])}): "
             f"<q>{esc(clause['quote'])}</q></p>"]
    if check["outcome"] == "failed" and check["failures"]:
        parts.append("<dl>")
        for failure in check["failures"][:10]:
            parts.append(f"<dt>Expected</dt><dd>{esc(failure['expected'])}</dd>"
                         f"<dt>Received</dt><dd><pre>{esc(failure['received'])}</pre></dd>"
                         f"<dt>Where</dt><dd>{esc(failure['where'])}</dd>")
        parts.append("</dl>")
        shown = {f["exchange"] for f in check["failures"] if f.get("exchange") is not None}
        ranges = {f["exchange"]: f.get("byte_range") for f in check["failures"] if f.get("exchange") is not None}
        for index in sorted(shown)[:3]:
            transcript = check["transcripts"][index]
            parts.append(f"<p><b>Transcript #{index}</b></p>" + _transcript_html(transcript, ranges.get(index)))
            parts.append(f"<p><b>Reproduce</b></p><pre class='repro'>{esc(curl_for(transcript))}</pre>")
    elif check["outcome"] != "passed":
        parts.append(f"<pre>{esc(check['message'])}</pre>")
    if check.get("details"):
        parts.append(f"<details><summary>Details</summary><pre>{esc(json.dumps(check['details'], indent=1))[:8000]}"
                     "</pre></details>")
    parts.append(f"<p>{check['requests_made']} request(s), {check['duration_s']} s</p></div>")
    return "".join(parts)
