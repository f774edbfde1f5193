"""Great Expectations Data Docs for a validation report, as HTML pages that render offline.

GX's own renderer (``ValidationResultsPageRenderer`` and ``DefaultJinjaPageView``) draws one page per suite
run. Its stock templates load Bootstrap, jQuery, Font Awesome and Vega from CDNs and a logo from S3; releases
are read on machines without internet, so a few templates are replaced: no external script, stylesheet,
image or link (a small stylesheet is inlined instead, and the "failed only" filter is a few lines of plain
JavaScript). Element ids are numbered instead of random and GX's load timestamp is dropped, so the same
results give the same bytes.

``index.html`` is ours: every expectation of every suite with its severity, column, result, unexpected
count and example rows, and a link to each suite's GX page. ``build_data_docs`` returns the pages; the
curate stage stores them under ``validation/data_docs/``.
"""

from __future__ import annotations

import html
import importlib
import itertools
import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from pipeline.curate.outcomes import ExpectationOutcome, SuiteRun
from pipeline.curate.suites import gx, quiet

log = logging.getLogger(__name__)

INDEX = "index.html"
#: An ``src``/``href`` (or CSS ``url()``) pointing off the page's own folder: never left in a page.
EXTERNAL_ASSET_RE = re.compile(r"""(?:\b(?:src|href)\s*=\s*["']?|url\(\s*["']?)\s*(?:https?:)?//""", re.IGNORECASE)
_PARENT_LINK_RE = re.compile(r'href="(?:\.\./)+[^"]*"')
_EXTERNAL_URL_RE = re.compile(
    r"""(\b(?:src|href)\s*=\s*["']?|url\(\s*["']?)\s*(?:https?:)?//[^\s"'<>)]*""", re.IGNORECASE
)

STYLESHEET = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #212529; }
a { color: #0b5cad; } h1, h2, h3, h4, h5, h6 { margin: .6em 0 .4em; }
.cxr-nav { padding: 10px 24px; border-bottom: 1px solid #ddd; background: #f6f7f9; }
.container-fluid { padding: 8px 16px; box-sizing: border-box; width: 100%; }
.row { display: flex; flex-wrap: wrap; }
.col-12, .col-md-12 { flex: 0 0 100%; max-width: 100%; box-sizing: border-box; }
.col-md-2, .col-lg-2 { flex: 0 0 18%; max-width: 18%; box-sizing: border-box; padding-right: 12px; }
.col-md-10, .col-lg-10 { flex: 0 0 82%; max-width: 82%; box-sizing: border-box; }
.col-md-6 { flex: 0 0 50%; max-width: 50%; box-sizing: border-box; }
.card { border: 1px solid #ddd; border-radius: 6px; margin-bottom: 12px; }
.card-header { background: #f6f7f9; padding: 6px 10px; border-bottom: 1px solid #ddd; }
.card-body { padding: 8px 10px; } .nav { list-style: none; padding: 0; margin: 0; } .nav-link { display: block; }
table, .table { border-collapse: collapse; width: 100%; margin: 6px 0 14px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f7f9; } .show-scrollbars { overflow: auto; } .alert { padding: 6px 10px; margin: 10px 0; }
.alert-secondary { background: #eef0f3; border-radius: 4px; }
.text-success, .ok { color: #1e7e34; } .text-danger, .blocking { color: #b02a37; } .warning { color: #a05a00; }
.fas::before { font-style: normal; font-weight: bold; } .fa-check-circle::before { content: "\\2714"; }
.fa-times::before, .fa-times-circle::before { content: "\\2716"; }
.fa-exclamation-triangle::before { content: "\\26A0"; }
.btn { display: inline-block; padding: 3px 8px; border: 1px solid #0b5cad; border-radius: 4px; cursor: pointer; }
.btn.active { background: #0b5cad; color: #fff; } .btn input { display: none; } .d-none { display: none; }
code, pre { background: #f3f3f3; padding: 1px 3px; border-radius: 3px; white-space: pre-wrap; }
"""

_FILTER_SCRIPT = """<script>
function cxrFilter(failedOnly) {
  document.querySelectorAll(".hide-succeeded-validation-target-child").forEach(function (el) {
    el.parentElement.style.display = failedOnly ? "none" : "";
  });
  document.querySelectorAll(".hide-succeeded-validation-target").forEach(function (el) {
    el.style.display = failedOnly ? "none" : "";
  });
}
</script>"""

_TEMPLATES: dict[str, str] = {
    "page.j2": """<!DOCTYPE html>
<html>
  <head>
    <meta charset="UTF-8">
    <meta name="viewport" content="width=device-width, initial-scale=1.0" />
    <title>{{ cxr_title }}</title>
    <style>{{ cxr_stylesheet }}</style>
  </head>
  <body>
    {% include 'top_navbar.j2' %}
    <div class="container-fluid">
      <div class="row">
        {% include 'sidebar.j2' %}
        <div class="col-md-10 col-lg-10 col-xs-12">
        {{ cxr_summary | safe }}
        {% for section in sections %}
          {% set section_loop = loop -%}
          {% include 'section.j2' %}
        {% endfor %}
        </div>
      </div>
    </div>
  </body>
</html>
""",
    "top_navbar.j2": '<nav class="cxr-nav"><a href="index.html">All suites</a> / {{ page_title }}</nav>\n',
    "ge_info.j2": "<p>Rendered by Great Expectations {{ ge_version }}.</p>\n",
    "page_action_card.j2": _FILTER_SCRIPT
    + """
<div class="card"><div class="card-header"><strong>Show</strong></div><div class="card-body">
  <span class="btn" onclick="cxrFilter(false)">All</span> <span class="btn" onclick="cxrFilter(true)">Failed only</span>
</div></div>
""",
    "js_script_imports.j2": "",
    "favicon.j2": "",
    "cloud-footer.j2": "",
}


def _view() -> Any:
    """GX's page view with the offline templates in front and element ids numbered, not random."""
    jinja2 = importlib.import_module("jinja2")
    view = gx("great_expectations.render.view").DefaultJinjaPageView()
    view.env.loader = jinja2.ChoiceLoader([jinja2.DictLoader(_TEMPLATES), view.env.loader])
    numbers = itertools.count(1)
    view.env.filters["generate_html_element_uuid"] = lambda prefix=None: f"{prefix or 'id-'}{next(numbers)}"
    return view


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return html.escape(text)


def _examples_html(outcome: ExpectationOutcome) -> str:
    rows = [", ".join(f"{k}={v!r}" for k, v in row.items()) for row in outcome.examples]
    return "<br>".join(html.escape(row) for row in rows)


def summary_table(outcomes: Sequence[ExpectationOutcome], link: dict[str, str] | None = None) -> str:
    """An HTML table with one row per expectation: suite, check, expectation, column, severity, result..."""
    head = ("suite", "check", "expectation", "column", "severity", "result", "unexpected", "description", "examples")
    rows = []
    for o in outcomes:
        suite = html.escape(o.suite)
        if link and o.suite in link:
            suite = f'<a href="{html.escape(link[o.suite])}">{suite}</a>'
        result, css = ("passed", "ok") if o.success else ("FAILED", o.severity)
        cells = [suite, _cell(o.check), _cell(o.expectation), _cell(o.column or ""), _cell(o.severity)]
        cells += [f'<span class="{css}">{result}</span>', f"{o.unexpected_count} of {o.element_count}"]
        cells += [_cell(o.description), _examples_html(o)]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
    return f'<table class="cxr-summary">\n{header}\n' + "\n".join(rows) + "\n</table>"


def _verdict(outcomes: Sequence[ExpectationOutcome]) -> str:
    blocking = sum(1 for o in outcomes if not o.success and o.severity == "blocking")
    warnings = sum(1 for o in outcomes if not o.success and o.severity == "warning")
    verdict = "OK" if not blocking else "BLOCKED"
    return f"{verdict}: {len(outcomes)} expectations, {blocking} blocking failures, {warnings} warnings"


def _page_names(runs: Sequence[SuiteRun]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for run in runs:
        seen[run.suite] = seen.get(run.suite, 0) + 1
        names.append(f"{run.suite}.html" if seen[run.suite] == 1 else f"{run.suite}-{seen[run.suite]}.html")
    return names


def render_suite_page(run: SuiteRun, view: Any | None = None) -> str:
    """Render one suite run as a GX validation results page (offline, with our summary table on top)."""
    with quiet():
        renderer = gx("great_expectations.render.renderer").ValidationResultsPageRenderer()
        document = renderer.render(run.gx_result)
        summary = f"<h3>{html.escape(run.suite)}: {_verdict(run.outcomes)}</h3>\n{summary_table(run.outcomes)}"
        page = (view or _view()).render(
            document, cxr_title=f"{run.suite} validation", cxr_stylesheet=STYLESHEET, cxr_summary=summary
        )
    # GX links the suite name to a page of a full GX site that is not built here: point it home instead
    return strip_external_assets(_PARENT_LINK_RE.sub('href="index.html"', str(page)), run.suite)


def render_index(runs: Sequence[SuiteRun], variants: dict[str, str], pages: Sequence[str]) -> str:
    """The landing page: verdict, the files and their variants, every expectation, links to suite pages."""
    outcomes = [o for run in runs for o in run.outcomes]
    pairs = list(zip(runs, pages, strict=True))
    links = {run.suite: page for run, page in pairs}
    files = "".join(f"<li>{html.escape(src)}: {html.escape(var)}</li>" for src, var in variants.items())
    suites = "".join(f'<li><a href="{html.escape(p)}">{html.escape(r.suite)}</a></li>' for r, p in pairs)
    body = (
        f'<nav class="cxr-nav">Metadata validation</nav>\n<div class="container-fluid">\n'
        f"<h2>Validation {html.escape(_verdict(outcomes))}</h2>\n"
        f"<h4>Files</h4><ul>{files}</ul>\n<h4>Suites (Great Expectations pages)</h4><ul>{suites}</ul>\n"
        f"<h4>Expectations</h4>\n{summary_table(outcomes, links)}\n</div>"
    )
    page = (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="UTF-8">\n<title>Metadata validation</title>\n'
        f"<style>{STYLESHEET}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
    return strip_external_assets(page, INDEX)


def strip_external_assets(page: str, name: str) -> str:
    """Neutralise any reference to another host that a GX renderer still put in ``page`` (logged)."""
    found = EXTERNAL_ASSET_RE.findall(page)
    if not found:
        return page
    log.warning("data docs %s: dropped %d external references a GX template added", name, len(found))
    return _EXTERNAL_URL_RE.sub(r"\1#", page)


def build_data_docs(runs: Sequence[SuiteRun], variants: dict[str, str]) -> dict[str, bytes]:
    """Render the Data Docs of a validation: ``index.html`` plus one page per suite run.

    Args:
        runs: The suite runs, with their GX results.
        variants: File -> detected variant, shown on the index page.

    Returns:
        Relative file name -> UTF-8 HTML.
    """
    view = _view()
    pages = _page_names(runs)
    docs = {INDEX: render_index(runs, variants, pages).encode()}
    for run, page in zip(runs, pages, strict=True):
        docs[page] = render_suite_page(run, view).encode()
    return docs
