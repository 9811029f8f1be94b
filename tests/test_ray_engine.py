"""The Ray engine on a real local Ray cluster started here (one per module): the same rows as the
local engine, failures as rows, a measuring actor that dies mid-run, resume after an interrupt,
and the CLI joining a running cluster by its address."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -r requirements-ray.txt)")

from fer_core import au_table, i18n  # noqa: E402
from fer_core.cli import main  # noqa: E402
from fer_core.config import REPO_ROOT, fer_split_dir  # noqa: E402
from fer_core.errors import FerError  # noqa: E402
from fer_core.images import scan_images  # noqa: E402
from fer_core.measure import ray_engine  # noqa: E402
from fer_core.measure.extract import extract_table  # noqa: E402
from fer_core.measure.ray_engine import CRASH_REASON, MeasuringActor, extract_on_ray  # noqa: E402

# a face as this engine writes one: every AU measured (a row missing some was cut short)
ALL_AUS = {c: 2.0 if c == "AU12_r" else 0.1 for c in au_table.AU_COLUMNS}
BOX = dict(zip(au_table.BOX_COLUMNS, (10.0, 12.0, 30.0, 34.0), strict=True))


@pytest.fixture(scope="module")
def cluster():
    """A real two-CPU Ray instance, shared by the module's tests (starting one takes ~10 s)."""
    ray.init(num_cpus=2, include_dashboard=False, runtime_env=ray_engine.runtime_env(), log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory, astronaut) -> Path:
    """Real faces (the astronaut, turned and scaled; FER2013 val faces when present), an image
    without a face, and a corrupt JPEG."""
    from PIL import Image

    root = tmp_path_factory.mktemp("ray_images")
    (root / "happy").mkdir()
    (root / "neutral").mkdir()
    face = Image.fromarray(astronaut)
    face.save(root / "happy" / "astronaut.jpg", quality=92)
    face.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "happy" / "mirrored.jpg", quality=92)
    face.resize((256, 256)).save(root / "happy" / "small.png")
    face.rotate(8).save(root / "neutral" / "tilted.jpg", quality=90)
    Image.new("RGB", (160, 160), (120, 140, 160)).save(root / "neutral" / "wall.png")
    (root / "neutral" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    val = fer_split_dir("val")
    for emotion in ("happy", "neutral"):
        for src in sorted((val / emotion).glob("*.jpg"))[:4] if val.is_dir() else []:
            (root / emotion / src.name).write_bytes(src.read_bytes())
    return root


@pytest.fixture(scope="module")
def local_table(folder) -> pd.DataFrame:
    listing = scan_images(folder)
    return extract_table(listing.items, workers=1, use_cache=False, root=folder, skipped=listing.skipped)


def _run(folder: Path, out: Path, **kw) -> ray_engine.RayRun:
    listing = scan_images(folder)
    return extract_on_ray(listing.items, out, root=folder, skipped=listing.skipped, **kw)


def _record(out: Path, root: Path, **changes: str) -> None:
    """The record a Ray run over ``root`` leaves beside ``out`` (with ``changes``)."""
    ray_engine.record_path(out).write_text(json.dumps({**ray_engine.run_record(root), **changes}))


def _same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    key = ["file", "face"]
    pd.testing.assert_frame_equal(a.sort_values(key, ignore_index=True), b.sort_values(key, ignore_index=True))


def test_same_rows_as_local_engine_and_corrupt_file_is_a_failure_row(cluster, folder, local_table, tmp_path):
    out = tmp_path / "au.parquet"
    run = _run(folder, out, workers=2, batch_size=2)
    assert run.measured == len(scan_images(folder).items) and run.resumed == 0 and not run.cancelled
    _same_rows(run.table, local_table)
    _same_rows(au_table.read(out), local_table)  # what was written reads back the same
    assert not ray_engine.parts_dir(out).exists()
    by_file = run.table.set_index("file")
    assert by_file.loc["neutral/corrupt.jpg", "success"] == 0
    assert by_file.loc["neutral/corrupt.jpg", "reason"].startswith("image is corrupt")
    assert by_file.loc["neutral/wall.png", "reason"] == "no face found"
    assert by_file.loc["happy/astronaut.jpg", "success"] == 1
    assert run.table["file"].is_unique  # one face each here
    assert list(run.table["file"]) == list(local_table["file"])  # the listing's order, as locally


def _crashing(file: str, marker: Path, always: bool = False) -> type:
    """A measuring actor whose process dies (``os._exit``, as a native crash would) when it meets
    ``file``: on the first try only (a marker on disk remembers it), or on every try."""

    class Crashing(MeasuringActor):
        def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
            if file in set(batch["file"]) and (always or not marker.exists()):
                marker.touch()
                os._exit(1)
            return super().__call__(batch)

    return Crashing


def test_actor_that_dies_mid_run_is_restarted_and_no_row_is_lost_or_doubled(cluster, folder, local_table, tmp_path):
    marker = tmp_path / "died"
    run = _run(folder, tmp_path / "au.csv", workers=2, batch_size=2, actor=_crashing("happy/mirrored.jpg", marker))
    assert marker.exists()  # the actor did die
    assert run.table["file"].is_unique
    _same_rows(run.table, local_table)


def test_file_that_kills_its_actor_every_time_becomes_a_failure_row(cluster, folder, local_table, tmp_path):
    run = _run(folder, tmp_path / "au.csv.gz", workers=2, batch_size=3,
               actor=_crashing("happy/small.png", tmp_path / "died", always=True))
    by_file = run.table.set_index("file")
    assert by_file.loc["happy/small.png", "success"] == 0
    assert by_file.loc["happy/small.png", "reason"] == CRASH_REASON
    others = run.table[run.table["file"] != "happy/small.png"]
    _same_rows(others, local_table[local_table["file"] != "happy/small.png"])  # its batch-mates kept


def test_a_rerun_measures_again_the_file_whose_actor_crashed(cluster, folder, local_table, tmp_path):
    """A crash may not repeat (the local engine does not keep it either): the next run into the
    same output measures that file again, and its crash row gives way to the measured one. The
    output is written as a run whose actor died on happy/small.png every time leaves it
    (test_file_that_kills_its_actor_every_time_becomes_a_failure_row)."""
    from fer_core.measure.extract import rows_for_image

    out = tmp_path / "au.parquet"
    crashed = local_table["file"] == "happy/small.png"
    au_table.write(au_table.concat([local_table[~crashed],
                                    au_table.from_rows(rows_for_image("happy/small.png", "happy", CRASH_REASON))]), out)
    _record(out, folder)
    again = _run(folder, out, workers=1)
    assert again.measured == 1 and again.resumed == len(scan_images(folder).items) - 1
    assert again.table["file"].is_unique and CRASH_REASON not in set(again.table["reason"])
    _same_rows(au_table.read(out), local_table)


def test_a_rerun_measures_a_file_that_could_not_be_read_and_drops_files_gone(cluster, folder, local_table, tmp_path):
    """A file that could not be read (a broken link, since mended) was kept as "cannot read" for
    good; a file deleted since the last run kept its rows, so the table was not the folder's."""
    from fer_core.measure.extract import rows_for_image

    out = tmp_path / "au.csv"
    unread = local_table["file"] == "happy/mirrored.jpg"
    au_table.write(au_table.concat([
        local_table[~unread],
        au_table.from_rows(rows_for_image("happy/mirrored.jpg", "happy", "cannot read (No such file or directory)")),
        au_table.from_rows(rows_for_image("happy/gone.jpg", "happy", "no face found"))]), out)
    _record(out, folder)
    again = _run(folder, out, workers=1)
    assert again.measured == 1 and "happy/gone.jpg" not in set(again.table["file"])
    assert again.dropped == 1  # said: a half-mounted share would shrink the table unsaid
    _same_rows(au_table.read(out), local_table)


def test_resume_after_an_interrupted_run_measures_only_the_rest(cluster, folder, local_table, tmp_path):
    out = tmp_path / "au.parquet"
    total = len(scan_images(folder).items)

    def interrupt(done: int, total_now: int) -> None:
        if 0 < done < total_now:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(folder, out, workers=1, batch_size=2, progress=interrupt)
    assert not out.exists()
    kept = au_table.concat([au_table.read(p) for p in ray_engine.parts_dir(out).glob("*.parquet")])
    assert 0 < kept["file"].nunique() < total
    run = _run(folder, out, workers=2, batch_size=2)
    assert run.resumed == kept["file"].nunique() and run.measured == total - run.resumed
    _same_rows(run.table, local_table)
    again = _run(folder, out, workers=2)  # nothing left: Ray is not even asked
    assert again.measured == 0 and again.resumed == total
    _same_rows(au_table.read(out), local_table)


def test_a_photo_changed_under_the_same_name_is_measured_again(cluster, folder, tmp_path, capsys):
    """Rows are matched by name: a photo copied over another kept the old one's AUs on a Ray rerun
    ("0 images measured"), where the local engine (its cache is by content) measures it anew."""
    import shutil

    root = tmp_path / "photos"
    (root / "happy").mkdir(parents=True)
    shutil.copy(folder / "happy" / "astronaut.jpg", root / "happy" / "astronaut.jpg")
    shutil.copy(folder / "neutral" / "wall.png", root / "happy" / "second.png")
    out = tmp_path / "au.csv"
    first = _run(root, out, workers=1)
    assert first.measured == 2 and not first.table.set_index("file").loc["happy/second.png", "success"]
    shutil.copy2(folder / "happy" / "small.png", root / "happy" / "second.png")  # a face now, its old time kept (cp -p)
    assert main(["extract", str(root), "--engine", "ray", "--ray-address", cluster, "--workers", "1",
                 "--out", str(out)]) == 0
    said = capsys.readouterr().err
    assert "1 image measured by 1 actor" in said and "1 image changed since it was measured, measured again" in said
    again = au_table.read(out).set_index("file")
    assert again.loc["happy/second.png", "success"] == 1 and again.loc["happy/astronaut.jpg", "success"] == 1
    assert _run(root, out, workers=1).measured == 0  # unchanged since: skipped


def test_a_file_measured_again_after_an_interrupted_run_keeps_its_newest_rows(tmp_path):
    """Parts are named by run, not in time order: a file changed and measured again by a later,
    interrupted run has rows in an older and a newer part, and the newer are the photo's."""
    from fer_core.images import LabeledImage

    def rows(face: float) -> pd.DataFrame:
        return au_table.from_rows([{"file": "happy/a.jpg", "face": 0, "label": "happy", "success": 1,
                                    "confidence": 0.9, "source": "mediapipe", "reason": "",
                                    **ALL_AUS, "AU12_r": face, **BOX}])

    (tmp_path / "happy").mkdir()
    (tmp_path / "happy" / "a.jpg").write_bytes(b"")
    os.utime(tmp_path / "happy" / "a.jpg", ns=(2_000_000_000, 2_000_000_000))  # changed after the old part
    out = tmp_path / "au.csv"
    parts = ray_engine.parts_dir(out)
    au_table.write(rows(4.0), parts / "part-ffff-00000.parquet")  # the newer run, sorted first by name
    au_table.write(rows(1.0), parts / "part-0000-00000.parquet")
    os.utime(parts / "part-0000-00000.parquet", ns=(1_000_000_000, 1_000_000_000))
    _record(out, tmp_path)
    run = extract_on_ray([LabeledImage(tmp_path / "happy" / "a.jpg", "happy")], out, root=tmp_path)
    assert run.measured == 0 and run.changed == 0 and au_table.read(out)["AU12_r"].tolist() == [4.0]


def test_stop_keeps_the_rows_for_a_rerun(cluster, folder, local_table, tmp_path):
    out = tmp_path / "au.csv"
    run = _run(folder, out, workers=1, batch_size=2, should_stop=lambda: True)
    assert run.cancelled and not out.exists() and 0 < run.measured < len(scan_images(folder).items)
    rest = _run(folder, out, workers=2, batch_size=2)
    assert rest.resumed == run.measured
    _same_rows(rest.table, local_table)


def _extract_on_cluster(folder, cluster: str, out) -> subprocess.CompletedProcess:
    """``python -m fer_core extract FOLDER --engine ray --ray-address CLUSTER`` with one actor."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "fer_core", "extract", str(folder), "--engine", "ray",
                           "--ray-address", cluster, "--workers", "1", "--out", str(out)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_cli_joins_a_running_cluster_by_address(cluster, folder, local_table, tmp_path):
    out = tmp_path / "au.parquet"
    proc = _extract_on_cluster(folder, cluster, out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "measured by 1 actor in" in proc.stderr
    _same_rows(au_table.read(out), local_table)
    assert ray.is_initialized()  # the cluster it joined is still up


def test_cli_takes_a_folder_whose_name_is_not_utf8(cluster, folder, local_table, tmp_path):
    """Ray reads the command line back from the system and hands it to its core as UTF-8: a folder
    named in Latin-1 (``caf\\xe9``) on it stopped every Ray run with "could not start or join ...
    UnicodeEncodeError"."""
    latin1 = tmp_path / os.fsdecode(b"caf\xe9 photos")
    (latin1 / "happy").mkdir(parents=True)
    for name in ("astronaut.jpg", "small.png"):
        (latin1 / "happy" / name).write_bytes((folder / "happy" / name).read_bytes())
    out = tmp_path / "au.parquet"
    proc = _extract_on_cluster(latin1, cluster, out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = local_table[local_table["file"].isin(["happy/astronaut.jpg", "happy/small.png"])]
    _same_rows(au_table.read(out), expected.reset_index(drop=True))


def test_cli_engine_options_are_checked_before_measuring(capsys, tmp_path, folder):
    for args, message in ((["--ray-address", "127.0.0.1:6379"], "--ray-address needs --engine ray"),
                          (["--engine", "ray", "--mask", "surgical"], "--mask works with --engine local only"),
                          (["--engine", "ray", "--backend", "openface-docker"], "measures with MediaPipe")):
        code = main(["extract", str(folder), "--out", str(tmp_path / "a.csv"), *args])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "a.csv").exists()


def test_an_address_where_no_cluster_answers_is_one_line(tmp_path, folder, capsys):
    """ray.init retried for ever, printing Ray's own logs, and left a record behind."""
    out = tmp_path / "a.csv"
    code = main(["extract", str(folder), "--out", str(out), "--engine", "ray", "--ray-address", "127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 2 and "no Ray cluster answers at 127.0.0.1:1" in err and err.count("\n") == 1
    assert not out.exists() and not ray_engine.record_path(out).exists()
    # the dashboard says Ray's errors in the page's language (they were English on ?lang=ko)
    with i18n.using_language("ko"):
        said = [i18n.message(m) for m in (err.strip().removeprefix("error: "),
                                          "the Ray cluster at h:1 asks for its token (Ray's token authentication): run "
                                          "with RAY_AUTH_MODE=token and the head's token in ~/.ray/auth_token or "
                                          "RAY_AUTH_TOKEN", "the Ray run stopped (x); run it again to measure the rest")]
    assert said[0].startswith("127.0.0.1:1에서 응답하는 Ray 클러스터가 없습니다")
    assert said[1].startswith("h:1의 Ray 클러스터가 토큰을 요구합니다") and said[2].startswith("Ray 실행이 멈췄습니다")


def test_reachable_says_whether_a_cluster_answers(cluster):
    assert ray_engine.reachable(cluster)
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    assert not ray_engine.reachable(f"127.0.0.1:{free}")
    assert not ray_engine.reachable("") and not ray_engine.reachable("no-port")
    # a web server on the port: ray.init retried for ever there, printing Ray's logs
    import http.server
    import threading

    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert not ray_engine.reachable(f"127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()


def test_parquet_table_round_trip_and_corrupt_parquet_is_one_line(tmp_path):
    table = au_table.from_rows([{"file": "a.jpg", "face": 0, "label": "happy", "success": 1, "confidence": 0.9,
                                 "source": "mediapipe", "reason": "", "AU12_r": 2.5},
                                {"file": "b.jpg", "face": 0, "label": None, "success": 0, "confidence": 0.0,
                                 "source": "mediapipe", "reason": "no face found"}])
    path = au_table.write(table, tmp_path / "t.parquet")
    assert path.read_bytes()[:4] == b"PAR1"
    pd.testing.assert_frame_equal(au_table.read(path), table)
    assert np.isnan(au_table.read(path).loc[1, "AU12_r"])
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1" + b"\0" * 40)
    with pytest.raises(au_table.AUTableError, match="bad.parquet: not a readable Parquet file"):
        au_table.read(bad)


# -- the AU model page's extraction form --------------------------------------------------------
AU_PAGE = str(REPO_ROOT / "pages" / "2_AU_model.py")
PAGE_TIMEOUT = 240


def _extraction_form(lang: str | None = None):
    from apptest_helpers import run_app
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(AU_PAGE)
    if lang:
        at.query_params["lang"] = lang
    with i18n.using_language(lang or "en"):
        run_app(at, PAGE_TIMEOUT)
        at.radio(key="au_source").set_value("Extract AUs from an image folder (embedded MediaPipe or OpenFace in Docker)")
        run_app(at, PAGE_TIMEOUT)
    return at


def test_au_page_offers_ray_only_when_a_cluster_answers(models_dir, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert "au_engine" not in [r.key for r in _extraction_form().radio]
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:9")  # nothing listens there
    assert "au_engine" not in [r.key for r in _extraction_form().radio]


def test_au_page_extracts_on_the_ray_cluster_in_korean(cluster, folder, local_table, models_dir, monkeypatch, tmp_path):
    from apptest_helpers import english_left, page_texts, run_app
    from conftest import BUNDLED_AU_MODEL

    from fer_core import i18n

    monkeypatch.setenv("RAY_ADDRESS", cluster)
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    english = _extraction_form()
    assert english.radio(key="au_engine").label == "Where to measure"
    assert cluster in english.radio(key="au_engine").help
    at = _extraction_form("ko")
    with i18n.using_language("ko"):
        assert at.radio(key="au_engine").label == "측정 위치"
        at.text_input(key="au_folder").set_value(str(folder))
        at.number_input(key="au_per").set_value(0)
        at.radio(key="au_engine").set_value("ray")
        at.button(key="au_extract").click()
        run_app(at, PAGE_TIMEOUT)
        assert english_left(page_texts(at), (BUNDLED_AU_MODEL,)) == []
    table = next(v["table"] for k, v in at.session_state["au_tables"].items() if "|" in k)
    _same_rows(table, local_table)
    assert not list((tmp_path / "cache" / "ray").glob("*.parquet"))  # a finished run leaves no file behind


def test_dashboard_and_local_engine_do_not_import_ray():
    code = ("import sys; import ui.common, fer_core.measure.extract, fer_core.measure.ray_engine, fer_core.cli; "
            "ray_engine = fer_core.measure.ray_engine; ray_engine.cluster_address(); "
            "print('ray' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "RAY_ADDRESS": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False"


def test_rows_in_both_the_output_and_left_over_parts_count_once(tmp_path):
    """A run stopped between writing its output and removing its parts: the rerun (nothing left to
    measure, so Ray is not started) writes each file once."""
    from fer_core.images import LabeledImage

    def rows(*files: str) -> pd.DataFrame:
        return au_table.from_rows({"file": f, "face": 0, "label": "happy", "success": 1, "confidence": 0.9,
                                   "source": "mediapipe", "reason": "", **ALL_AUS, **BOX} for f in files)

    out = tmp_path / "au.csv"
    au_table.write(rows("happy/a.jpg", "happy/b.jpg"), out)
    au_table.write(rows("happy/b.jpg"), ray_engine.parts_dir(out) / "part-x-00000.parquet")
    _record(out, tmp_path)
    items = [LabeledImage(tmp_path / "happy" / n, "happy") for n in ("a.jpg", "b.jpg")]
    run = extract_on_ray(items, out, root=tmp_path)
    assert run.measured == 0 and run.resumed == 2
    assert list(au_table.read(out)["file"]) == ["happy/a.jpg", "happy/b.jpg"]
    assert not ray_engine.parts_dir(out).exists()


def test_a_file_that_could_not_be_decoded_is_measured_again_once_it_decodes(tmp_path, astronaut_jpeg):
    """A corrupt photo re-exported, as its error says, kept its failure row on a Ray rerun ("0 images
    measured ... already in"); the local engine measures it again. One still broken is not retried
    (no Ray start for it)."""
    from fer_core.measure.extract import rows_for_image

    reasons = {"happy/cut.jpg": "image is corrupt or truncated (OSError); re-export it", "happy/empty.jpg": "file is empty",
               "happy/text.jpg": "not a readable image (use JPEG or PNG)", "happy/wall.jpg": "no face found",
               "happy/huge.jpg": "51 MB is larger than an image file can be (50 MB); give a JPEG or PNG image file"}
    for name in reasons:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    for name in ("cut.jpg", "huge.jpg"):  # re-exported since
        (tmp_path / "happy" / name).write_bytes(astronaut_jpeg.read_bytes())
    table = au_table.concat([au_table.from_rows(rows_for_image(f, "happy", why)) for f, why in reasons.items()])
    paths = {f: str(tmp_path / f) for f in reasons}
    assert ray_engine._mended_files([table], paths) == {"happy/cut.jpg", "happy/huge.jpg"}
    assert ray_engine._done_files([table]) == set(reasons)


def test_another_table_copied_over_a_ray_output_is_not_resumed_into(tmp_path):
    """With the run's record still beside it, the study's 4,473-row table copied over the output
    was replaced by the rerun's rows without a word."""
    out = tmp_path / "au.csv"
    au_table.write(_happy_rows("happy/a.jpg"), out)
    record = ray_engine.run_record(tmp_path)
    ray_engine._write_record(out, record)  # as a finished run leaves it
    assert ray_engine.foreign_rows(out, record) is None
    ray_engine._claim(out, record)  # a rerun's claim keeps the stamp of the output it found
    assert ray_engine.foreign_rows(out, record) is None
    os.utime(out, (0, 0))  # a copy or a restore gives it another time: the same table
    assert ray_engine.foreign_rows(out, record) is None
    au_table.write(_happy_rows("happy/a.jpg", "happy/other.jpg"), out)  # another table over it
    assert "changed since the Ray run wrote it" in ray_engine.foreign_rows(out, record)
    with pytest.raises(FerError, match="already holds a table changed since the Ray run wrote it"):
        ray_engine._claim(out, record)


def test_a_row_cut_off_mid_way_is_measured_again(tmp_path):
    """A CSV output cut off mid-row was resumed as whole: the cut row kept success 1 with 12 of its
    17 AUs empty, unsaid."""
    whole = {"file": "happy/a.jpg", "face": 0, "label": "happy", "success": 1, "source": "mediapipe", **ALL_AUS,
             **BOX}
    cut = {**whole, "file": "happy/b.jpg", **{c: np.nan for c in au_table.AU_COLUMNS[5:]}}
    masked = {**cut, "file": "happy/c.jpg", "masked": 1}  # a mask hides AUs: not cut
    # an older version's row, without the box (a reviewer resumed one: its faces kept no box for good)
    boxless = {**whole, "file": "happy/d.jpg", **{c: np.nan for c in au_table.BOX_COLUMNS}}
    table = au_table.from_rows([whole, cut, masked, boxless])
    assert ray_engine._done_files([table]) == {"happy/a.jpg", "happy/c.jpg"}


def _happy_rows(*files: str) -> pd.DataFrame:
    return au_table.from_rows({"file": f, "face": 0, "label": "happy", "success": 1, "confidence": 0.9,
                               "source": "mediapipe", "reason": "", **ALL_AUS, **BOX} for f in files)


def test_an_output_of_another_folder_is_refused_not_mixed_in(tmp_path, capsys):
    """Two folders with the same layout (happy/a.jpg in both) into one --out: the second run used
    to keep the first folder's rows for its own files. It now stops before measuring, naming the
    folder those rows came from, and leaves them as they are."""
    first, second = tmp_path / "first", tmp_path / "second"
    out = tmp_path / "au.csv"
    au_table.write(_happy_rows("happy/a.jpg"), out)
    _record(out, first)
    for root in (first, second):
        (root / "happy").mkdir(parents=True)
        (root / "happy" / "a.jpg").write_bytes(b"not measured here")
    assert main(["extract", str(second), "--engine", "ray", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another folder" in err and str(first) in err and "--out" in err
    assert list(au_table.read(out)["AU12_r"]) == [2.0]
    assert json.loads(ray_engine.record_path(out).read_text())["folder"] == str(first.resolve())


@pytest.mark.parametrize("changes, said", [({"measurement": "mp-1"}, "another version"),
                                           ({"classes": "seven"}, "other --classes"),
                                           (None, "without a Ray run's record")])
def test_rows_of_other_options_or_of_the_local_engine_are_not_resumed(tmp_path, changes, said):
    from fer_core.errors import FerError
    from fer_core.images import LabeledImage

    out = tmp_path / "au.parquet"
    au_table.write(_happy_rows("happy/a.jpg"), ray_engine.parts_dir(out) / "part-x-00000.parquet")
    if changes is not None:
        _record(out, tmp_path, **changes)
    with pytest.raises(FerError, match=said):
        extract_on_ray([LabeledImage(tmp_path / "happy" / "a.jpg", "happy")], out, root=tmp_path)
    assert len(list(ray_engine.parts_dir(out).glob("*.parquet"))) == 1


def test_the_local_engine_leaves_no_ray_record_for_its_output(tmp_path, folder):
    """An output the local engine overwrote is no Ray run's: a Ray run into it must not resume it."""
    out = tmp_path / "au.csv"
    _record(out, folder)
    (ray_engine.parts_dir(out) / "part-x-00000.parquet").parent.mkdir(parents=True)
    au_table.write(_happy_rows("happy/a.jpg"), ray_engine.parts_dir(out) / "part-x-00000.parquet")
    # a Ray run writing the output holds its lock: the local engine waits for no one, it refuses
    measured = []
    with ray_engine.one_run(out), pytest.MonkeyPatch.context() as mp:
        mp.setattr("fer_core.measure.extract.extract_table", lambda *a, **k: measured.append(1))
        assert main(["extract", str(folder / "neutral"), "--out", str(out), "--workers", "1", "--no-cache"]) == 2
    assert not out.exists() and measured == []  # refused before measuring: --no-cache keeps nothing
    assert main(["extract", str(folder / "neutral"), "--out", str(out), "--no-cache", "--workers", "1"]) == 0
    # no record, and no parts of an interrupted Ray run that a later Ray run would stumble on
    assert not ray_engine.record_path(out).exists() and not ray_engine.parts_dir(out).exists()


def test_the_same_class_filter_written_another_way_resumes(tmp_path):
    from fer_core.images import LabeledImage

    out = tmp_path / "au.csv"
    au_table.write(_happy_rows("happy/a.jpg"), out)
    _record(out, tmp_path, classes=ray_engine.run_record(tmp_path, "happy,sad")["classes"])
    run = extract_on_ray([LabeledImage(tmp_path / "happy" / "a.jpg", "happy")], out, root=tmp_path, classes="Sad, happy")
    assert run.resumed == 1 and run.measured == 0


def test_ray_init_leaves_the_command_lines_sigterm_handler_in_place():
    """ray.init puts its own SIGTERM handler (sys.exit) in place: a ``kill`` of a Ray run then
    ended it without a word and without the rows it had not yet written to its parts. The
    command line's handler (ended as Ctrl-C is) is put back once Ray has started."""
    import signal

    def on_terminate(signum, frame) -> None:  # the command line's (fer_core.cli.on_terminate) or any other
        raise KeyboardInterrupt

    class StartingRay:  # ray.init's effect on the handler, without starting Ray
        def is_initialized(self) -> bool:
            return False

        def init(self, **kwargs) -> None:
            signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))

    before = signal.signal(signal.SIGTERM, on_terminate)
    try:
        assert ray_engine._connect(StartingRay(), None, 1) is True
        assert signal.getsignal(signal.SIGTERM) is on_terminate
    finally:
        signal.signal(signal.SIGTERM, before)


def test_an_interrupted_cli_run_says_its_rows_wait_for_the_next(tmp_path, folder, capsys, monkeypatch):
    """Ctrl-C said "interrupted" only: not that the rows so far were kept, nor how to go on."""
    out = tmp_path / "au.parquet"

    def interrupted(items, target, **kwargs):
        au_table.write(_happy_rows("happy/astronaut.jpg"), ray_engine.parts_dir(target) / "part-x-00000.parquet")
        raise KeyboardInterrupt

    monkeypatch.setattr(ray_engine, "extract_on_ray", interrupted)
    code = main(["extract", str(folder), "--engine", "ray", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 130 and err.count("\n") == 1
    assert f"kept in {ray_engine.parts_dir(out)}" in err and "measures only the rest" in err


def test_a_second_run_into_the_same_output_is_refused_while_the_first_runs(cluster, folder, local_table, tmp_path,
                                                                          capsys):
    """Two runs into one output at once both measured every file, and the first to finish removed
    the parts folder the second was still writing. The second is now refused at once, in one line,
    and the first finishes as if alone; its lock file is gone with it."""
    from fer_core.errors import FerError

    out = tmp_path / "au.parquet"
    refused: list[str] = []

    def second_run(done: int, total: int) -> None:
        if 0 < done < total and not refused:
            with pytest.raises(FerError, match="another run is writing") as second:
                _run(folder, out, workers=1)
            refused.append(str(second.value))
            assert main(["extract", str(folder), "--engine", "ray", "--out", str(out)]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and f"another run is writing {out}; wait for it or choose another --out" in err

    run = _run(folder, out, workers=1, batch_size=2, progress=second_run)
    assert refused and not run.cancelled and run.measured == len(scan_images(folder).items)
    with i18n.using_language("ko"):  # as the AU page shows it to a second session
        assert i18n.message(refused[0]).startswith("다른 실행이 ")
    _same_rows(au_table.read(out), local_table)
    assert not ray_engine.lock_path(out).exists() and not ray_engine.parts_dir(out).exists()


def test_a_cli_run_prints_only_its_own_lines(folder, tmp_path):
    """Each Ray run added Ray's own warnings to stderr: token authentication being on and "Progress
    bars disabled". (The line Ray's C++ core writes about the actors' arguments is past Python's
    logging and stays.)"""
    out = tmp_path / "au.csv"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    proc = subprocess.run([sys.executable, "-m", "fer_core", "extract", str(folder / "neutral"), "--engine", "ray",
                           "--workers", "1", "--out", str(out)],
                          cwd=REPO_ROOT, env={**env, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for chatter in ("Token authentication", "Progress bars"):
        assert chatter not in proc.stderr
    # Ray's C++ core writes past Python's logging (the actors' arguments; on a loaded machine, a metrics
    # agent that is slow to start): its lines name their source file, ours never do
    ray_line, summary, *reasons = [line for line in proc.stderr.splitlines()  # then the commonest reasons, indented
                                   if "constructor arguments" not in line and not re.search(r"\w\.cc:\d+", line)]
    assert ray_line.startswith("Ray: ") and "faces ->" in summary and all(r.startswith("  ") for r in reasons), \
        proc.stderr
    assert au_table.read(out)["file"].nunique() == len(scan_images(folder / "neutral").items)
