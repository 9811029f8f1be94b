"""Bad image inputs, generated here: nothing crashes, hangs or loses a batch.

The corpus: an image that really crashes MediaPipe (a side of 32,767 px, let through by raising
the size limits for the test), strips and giant sides that the limits refuse, a 40-megapixel
photo, float and multi-page images, a named pipe, a link to /dev/zero, a symlink loop, a broken
link, SVG and HEIC files, an empty file and a file name that is not UTF-8. Each entry point
(predict, extract with 1 and 2 workers, evaluate, compare, the AU model page) must answer with
exit status 0/2 and one line per bad file, keep the good files, and print no traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fer_core import au_table, config
from fer_core.errors import ImageError
from fer_core.images import MAX_DECODE_SIDE, load_image, scan_images
from fer_core.measure import workers

NOT_UTF8 = os.fsdecode(b"caf\xff.jpg")
# Lets the crashing image reach MediaPipe, which aborts on any side >= 32,767 px.
CRASH_ENV = {"FER_MAX_SIDE": "40000", "FER_MAX_ASPECT": "100000", "FER_MAX_DECODE_SIDE": "40000"}


def _save(im: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kw)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, astronaut) -> Path:
    """happy/ and sad/ with two good faces each, and every kind of bad file beside them."""
    root = tmp_path_factory.mktemp("bad_images")
    face = Image.fromarray(astronaut)
    for emotion in ("happy", "sad"):
        for i in range(2):
            _save(face.resize((256 + 32 * i, 256 + 32 * i)), root / emotion / f"good{i}.jpg", quality=90)
    _save(Image.new("L", (32767, 64), 128), root / "sad" / "crash_strip.png")
    shutil.copy(root / "happy" / "good0.jpg", root / "happy" / NOT_UTF8)
    (root / "happy" / "empty.jpg").write_bytes(b"")
    (root / "happy" / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (root / "sad" / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    os.mkfifo(root / "sad" / "pipe.jpg")
    os.symlink("/dev/zero", root / "sad" / "zero.jpg")
    os.symlink("loop.png", root / "sad" / "loop.png")
    os.symlink(root / "missing.jpg", root / "happy" / "broken_link.jpg")
    return root


# The CLI's measurement cache for these runs: removed when the test process ends (a folder named
# by the pid stayed in /tmp after every run).
_CLI_CACHE = tempfile.TemporaryDirectory(prefix="fer-bad-")


def _cli(args: list[str], env_extra: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "FER_CACHE_DIR": _CLI_CACHE.name, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "fer_core", *args], cwd=config.REPO_ROOT, env=env,
                          capture_output=True, timeout=timeout)


def _no_traceback(done: subprocess.CompletedProcess) -> str:
    err = done.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err[-3000:]
    return err


# -- the size limits and decoding rules ---------------------------------------------------------
@pytest.mark.parametrize(("size", "words"), [((33_000, 8), "20,000 px"), ((32_767, 64), "20,000 px"),
                                             ((99_999, 400), "20,000 px"), ((8, 4_000), "12 times")])
def test_strips_and_giant_sides_are_refused_before_decoding(tmp_path, size, words):
    path = _save(Image.new("L", size, 100), tmp_path / "strip.png")
    with pytest.raises(ImageError, match=words) as info:
        load_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_40_megapixel_photo_is_decoded_small_in_bounded_memory(tmp_path):
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (500, 800, 3), dtype=np.uint8)).resize((8000, 5000))
    path = _save(noise, tmp_path / "big.jpg", quality=85)
    # Linux carries a process's peak memory across fork and exec: the decoding process is started
    # from a small wrapper, not from this (large) pytest process.
    code = ("import sys; from fer_core.images import load_image; a = load_image(sys.argv[1]); "
            "print(a.shape[0], a.shape[1])")
    wrapper = ("import resource, subprocess, sys; out = subprocess.run(sys.argv[1:], capture_output=True, text=True, "
               "check=True).stdout; print(out.strip(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, check=True)
    h, w, peak_kb = map(int, out.stdout.split())
    assert max(h, w) <= MAX_DECODE_SIDE and w / h == pytest.approx(1.6, rel=0.01)
    assert peak_kb < 400 * 1024, f"peak {peak_kb / 1024:.0f} MB decoding an 8000x5000 JPEG"


def test_float_and_multi_page_images_follow_the_stated_rule(tmp_path):
    fractions = Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32), mode="F")
    assert load_image(_save(fractions, tmp_path / "f.tif"))[0, 0].tolist() == [128, 128, 128]
    wide = Image.fromarray(np.linspace(-1000, 3000, 64, dtype=np.float32).reshape(8, 8), mode="F")
    out = load_image(_save(wide, tmp_path / "wide.tif"))
    assert out.min() == 0 and out.max() == 255
    pages = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "pages.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    assert load_image(path)[0, 0].tolist() == [255, 0, 0], "the first page is the image"


def test_special_files_are_refused_without_reading_them(corpus):
    start = time.monotonic()
    for name, words in (("sad/pipe.jpg", "not a regular file"), ("sad/zero.jpg", "not a regular file"),
                        ("sad/loop.png", "cannot be read"), ("happy/broken_link.jpg", "file not found")):
        with pytest.raises(ImageError, match=words):
            load_image(corpus / name)
    assert time.monotonic() - start < 5, "nothing was read from a pipe or a device"


def test_a_folder_lists_what_it_skips_and_why(corpus):
    listing = scan_images(corpus)
    names = {it.path.name for it in listing.items}
    assert {"good0.jpg", "good1.jpg", NOT_UTF8, "empty.jpg", "crash_strip.png"} <= names
    reasons = {s.file: s.reason for s in listing.skipped}
    assert "SVG" in reasons["happy/drawing.svg"] and "HEIC" in reasons["sad/phone.heic"]
    assert "not a regular file" in reasons["sad/pipe.jpg"] and "not a regular file" in reasons["sad/zero.jpg"]
    assert "loop" in reasons["sad/loop.png"] and "happy/broken_link.jpg" in reasons
    assert all(s.label in ("happy", "sad") for s in listing.skipped)


# -- the worker pool ----------------------------------------------------------------------------
def test_a_worker_that_dies_or_hangs_costs_its_task_only():
    pool = workers.IsolatedPool(1, os._exit, timeout_s=None)
    try:
        (index, result), = list(pool.imap_unordered([7]))
        assert index == 0 and isinstance(result, workers.WorkerFailure) and "exit code 7" in result
    finally:
        pool.close()
    pool = workers.IsolatedPool(2, time.sleep, timeout_s=5)  # 5 s: a loaded machine answers a sleep(0) well within it
    try:
        results = dict(pool.imap_unordered([0, 60, 0, 0]))
        assert sorted(results) == [0, 1, 2, 3]
        assert isinstance(results[1], workers.WorkerFailure) and "took over 5 s" in results[1]
        assert [results[i] for i in (0, 2, 3)] == [None, None, None]
    finally:
        pool.close()


def test_try_it_measures_in_a_worker_that_a_crash_does_not_take_down(astronaut, monkeypatch):
    """Try it's route (one photo, its own worker): the crash is one error, the next photo works."""
    from fer_core.measure.extract import measure_image

    # an array is size-checked as a file is: the limits moved out of the way of a strip that crashes MediaPipe
    monkeypatch.setenv("FER_MAX_SIDE", "40000")
    monkeypatch.setenv("FER_MAX_ASPECT", "1000")
    strip = np.full((64, 32767, 3), 128, np.uint8)
    with pytest.raises(ImageError, match="crashed"):
        measure_image(strip)
    faces = measure_image(astronaut)
    assert len(faces) == 1 and faces[0].landmarks.shape == (478, 3)


# -- every entry point --------------------------------------------------------------------------
@pytest.mark.parametrize("n_workers", [1, 2])
def test_extract_survives_a_real_native_crash_and_keeps_every_row(corpus, tmp_path, n_workers):
    out = tmp_path / "au.csv"
    done = _cli(["extract", str(corpus), "--out", str(out), "--workers", str(n_workers), "--no-cache"], CRASH_ENV)
    err = _no_traceback(done)
    assert done.returncode == 0, err
    table = pd.read_csv(out)
    rows = table.set_index("file")
    assert rows.loc["sad/crash_strip.png", "reason"].startswith("the face detector crashed on this image")
    assert (rows.loc[[f"{e}/good{i}.jpg" for e in ("happy", "sad") for i in (0, 1)], "success"] == 1).all()
    assert rows.loc["happy/caf\\xff.jpg", "success"] == 1, "a name that is not UTF-8 is kept, escaped"
    for name in ("happy/empty.jpg", "happy/drawing.svg", "sad/phone.heic", "sad/pipe.jpg", "sad/zero.jpg",
                 "sad/loop.png", "happy/broken_link.jpg"):
        assert rows.loc[name, "success"] == 0 and rows.loc[name, "reason"], name
    assert "crashed" in err


def test_predict_reports_the_crashing_image_and_explains_the_others(corpus):
    done = _cli(["predict", str(corpus / "sad" / "crash_strip.png"), str(corpus / "happy" / "good0.jpg"),
                 str(corpus / "sad" / "zero.jpg"), "--json"], CRASH_ENV)
    _no_traceback(done)
    import json

    results = json.loads(done.stdout)
    assert done.returncode == 2 and len(results) == 3
    assert "crashed" in results[0]["error"] and "not a regular file" in results[2]["error"]
    assert results[1]["faces"] and results[1]["faces"][0]["sentence"]


def test_evaluate_and_compare_report_skipped_files_and_score_the_rest(corpus, models_dir):
    for command in (["evaluate", "--images", str(corpus), "--json"], ["compare", "--images", str(corpus), "--json"]):
        done = _cli(command, {"FER_MODELS_DIR": str(models_dir)})
        err = _no_traceback(done)
        assert done.returncode == 0, err
        skipped = [line for line in err.splitlines() if line.startswith("skipped:")]
        assert any("drawing.svg" in line for line in skipped) and any("pipe.jpg" in line for line in skipped)
        assert any("crash_strip.png" in line and "20,000 px" in line for line in skipped)
        assert all(len(line) < 300 for line in skipped)
        assert b'"n": 5' in done.stdout, "the four good faces and the one with a name that is not UTF-8"


def test_au_model_page_survives_a_crashing_image(corpus, models_dir, monkeypatch):
    """The dashboard extracts through the same workers: the crash is a failure row, the server lives."""
    from apptest_helpers import run_app, texts
    from streamlit.testing.v1 import AppTest

    for key, value in CRASH_ENV.items():
        monkeypatch.setenv(key, value)
    workers.close_workers()  # new workers inherit the raised limits
    try:
        at = run_app(AppTest.from_file(str(config.REPO_ROOT / "pages" / "2_AU_model.py")), 90)
        at.radio(key="au_source").set_value(
            "Extract AUs from an image folder (embedded MediaPipe or OpenFace in Docker)")
        run_app(at, 90)
        at.text_input(key="au_folder").set_value(str(corpus))
        at.number_input(key="au_per").set_value(0)
        at.button(key="au_extract").click()
        run_app(at, 240)
        assert any("faces measured in" in s for s in texts(at.success))
        table = next(v["table"] for k, v in at.session_state["au_tables"].items() if "|" in k)
        reasons = dict(zip(table["file"], table["reason"]))
        assert reasons["sad/crash_strip.png"].startswith("the face detector crashed")
        assert au_table.usable(table).shape[0] >= 5
    finally:
        workers.close_workers()


def test_a_folder_given_as_a_symlink_loop_is_one_line(tmp_path):
    """A loop inside a folder was said; the folder given itself being one raised "unexpected
    RuntimeError (a bug)" on the CLI and a traceback on Compare."""
    from fer_core.errors import DatasetError
    from fer_core.images import scan_images

    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    with pytest.raises(DatasetError, match="symbolic link loop; fix or remove the link"):
        scan_images(tmp_path / "a")
    done = _cli(["evaluate", "--images", str(tmp_path / "a")])
    assert done.returncode == 2 and _no_traceback(done).strip().endswith("symbolic link loop; fix or remove the link")
