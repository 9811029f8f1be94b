"""Which font a browser really draws a report's text with: in a Korean report opened offline,
digits and points in a Latin font (NanumGothic's point reads as a comma at screen size), every
Hangul syllable in NanumGothic (cut into the report), asked of headless Chromium through its
DevTools protocol (the fonts each element's glyphs came from)."""

from __future__ import annotations

import re

from test_e2e_browser import CHROMIUM, CHROMIUM_ARGS, pytestmark, sync_playwright  # noqa: F401  (skips)
from test_report import hand_made_comparison

HANGUL = re.compile("[\uac00-\ud7a3]")
# a bar's value ("66.7%"), the page's heading, a section heading, a figure's title (bold ones too)
PROBES = {"number": ".plotly-graph-div text.bartext, .plotly-graph-div .xtick text", "h1": "h1", "h2": "h2",
          "figure title": ".plotly-graph-div .gtitle"}


def test_a_korean_reports_numbers_are_drawn_in_a_latin_font_and_its_hangul_in_nanumgothic(tmp_path):
    from fer_core.evaluation.report import ReportSettings, comparison_report_html, write_report

    path = write_report(tmp_path / "report.html", comparison_report_html(
        hand_made_comparison(tmp_path), ReportSettings.now("hand-made"), [], lang="ko"))
    drawn: dict[str, tuple[str, dict[str, int]]] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.route("**/*", lambda route: route.abort() if not route.request.url.startswith(("file:", "data:"))
                       else route.continue_())
            page.goto(path.as_uri(), wait_until="load")
            page.wait_for_function("document.querySelectorAll('.plotly-graph-div .main-svg').length >= 2",
                                   timeout=30_000)
            page.evaluate("document.fonts.ready")
            for name, selector in PROBES.items():  # mark the first of each, with a decimal point for a number
                page.evaluate("""([name, selector]) => {
                    const found = [...document.querySelectorAll(selector)]
                        .find(e => name !== 'number' || /\\d\\.\\d/.test(e.textContent));
                    if (found) found.setAttribute('data-probe', name);
                }""", [name, selector])
            cdp = page.context.new_cdp_session(page)
            cdp.send("DOM.enable")
            cdp.send("CSS.enable")
            root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
            for name in PROBES:
                node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": f"[data-probe='{name}']"})["nodeId"]
                assert node, f"no {name} in the report"
                text = re.sub(r"<[^>]+>", "", cdp.send("DOM.getOuterHTML", {"nodeId": node})["outerHTML"])
                fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
                drawn[name] = (text, {f["familyName"]: f["glyphCount"] for f in fonts})
        finally:
            browser.close()
    text, fonts = drawn.pop("number")
    assert fonts and "NanumGothic" not in fonts, (text, fonts)
    for name, (text, fonts) in drawn.items():
        assert fonts.get("NanumGothic") == len(HANGUL.findall(text)) > 0, (name, text, fonts)
