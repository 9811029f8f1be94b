"""Dashboard timings in a real browser (headless Chromium via Playwright), printed as a table.

1. cold start: from starting the dashboard as `make run` does (`python -m ui.launch`) to the Home
   heading being rendered;
2. upload -> prediction for one 640x480 photo, warm (MediaPipe already loaded), median of 3;
3. training the AU model on the bundled FER2013 table from the AU model page (click -> result).

``--first-cnn N``: instead, N times on a fresh (cold) server, open Try it directly and upload one
photo at once; time from opening the page to the first AU prediction and to the bundled CNN's
prediction (nothing loaded or cached: the first MediaPipe, AU model and CNN loads are all in it).
``--via-home``: from a click on Home's Try it link instead (Home rendered first, the server otherwise
cold). ``--root DIR`` runs another checkout's app.py (e.g. main's, for a before/after comparison);
``--plain`` starts it with `streamlit run app.py` instead (nothing imported while the server starts).

Usage: .venv/bin/python bench/dashboard_timings.py [--screenshots DIR] [--first-cnn N] [--via-home] [--plain]
       [--root DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("FER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
            return r.read().strip() == b"ok"
    except OSError:
        return False


def photos(folder: Path, n: int) -> list[Path]:
    """640x480 JPEGs of the astronaut (public domain), each slightly different so none is cached."""
    from skimage import data

    base = Image.fromarray(data.astronaut()).resize((640, 640), Image.LANCZOS).crop((0, 0, 640, 480))
    out = []
    for i in range(n):
        im = base if i % 2 == 0 else base.transpose(Image.FLIP_LEFT_RIGHT)
        arr = np.clip(np.asarray(im, dtype=np.int16) + (i - n // 2) * 3, 0, 255).astype(np.uint8)
        path = folder / f"photo_{i}.jpg"
        Image.fromarray(arr).save(path, quality=90)
        out.append(path)
    return out


def spawn_server(root: Path, port: int, env: dict, plain: bool = False) -> subprocess.Popen:
    """The dashboard as ``make run`` starts it (``ui.launch``), or ``plain``: ``streamlit run app.py``."""
    start = ["-m", "streamlit", "run", "app.py"] if plain else ["-m", "ui.launch"]
    return subprocess.Popen(
        [sys.executable, *start, "--server.headless", "true", "--server.port",
         str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none"],
        cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def first_cnn(root: Path, runs: int, env: dict, cnn: str, via_home: bool = False,
              plain: bool = False) -> list[tuple[str, str]]:
    """Cold server, Try it opened directly, one photo uploaded at once: seconds from opening the
    page to the first AU prediction and to the CNN's (``cnn``: its manifest name) prediction.
    ``via_home``: Home is opened first and the clock starts at the click on its Try it link (the
    way people arrive; Streamlit then runs app.py before the page, which a direct address skips)."""
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="fer_bench_"))
    photo = photos(tmp, 1)[0]
    heading, au, cnn_times = [], [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            for _ in range(runs):
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                proc = spawn_server(root, port, env, plain)
                page = browser.new_page(viewport={"width": 1400, "height": 1100})
                try:
                    start = time.perf_counter()
                    while not healthy(url):
                        if proc.poll() is not None or time.perf_counter() - start > 120:
                            raise SystemExit("streamlit did not start")
                        time.sleep(0.05)
                    if via_home:
                        page.goto(url, wait_until="domcontentloaded")
                        page.get_by_role("heading", name="Explainable facial-emotion workbench").wait_for(
                            timeout=60_000)
                        t0 = time.perf_counter()
                        page.locator('[data-testid="stMain"] a', has_text="Try it").first.click()
                    else:
                        t0 = time.perf_counter()
                        page.goto(url + "/Try_it", wait_until="domcontentloaded")
                    page.get_by_role("heading", name="Try it").wait_for(timeout=60_000)
                    heading.append(time.perf_counter() - t0)
                    page.locator('input[type="file"]').first.set_input_files(str(photo))
                    page.get_by_text("Predicted: ", exact=False).first.wait_for(timeout=180_000)
                    au.append(time.perf_counter() - t0)
                    page.get_by_text(f"{cnn} (cnn):", exact=False).first.wait_for(timeout=180_000)
                    cnn_times.append(time.perf_counter() - t0)
                finally:
                    page.close()
                    stop_server(proc)
        finally:
            browser.close()
            shutil.rmtree(tmp, ignore_errors=True)

    def show(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} s (runs: {', '.join(f'{v:.2f}' for v in values)})"

    how = "Home's Try it link clicked" if via_home else "Try it opened"
    return [(f"cold server: {how} -> page heading (median of {runs})", show(heading)),
            (f"cold server: {how} -> first AU prediction shown (median of {runs})", show(au)),
            (f"cold server: {how} -> first {cnn} prediction shown (median of {runs})", show(cnn_times))]


def print_table(results: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in results)
    print(f"{'measurement':<{width}}  value")
    for k, v in results:
        print(f"{k:<{width}}  {v}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshots", type=Path, help="save a screenshot of each step here")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--first-cnn", type=int, metavar="N", default=0,
                        help="only time the first CNN prediction in Try it, on N fresh cold servers")
    parser.add_argument("--cnn", default="cnn-fer2013", help="the CNN's manifest name (--first-cnn)")
    parser.add_argument("--via-home", action="store_true",
                        help="--first-cnn from a click on Home's Try it link instead of opening its address")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose app.py is run")
    parser.add_argument("--plain", action="store_true",
                        help="start the server with `streamlit run app.py` instead of `make run`'s `python -m ui.launch` "
                             "(no imports warmed while it starts; also for checkouts without ui/launch.py)")
    args = parser.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="2")
    if args.first_cnn:
        print_table(first_cnn(args.root.resolve(), args.first_cnn, env, args.cnn, args.via_home, args.plain))
        return 0
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="fer_bench_"))
    shots = args.screenshots
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    images = photos(tmp, args.repeats + 1)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    results: list[tuple[str, str]] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        start = time.perf_counter()
        proc = spawn_server(args.root.resolve(), port, env, args.plain)
        try:
            while not healthy(url):
                if proc.poll() is not None or time.perf_counter() - start > 120:
                    raise SystemExit("streamlit did not start")
                time.sleep(0.05)
            t_health = time.perf_counter() - start
            page.goto(url, wait_until="domcontentloaded")
            page.get_by_role("heading", name="Explainable facial-emotion workbench").wait_for(timeout=60_000)
            t_home = time.perf_counter() - start
            results += [("server healthy after spawn", f"{t_health:.2f} s"),
                        ("cold start to Home rendered", f"{t_home:.2f} s")]
            if shots:
                page.wait_for_timeout(800)
                page.screenshot(path=str(shots / "home.png"))

            page.locator('[data-testid="stMain"] a', has_text="Try it").first.click()
            page.get_by_role("heading", name="Try it").wait_for(timeout=60_000)
            predicted = page.get_by_text("Predicted: ", exact=False)
            upload = page.locator('input[type="file"]').first
            t0 = time.perf_counter()
            upload.set_input_files(str(images[0]))
            predicted.first.wait_for(timeout=120_000)
            results.append(("first upload -> prediction (loads MediaPipe)", f"{time.perf_counter() - t0:.2f} s"))
            times = []
            for i, photo in enumerate(images[1:], start=2):
                t0 = time.perf_counter()
                upload.set_input_files(str(photo))  # adds a file; the earlier results are reused
                predicted.nth(i - 1).wait_for(timeout=120_000)
                times.append(time.perf_counter() - t0)
            results.append((f"warm upload -> prediction, 640x480 (median of {len(times)})",
                            f"{statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f})"))
            if shots:
                page.wait_for_timeout(1000)
                page.screenshot(path=str(shots / "try_it.png"))

            page.goto(url + "/AU_model", wait_until="domcontentloaded")
            button = page.get_by_role("button", name="Train the AU model")
            button.wait_for(timeout=60_000)
            t0 = time.perf_counter()
            button.click()
            page.get_by_text("trained in", exact=False).first.wait_for(timeout=300_000)
            results.append(("train AU model on bundled table (click -> charts)", f"{time.perf_counter() - t0:.2f} s"))
            if shots:
                page.wait_for_timeout(1500)
                page.screenshot(path=str(shots / "au_model.png"), full_page=True)
                page.goto(url + "/Dataset_explorer", wait_until="domcontentloaded")
                page.get_by_role("heading", name="Dataset explorer").wait_for(timeout=60_000)
                page.wait_for_timeout(4000)
                page.screenshot(path=str(shots / "explorer.png"))
        finally:
            browser.close()
            stop_server(proc)
            shutil.rmtree(tmp, ignore_errors=True)
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
