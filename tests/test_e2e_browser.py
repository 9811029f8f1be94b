"""End to end in a real headless Chromium: start the dashboard as `make run` does (`python -m ui.launch`,
i.e. `streamlit run app.py` with its imports and MediaPipe worker started first), open Home, go to Try it,
upload a face photo through the browser's file input, and read the predicted emotion; and open a
comparison's HTML report from disk with the network cut off."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image
from test_report import hand_made_comparison

from fer_core.config import REPO_ROOT
from fer_core.emotions import SEVEN_EMOTIONS
from fer_core.i18n import catalogue

CHROMIUM = os.environ.get("FER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None
    PlaywrightTimeout = TimeoutError

pytestmark = [
    pytest.mark.skipif(sync_playwright is None, reason="playwright (python package) is not installed"),
    pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                       reason=f"chromium not found at {CHROMIUM}; apt-get install chromium"),
]


def _free_port() -> int:
    """A port free now, below the kernel's range for outgoing connections' own ports: a port from
    that range (bind to 0) could be taken by any connection, the health checks' included, in the
    seconds before the dashboard binds it."""
    import random

    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    for port in random.Random().sample(range(10000, low), min(200, max(0, low - 10000))):
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind(("127.0.0.1", port))
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
            return r.status == 200 and r.read().strip() == b"ok"
    except OSError:
        return False


@contextlib.contextmanager
def _dashboard(log_path: Path, *launch: str):
    """The dashboard started with ``launch`` (``-m ui.launch`` as `make run` does, or streamlit's own
    ``run app.py``) on a free localhost port, until healthy: (its url, its process); killed after."""
    port = _free_port()
    log = log_path.open("w")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen(
        [sys.executable, *launch, "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
         "--browser.gatherUsageStats", "false"],
        cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"streamlit did not become healthy: {Path(log.name).read_text()[-2000:]}")
            time.sleep(0.3)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The dashboard as a user runs it (`make run`)."""
    with _dashboard(tmp_path_factory.mktemp("streamlit") / "server.log", "-m", "ui.launch") as (url, proc):
        _AT_START["children"] = _child_commands(proc.pid)  # before any page is opened
        yield url


_AT_START: dict[str, list[str] | None] = {}


def _child_commands(pid: int) -> list[str] | None:
    """The command lines of a process's children (Linux's /proc), or None where it cannot tell."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    commands = []
    for child in children:
        with contextlib.suppress(OSError):
            commands.append(Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    return commands


def test_the_mediapipe_worker_is_loading_before_the_first_page_opens(server):
    """`make run` starts Try it's measuring process with the server, so the first photo does not
    wait seconds for MediaPipe to load after the first page opens (on a plain `streamlit run app.py`
    it starts only when a page is first run)."""
    children = _AT_START.get("children")
    if children is None:
        pytest.skip("this system does not list a process's children in /proc")
    assert any("spawn_main" in command for command in children), children


def test_a_pages_address_opened_first_runs_the_whole_app(server):
    """A bookmark of /Compare opened first on a fresh server (this test must open the server's
    first page): Streamlit ran pages/6_Compare.py by itself, with a sidebar of file names ("app")
    and no language selector, until some visitor had opened Home."""
    _page_opened_first_has_the_apps_sidebar(server, "Compare")


def test_a_pages_address_opened_first_on_plain_streamlit_runs_the_whole_app(tmp_path):
    """The same on `streamlit run app.py` (the README's other way to start it): the page, run by
    itself, runs again through app.py."""
    with _dashboard(tmp_path / "server.log", "-m", "streamlit", "run", "app.py") as (url, _proc):
        _page_opened_first_has_the_apps_sidebar(url, "Masks")


def _page_opened_first_has_the_apps_sidebar(url: str, title: str) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.goto(f"{url}/{title}", wait_until="domcontentloaded")
            page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
            sidebar = page.locator('[data-testid="stSidebar"]')
            sidebar.locator('[data-testid="stSelectbox"]').wait_for(timeout=30_000)  # the language
            assert sidebar.get_by_text("Home", exact=True).count() == 1
            assert sidebar.get_by_text("app", exact=True).count() == 0
        finally:
            browser.close()


def test_upload_a_face_in_the_browser_and_read_the_prediction(server, astronaut, tmp_path):
    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(astronaut).save(photo, quality=92)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            # nothing is fetched from outside the dashboard: the pages' material icons, given to
            # st.navigation, made the browser fetch each tab's icon from Google's font servers
            outside: list[str] = []
            page.on("request", lambda r: None if r.url.startswith((server, "data:", "blob:")) else outside.append(r.url))
            page.goto(server, wait_until="domcontentloaded")
            page.get_by_role("heading", name="Explainable facial-emotion workbench").wait_for(timeout=60_000)
            # the model list (a canvas grid: its cells exist but are not "visible")
            page.get_by_text("au-logreg-fer2013").first.wait_for(state="attached", timeout=30_000)

            page.locator('[data-testid="stMain"] a', has_text="Try it").first.click()
            page.get_by_role("heading", name="Try it").wait_for(timeout=60_000)
            page.locator('input[type="file"]').first.set_input_files(str(photo))

            predicted = page.get_by_text("Predicted: ", exact=False).first
            predicted.wait_for(timeout=120_000)
            text = predicted.inner_text()
            emotion = text.split("Predicted:")[1].split("(")[0].strip()
            assert emotion in SEVEN_EMOTIONS, text
            # the sentence is sent after the heading above it: waited for, not counted at once (a busy
            # server may have sent the browser the heading alone by then)
            page.get_by_text("mostly because of", exact=False).first.wait_for(timeout=30_000)
            page.locator('[data-testid="stImage"] img').first.wait_for(timeout=30_000)
            page.wait_for_timeout(1500)  # let the plotly charts draw before the screenshot
            assert page.locator('[data-testid="stException"]').count() == 0
            shot = tmp_path / "try_it.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            print(f"screenshot: {shot}")
            # the face's picture with its explanation is made when clicked (a deferred download)
            with page.expect_download(timeout=60_000) as made:
                page.get_by_role("button", name="Picture with its explanation (PNG)").click()
            card = tmp_path / made.value.suggested_filename
            made.value.save_as(card)
            assert card.name == "astronaut_face1_card.png" and Image.open(card).size[0] == 960
            assert outside == [], outside
        finally:
            browser.close()


def test_korean_pages_render_hangul_and_the_language_is_kept_in_the_address(server):
    with urllib.request.urlopen(server + "/app/static/NanumGothic.ttf", timeout=10) as r:
        assert r.status == 200 and len(r.read()) > 1_000_000, "the Hangul font is served to the browser"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server + "/?lang=ko", wait_until="domcontentloaded")
            nav = page.locator('[data-testid="stSidebarNav"]')
            nav.get_by_text("모델 비교").wait_for(timeout=60_000)
            nav.get_by_text("직접 해보기").wait_for(timeout=10_000)
            page.evaluate("document.fonts.ready")
            # document.fonts.check() is also true before the face is even listed, so wait for the
            # face itself: on a busy machine it loads seconds after the Korean text first draws,
            # and once in a full test run it had not loaded 30 s later. So wait for the face to be
            # declared, then ask for it with Hangul text (document.fonts.load): that fetches it now
            # and fails just the same where the browser refuses the file or the face is missing.
            declared = "[...document.fonts].some(f => f.family.includes('NanumGothic'))"
            loaded = ("[...document.fonts].some(f => f.family.includes('NanumGothic') "
                      "&& f.status === 'loaded')")
            page.wait_for_function(declared, timeout=90_000)
            with contextlib.suppress(PlaywrightTimeout):
                page.wait_for_function(loaded, timeout=30_000)
            page.evaluate("document.fonts.load('16px NanumGothic', '\ud55c\uae00')")  # the word Hangul
            with contextlib.suppress(PlaywrightTimeout):  # asked for, it may still be arriving (a full run's load)
                page.wait_for_function(loaded, timeout=30_000)
            assert page.evaluate(loaded), "NanumGothic was loaded for the Korean text"

            # Streamlit's upload button has no language option: it says "Upload" in Korean pages unless
            # drawn over (ui.common); the words a browser shows are the ::after content then
            nav.get_by_text("직접 해보기").click()
            button = '[data-testid="stFileUploaderDropzone"] button [data-testid="stMarkdownContainer"] p'
            page.locator(button).first.wait_for(timeout=60_000)
            shown = f"getComputedStyle(document.querySelector('{button}'), '::after').content"
            label = json.dumps(catalogue("ko")["common.upload_button"], ensure_ascii=False)
            page.wait_for_function(f"{shown} === {json.dumps(label, ensure_ascii=False)}", timeout=30_000)
            # and for a screen reader: the page is Korean (its voice is chosen by lang; Streamlit
            # left "en"), and the button is named in Korean, not "Upload파일 올리기"
            assert page.evaluate("document.documentElement.lang") == "ko"
            name = catalogue("ko")["common.upload_button"]
            page.locator('[data-testid="stFileUploaderDropzone"]').get_by_role("button", name=name, exact=True) \
                .first.wait_for(timeout=30_000)

            nav.get_by_text("모델 비교").click()
            page.wait_for_url("**/Compare*lang=ko*", timeout=30_000)
            page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
            page.get_by_role("option", name="English").click()
            nav.get_by_text("Compare", exact=True).wait_for(timeout=30_000)
            page.wait_for_url("**lang=en*", timeout=30_000)
            page.wait_for_function("document.documentElement.lang === 'en'", timeout=30_000)
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()


def test_the_comparison_report_opens_offline_with_every_figure_drawn(tmp_path):
    """The HTML report as a reader gets it: a file opened in the browser with the network cut off;
    every figure is drawn by the inline plotly.js and every wrong image shows."""
    from fer_core.evaluation.report import ReportSettings, comparison_report_html, write_report

    hand_comparison = hand_made_comparison(tmp_path)
    path = write_report(tmp_path / "report.html",
                        comparison_report_html(hand_comparison, ReportSettings.now("hand-made"), [], lang="ko"))
    # overall, per emotion, the matrices, confidence on the whole and per emotion answered
    expected_figures = 2 + len(hand_comparison.names) + 2
    expected_thumbs = sum(len(hand_comparison.wrong_files(n)) for n in hand_comparison.names)
    requested: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.route("**/*", lambda route: (requested.append(route.request.url), route.abort())
                       if not route.request.url.startswith(("file:", "data:")) else route.continue_())
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(path.as_uri(), wait_until="load")
            page.wait_for_function(f"document.querySelectorAll('.plotly-graph-div .main-svg').length >= "
                                   f"{expected_figures}", timeout=30_000)
            divs = page.locator(".plotly-graph-div")
            assert divs.count() == expected_figures
            for i in range(expected_figures):  # each drew its traces, not an empty frame
                assert divs.nth(i).locator(".main-svg").count() >= 1
                assert divs.nth(i).locator(".trace, .hm, .heatmaplayer image").count() >= 1, i
            thumbs = page.locator("figure.thumb img")
            assert thumbs.count() == expected_thumbs
            assert page.evaluate("[...document.querySelectorAll('figure.thumb img')]"
                                 ".every(im => im.complete && im.naturalWidth === 64)")
            assert page.get_by_role("heading", name="모델 비교 보고서").count() == 1
            assert page.evaluate("document.fonts.ready.then(() => [...document.fonts].some("
                                 "f => f.family.replace(/[\"']/g, '') === 'NanumGothic' && f.status === 'loaded'))")
            assert errors == [] and requested == []
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
