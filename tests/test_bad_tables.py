"""Bad AU tables and bad output paths end as one line naming the file and what to do: never a
traceback, never a half-written file, never gigabytes of memory. Every bad input is made here, at
test time; the Python API raises the project's error, the CLI exits 2 with one ``error:`` line,
and batches keep their good rows."""

from __future__ import annotations

import errno
import gzip
import importlib.util
import io
import json
import os
import re
import stat
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from apptest_helpers import run_app, texts
from streamlit.testing.v1 import AppTest
from test_au_model import synthetic_table

from fer_core import au_table, fileio
from fer_core.au_table import AU_COLUMNS, AU_INVALID, AU_MISSING
from fer_core.emotions import SIX_EMOTIONS
from fer_core.errors import AUTableError, FerError, OutputFileError
from fer_core.evaluation.compare import evaluate_au_table
from fer_core.evaluation.metrics import wilson_ci
from fer_core.manifest import ModelEntry, write_manifest
from fer_core.predictors.au_gam import AUGam
from fer_core.predictors.au_models import AUModel, AUPredictor, fit_au_model

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "FER_PROGRESS": "0"}


# -- helpers ------------------------------------------------------------------------------------
def cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fer_core", *map(str, args)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """The CLI failed with exit status 2 and exactly one ``error:`` line holding ``fragments``."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip("\n").splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def with_bad_values(n_per_class: int = 20) -> pd.DataFrame:
    """A good table with five spoilt labelled rows: inf, -inf, 1e308, NaN and text in AU cells."""
    table = synthetic_table(n_per_class).astype({"AU09_r": object})
    table.loc[0, "AU01_r"] = np.inf
    table.loc[1, "AU02_r"] = -np.inf
    table.loc[2, "AU04_r"] = 1e308
    table.loc[3, "AU05_r"] = np.nan
    table.loc[4, "AU09_r"] = "oops"
    return table


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A logistic regression fitted on a synthetic table, saved as JSON."""
    path = tmp_path_factory.mktemp("model") / "m.json"
    fit_au_model(synthetic_table(30)).save(path)
    return path


# -- 1. values that are not measurements --------------------------------------------------------
def test_non_finite_and_text_values_leave_their_rows_out_and_are_counted(tmp_path):
    path = write_csv(with_bad_values(), tmp_path / "spoilt.csv")
    table = au_table.read(path)
    assert len(table) == 120 and table.loc[4, "reason"] == "an AU value is not a number"
    selection = au_table.select(table, SIX_EMOTIONS)
    assert selection.left_out == {AU_INVALID: 3, AU_MISSING: 2} and selection.n == 115
    model = fit_au_model(table)
    assert model.info["data"]["rows"] == 115 and model.info["data"]["left_out"] == {AU_INVALID: 3, AU_MISSING: 2}
    assert all(np.isfinite(w).all() for w in model.weights)

    result = cli("train-au", path, "--out", tmp_path / "m.json")
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("left out 5 of 120 rows: 3 with AU values that are infinite or outside -1 to 10, "
            "2 with AU values missing or not numbers") in result.stderr
    assert "au-logreg on 115 faces" in result.stdout


def test_a_table_with_nothing_usable_is_one_line(tmp_path):
    table = synthetic_table(12)
    table["AU12_r"] = np.inf
    path = write_csv(table, tmp_path / "all_inf.csv")
    with pytest.raises(AUTableError, match=r"all_inf\.csv: no usable rows labelled .* \(left out 72 of 72 rows: "
                                           r"72 with AU values that are infinite or outside -1 to 10\)"):
        fit_au_model(au_table.read(path))
    one_line_error(cli("train-au", path, "--out", tmp_path / "m.json"), "all_inf.csv: no usable rows")
    assert not (tmp_path / "m.json").exists()


def test_bookkeeping_columns_with_odd_values_do_not_crash(tmp_path):
    """A face, success or mask number that is no whole number of 32 bits (inf, 1e400, -9e99, 2.7)
    is unknown, as a blank is (``au_table.whole_numbers``): -9e99 was clipped to a face -2**31 and
    2.7 cut to 2 (a success), numbers the file never said."""
    table = synthetic_table(12).astype({"face": object, "success": object})
    table.loc[0, "face"], table.loc[1, "success"], table.loc[2, "face"] = "inf", "1e400", "-9e99"
    table.loc[3, "face"], table.loc[4, "success"], table.loc[5, "success"] = "2.7", "2.7", "1e300"
    table["masked"] = ["x", "0.5"] + [0] * (len(table) - 2)
    read = au_table.read(write_csv(table, tmp_path / "odd.csv"))
    assert read["face"].tolist()[:6] == [0] * 6 and read["success"].tolist()[:6] == [1, 0, 1, 1, 0, 0]
    assert read["masked"].tolist()[:2] == [0, 0]
    assert au_table.select(read, SIX_EMOTIONS).left_out == {au_table.NO_FACE: 3}


def test_masked_faces_count_for_models_of_the_aus_they_show():
    from fer_core.masks import HIDDEN_AUS

    table = synthetic_table(20)
    masked = table.index % 2 == 0
    table["masked"] = masked.astype(int)
    for code in HIDDEN_AUS:
        table.loc[masked, f"{code}_r"] = np.nan
    full = au_table.select(table, SIX_EMOTIONS)
    assert full.left_out == {au_table.AU_HIDDEN: 60} and full.n == 60
    upper = [c for c in AU_COLUMNS if c.split("_")[0] not in HIDDEN_AUS]
    assert au_table.select(table, SIX_EMOTIONS, upper).n == 120
    scoring = au_table.select(table, SIX_EMOTIONS, scoring=True)
    assert scoring.n == 120 and scoring.measured.all()  # single unknown AUs: the model copes


def test_a_column_of_text_only_is_refused():
    text = ",".join(AU_COLUMNS) + "\n" + "\n".join(",".join(["x"] + ["1"] * 16) for _ in range(3))
    with pytest.raises(AUTableError, match="column AU01_r has non-numeric values such as 'x' and no numbers"):
        au_table.read(io.StringIO(text))


# -- 2. too few faces to train --------------------------------------------------------------------
def _one_angry() -> pd.DataFrame:
    table = synthetic_table(20)
    return table[(table["label"] != "angry") | (table.index == 0)].reset_index(drop=True)


@pytest.mark.parametrize("table, classes, message", [
    (_one_angry(), SIX_EMOTIONS, "training needs at least 10 usable faces of each emotion; angry 1;"),
    (synthetic_table(2), SIX_EMOTIONS, "angry 2, disgust 2, happy 2, neutral 2, sad 2, surprise 2"),
    (synthetic_table(20, classes=("happy",)), SIX_EMOTIONS, "no usable rows of angry, disgust, neutral, sad, surprise; "
                                                          "choose emotions present in the table (it has happy)"),
    (synthetic_table(20).assign(success=0), SIX_EMOTIONS, "no usable rows labelled angry"),
    (synthetic_table(20).iloc[:0], SIX_EMOTIONS, "no usable rows labelled angry, disgust, happy, neutral, sad, surprise "
                                                 "(it has no rows)"),
    (synthetic_table(20), ("happy",), "training needs at least two emotions; got happy"),
])
@pytest.mark.parametrize("kind", ["au-logreg", "au-mlp", "au-gam"])
def test_too_few_faces_say_what_training_needs(table, classes, message, kind):
    if kind == "au-gam":
        from fer_core.predictors.au_gam import fit_au_gam

        fit = lambda: fit_au_gam(table, classes, description="faces.csv")  # noqa: E731
    else:
        fit = lambda: fit_au_model(table, classes, kind=kind, description="faces.csv")  # noqa: E731
    with pytest.raises(AUTableError) as err:
        fit()
    assert str(err.value).startswith("faces.csv: ") and message in str(err.value) and "\n" not in str(err.value)


def test_a_held_out_share_too_small_for_every_emotion_is_named():
    with pytest.raises(AUTableError, match=r"faces\.csv: 1% of 60 usable faces holds out 1, too few for one face "
                                           r"of each of the 6 emotions"):
        fit_au_model(synthetic_table(10), holdout=0.01, description="faces.csv")
    with pytest.raises(FerError, match="held-out share 0.9 is out of range"):
        fit_au_model(synthetic_table(10), holdout=0.9)


def test_too_few_faces_from_the_cli(tmp_path):
    path = write_csv(_one_angry(), tmp_path / "one_angry.csv")
    one_line_error(cli("train-au", path, "--out", tmp_path / "m.json", "--kind", "mlp"),
                   "one_angry.csv: training needs at least 10 usable faces of each emotion; angry 1")


# -- 3. seeds ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", ["-1", "4294967296", "seven"])
def test_seed_out_of_range_is_an_argument_error(tmp_path, seed):
    one_line_error(cli("train-au", tmp_path / "t.csv", "--out", tmp_path / "m.json", "--seed", seed),
                   f"error: argument --seed: '{seed}' is not a whole number from 0 to 4294967295")


def test_seed_out_of_range_from_python():
    with pytest.raises(FerError, match="seed -1 is out of range"):
        fit_au_model(synthetic_table(10), seed=-1)


# -- 4. files that are not AU tables ----------------------------------------------------------------
def _good_bytes() -> bytes:
    return synthetic_table(12).to_csv(index=False).encode()


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


BAD_FILES = {
    "corrupt.csv.gz": (lambda: (lambda z: z[:30] + b"\x00garbage" * 40 + z[-8:])(_gzip(_good_bytes())),
                       "the gzip data is corrupt or cut short (zlib:"),
    "cut.csv.gz": (lambda: (lambda z: z[:len(z) // 2])(_gzip(_good_bytes())),
                   "the gzip data is corrupt or cut short (EOFError:"),
    "crc.csv.gz": (lambda: _gzip(_good_bytes())[:-8] + b"\x00" * 8, "the gzip data is corrupt or cut short (BadGzipFile:"),
    "empty.csv": (lambda: b"", "file is empty"),
    "blank.csv.gz": (lambda: _gzip(b"\n\n"), "file is empty"),
    "scores.csv": (lambda: b"name,score\na,1\n", "missing all 17 AU intensity columns"),
    "one_line.csv": (lambda: b"x" * (3 << 20), "longer than 1 MB; this is not an AU table"),
    "long_row.csv": (lambda: _good_bytes().split(b"\n")[0] + b"\n" + b"1," * (1 << 20), "a line is longer than 1 MB"),
    "bomb.csv.gz": (lambda: _gzip(b"AU01_r" + b" " * (64 << 20)), "longer than 1 MB"),
    "image.csv": (lambda: bytes(range(256)) * 64, "not a text CSV (it holds binary data)"),
    "quote.csv": (lambda: _good_bytes() + b'"happy/x.jpg,0,happy,1\n', "not a readable CSV"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_unreadable_files_are_one_line_naming_the_file(tmp_path, name):
    make, message = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(make())
    with pytest.raises(AUTableError) as err:
        au_table.read(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value) and "\n" not in str(err.value)


def _special_path(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.csv"
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "zero":
        path.symlink_to("/dev/zero")
    return path


@pytest.mark.parametrize("kind, message", [
    ("folder", "is a folder, not a regular file, so it is not read"),
    ("fifo", "is a named pipe (FIFO), not a regular file, so it is not read"),
    ("zero", "is a character device, not a regular file, so it is not read"),
    ("missing", "file not found"),
])
def test_only_regular_files_are_read(tmp_path, kind, message):
    path = _special_path(tmp_path, kind)
    with pytest.raises(AUTableError, match=re.escape(f"{kind}.csv: {message}; pick an AU table CSV")):
        au_table.read(path)


def test_a_file_over_the_size_limit_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "big.csv"
    path.write_bytes(_good_bytes())
    monkeypatch.setattr(au_table, "MAX_TABLE_BYTES", 1000)
    with pytest.raises(AUTableError, match=r"big\.csv: \d+ KB is larger than a table can be \(1 KB\); pick an AU table"):
        au_table.read(path)


def test_a_table_over_the_row_limit_is_refused(tmp_path, monkeypatch):
    path = write_csv(synthetic_table(20), tmp_path / "rows.csv")
    monkeypatch.setattr(au_table, "MAX_ROWS", 50)
    with pytest.raises(AUTableError, match=r"rows\.csv: more than 50 rows"):
        au_table.read(path)


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16", "utf-16-le", "utf-8-sig"])
def test_text_encodings_are_read_when_the_bytes_say_so(tmp_path, encoding):
    table = synthetic_table(12)
    table.loc[0, "file"] = "angry/élan.jpg"
    path = tmp_path / f"{encoding}.csv"
    path.write_bytes(table.to_csv(index=False).encode(encoding))
    read = au_table.read(path)
    assert read.loc[0, "file"] == "angry/élan.jpg" and len(read) == 72
    np.testing.assert_allclose(read[list(AU_COLUMNS)].to_numpy(), table[list(AU_COLUMNS)].to_numpy(), rtol=1e-6)


def test_a_cut_off_csv_keeps_its_whole_rows(tmp_path):
    data = _good_bytes()
    path = tmp_path / "cut.csv"
    path.write_bytes(data[: len(data) * 2 // 3])
    table = au_table.read(path)
    complete = data[: len(data) * 2 // 3].count(b"\n") - 1
    assert au_table.select(table).n in (complete, complete + 1)


@pytest.mark.parametrize("args", [
    ("train-au", "{bad}", "--out", "{tmp}/m.json"),
    ("evaluate", "--model", "{model}", "--au-table", "{bad}"),
    ("import-openface", "{bad}", "--out", "{tmp}/out.csv"),
])
def test_unreadable_tables_from_the_cli(tmp_path, model_file, args):
    bad = tmp_path / "corrupt.csv.gz"
    bad.write_bytes(BAD_FILES["corrupt.csv.gz"][0]())
    values = {"bad": bad, "tmp": tmp_path, "model": model_file}
    one_line_error(cli(*(a.format(**values) for a in args)), f"{bad}: the gzip data is corrupt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.csv.gz"]


@pytest.mark.parametrize("kind", ["folder", "fifo", "zero"])
def test_special_files_from_the_cli(tmp_path, model_file, kind):
    path = _special_path(tmp_path, kind)
    one_line_error(cli("evaluate", "--model", model_file, "--au-table", path, timeout=60), f"{path}: ")


def test_an_openface_folder_keeps_its_good_csvs(tmp_path):
    folder = tmp_path / "openface"
    folder.mkdir()
    header = "face, confidence, " + ", ".join(AU_COLUMNS)
    (folder / "happy001.csv").write_text(header + "\n0, 0.9, " + ", ".join(["1.5"] * 17) + "\n")
    (folder / "sad001.csv").write_bytes(b"\x1f\x8b broken gzip")
    (folder / "angry001.csv").write_text("name,score\na,1\n")
    out = tmp_path / "aus.csv"
    result = cli("import-openface", folder, "--out", out)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out).set_index("file")
    assert table.loc["happy001", "success"] == 1 and table.loc["happy001", "AU01_r"] == 1.5
    assert "gzip data is corrupt" in table.loc["sad001", "reason"]
    assert "missing all 17 AU intensity columns" in table.loc["angry001", "reason"]


# -- 5. columns in another order --------------------------------------------------------------------
def test_shuffled_columns_are_matched_by_name(tmp_path, model_file):
    table = synthetic_table(15, seed=3)
    original = write_csv(table, tmp_path / "original.csv")
    columns = list(table.columns)
    np.random.default_rng(0).shuffle(columns)
    assert columns != list(table.columns)
    shuffled = write_csv(table[columns], tmp_path / "shuffled.csv")
    a, b = au_table.read(original), au_table.read(shuffled)
    pd.testing.assert_frame_equal(a, b)
    predictor = AUPredictor(AUModel.load(model_file), name="m")
    rows = au_table.select(b).index
    np.testing.assert_array_equal(predictor.proba_from_aus(au_table.values(a, rows)),
                                  predictor.proba_from_aus(au_table.values(b, rows)))
    assert evaluate_au_table(predictor, a).to_dict() == evaluate_au_table(predictor, b).to_dict()
    outputs = [cli("evaluate", "--model", model_file, "--au-table", p, "--json") for p in (original, shuffled)]
    assert all(o.returncode == 0 for o in outputs), outputs[0].stderr
    assert json.loads(outputs[0].stdout)["accuracy"] > 0.9
    same = {"model": "", "provenance": None}  # the provenance names the file read, which differs
    assert json.loads(outputs[0].stdout) | same == json.loads(outputs[1].stdout) | same


# -- 6. memory -------------------------------------------------------------------------------------
def _bench():
    spec = importlib.util.spec_from_file_location("bad_input_memory", REPO / "bench" / "bad_input_memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_million_row_table_stays_small(tmp_path):
    """1,000,000 rows (bench/bad_input_memory.py measures 2,000,000): both commands well under 1 GB,
    the fit on a stated stratified sample, the bad rows counted."""
    bench = _bench()
    rows = 1_000_000
    table, model = bench.write_big_table(tmp_path / "big.csv.gz", rows), tmp_path / "m.json"
    code, _, peak_kib, stderr = bench.peak_run(["train-au", str(table), "--out", str(model), "--max-rows", "3000"],
                                               ENV, timeout=600)
    assert code == 0, stderr[-3000:]
    assert "left out 10 of 1,000,000 rows: 10 with AU values that are infinite or outside -1 to 10" in stderr
    assert "fitted on a stratified sample of 2,99" in stderr and "of 999,990 usable faces" in stderr
    info = json.loads(model.read_text())["info"]
    assert info["data"]["rows"] == 999_990 and 2990 <= info["data"]["fitted_rows"] <= 3000
    assert info["metrics"]["holdout"]["n"] == 249_998  # a quarter, rounded up
    assert peak_kib < 800 * 1024, f"train-au peaked at {peak_kib // 1024} MB"
    code, _, peak_kib, stderr = bench.peak_run(["evaluate", "--model", str(model), "--au-table", str(table)],
                                               ENV, timeout=600)
    assert code == 0, stderr[-3000:]
    assert "left out 10 rows: with AU values that are infinite" in stderr
    assert peak_kib < 800 * 1024, f"evaluate --au-table peaked at {peak_kib // 1024} MB"


def test_the_fit_cap_keeps_every_emotion():
    table = synthetic_table(400, seed=1)
    rare = table[table["label"] == "disgust"].index[12:]
    table = table.drop(rare).reset_index(drop=True)  # 12 disgust among 2,012 faces
    model = fit_au_model(table, max_rows=300)
    data = model.info["data"]
    assert data["sample"].startswith("a stratified sample of ") and "of 2,012 usable faces (about 300" in data["sample"]
    assert "at least 10 of each emotion" in data["sample"]  # "at most 300" while fitting more contradicted itself
    assert data["fitted_rows"] <= 310 and model.info["settings"]["max_rows"] == 300
    assert model.weights[0].shape == (6, 17)  # disgust kept although its share of 300 is under 2


def test_the_accuracy_interval_of_a_large_test_set_draws_no_resamples_x_n_array():
    correct = np.zeros(5_000_000)
    correct[::4] = 1
    tracemalloc.start()
    lo, hi = wilson_ci(correct)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert lo < 0.25 < hi and hi - lo < 0.002
    assert peak < 64 << 20, f"{peak >> 20} MB"


# -- 7. file names that are not UTF-8 ---------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_names_that_are_not_utf8_are_kept_escaped(tmp_path, suffix):
    name = os.fsdecode(b"happy/smile_\xff.jpg")
    table = au_table.failure_rows([(name, "happy"), ("happy/ok.jpg", "happy")], f"{name}: not a readable image",
                                  "mediapipe")
    path = au_table.write(table, tmp_path / f"aus{suffix}")
    back = au_table.read(path)
    assert back["file"].tolist() == ["happy/smile_\\xff.jpg", "happy/ok.jpg"]
    assert back.loc[0, "reason"] == "happy/smile_\\xff.jpg: not a readable image"


def test_openface_csvs_with_names_that_are_not_utf8(tmp_path):
    folder = tmp_path / "openface"
    folder.mkdir()
    header = "face, confidence, " + ", ".join(AU_COLUMNS)
    Path(os.fsdecode(bytes(folder) + b"/happy\xff.csv")).write_text(header + "\n0, 0.9, " + ", ".join(["2"] * 17) + "\n")
    (folder / "sad.csv").write_text(header + "\n0, 0.8, " + ", ".join(["1"] * 17) + "\n")
    out = tmp_path / "aus.csv.gz"
    result = cli("import-openface", folder, "--out", out)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    table = au_table.read(out)
    assert sorted(table["file"]) == ["happy\\xff", "sad"] and table["success"].tolist() == [1, 1]


# -- 8. outputs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("where, message", [
    ("{tmp}", "is a folder; give a file path inside it"),
    ("{tmp}/notes.txt/out.csv", "notes.txt is a file, not a folder"),
    ("/dev/full", "not a regular file (a device, pipe or socket)"),
])
def test_bad_output_paths_are_one_line(tmp_path, where, message):
    (tmp_path / "notes.txt").write_text("keep me")
    target = where.format(tmp=tmp_path)
    with pytest.raises(OutputFileError, match=re.escape(message)):
        au_table.write(synthetic_table(2), target)
    with pytest.raises(OutputFileError, match=re.escape(message)):
        _model().save(target)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


@pytest.mark.parametrize("where, message", [
    ("{tmp}", "is a folder; give a file path inside it"),
    ("{tmp}/notes.txt/m.json", "notes.txt is a file, not a folder"),
    ("/dev/full", "not a regular file"),
])
def test_bad_output_paths_from_the_cli_are_said_before_any_work(tmp_path, where, message):
    (tmp_path / "notes.txt").write_text("keep me")
    missing_table = tmp_path / "no_such_table.csv"  # never read: --out is checked first
    one_line_error(cli("train-au", missing_table, "--out", where.format(tmp=tmp_path)), message)
    one_line_error(cli("extract", tmp_path, "--out", where.format(tmp=tmp_path)), message)
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_missing_output_folders_are_created(tmp_path):
    path = au_table.write(synthetic_table(2), tmp_path / "new" / "deeper" / "aus.csv.gz")
    assert path.is_file() and len(au_table.read(path)) == 12
    assert (path.stat().st_mode & 0o777) == 0o666 & ~os.umask(os.umask(0o022))
    assert [p.name for p in path.parent.iterdir()] == ["aus.csv.gz"]
    path.chmod(0o600)  # a private file stays private when it is rewritten
    au_table.write(synthetic_table(3), path)
    assert (path.stat().st_mode & 0o777) == 0o600 and len(au_table.read(path)) == 18


class _FullDisk(io.FileIO):
    """A temporary file on a disk that fills up after 100 bytes (ENOSPC)."""

    room = 100

    def write(self, data) -> int:
        if len(data) > self.room:
            super().write(bytes(data[: self.room]))
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return super().write(data)


def _model() -> AUModel:
    return AUModel(kind="au-logreg", classes=("happy", "sad"), au_columns=AU_COLUMNS, mean=np.zeros(17),
                   scale=np.ones(17), weights=[np.zeros((2, 17))], biases=[np.zeros(2)], info={"big": "x" * 500})


def _writers(folder: Path):
    model = _model()
    gam = AUGam(classes=("happy", "sad"), au_columns=AU_COLUMNS, intercept=np.zeros(2), terms=[], info={"big": "x" * 500})
    entry = ModelEntry(name="m", kind="au-logreg", path="m.json", classes=("happy", "sad"), description="x" * 500)
    return {
        "aus.csv": lambda: au_table.write(synthetic_table(5), folder / "aus.csv"),
        "aus.csv.gz": lambda: au_table.write(synthetic_table(40), folder / "aus.csv.gz"),
        "logreg.json": lambda: model.save(folder / "logreg.json"),
        "gam.json": lambda: gam.save(folder / "gam.json"),
        "manifest.json": lambda: write_manifest([entry], folder),
        "cnn.meta.json": lambda: __import__("fer_core.predictors.cnn", fromlist=["_write_metadata"])._write_metadata(
            folder / "cnn.keras", {"big": "x" * 500}),
    }


@pytest.mark.parametrize("target", sorted(_writers(Path("."))))
def test_a_full_disk_leaves_nothing_half_written(tmp_path, monkeypatch, target):
    write = _writers(tmp_path)[target]
    (tmp_path / target).write_text("the previous version")
    monkeypatch.setattr(fileio, "_open_written", lambda fd: _FullDisk(fd, "wb"))
    with pytest.raises(OutputFileError, match=f"{target}: no space left on the disk; free some space or write "
                                              r"elsewhere \(it was not written\)"):
        write()
    assert (tmp_path / target).read_text() == "the previous version"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target]
    monkeypatch.undo()
    write()
    assert (tmp_path / target).read_bytes() != b"the previous version"


# -- 9. the dashboard -------------------------------------------------------------------------------
EXPLORER = str(REPO / "pages" / "1_Dataset_explorer.py")
AU_PAGE = str(REPO / "pages" / "2_AU_model.py")


def _upload_to_au_page(data: bytes, name: str) -> AppTest:
    at = run_app(AppTest.from_file(AU_PAGE), 90)
    at.radio(key="au_source").set_value("Import an OpenFace CSV")
    run_app(at, 90)
    at.radio(key="au_openface").set_value("Upload a CSV")
    run_app(at, 90)
    at.file_uploader(key="au_csv").set_value((name, data, "text/csv"))
    return run_app(at, 90)


def _upload_to_explorer(data: bytes, name: str) -> AppTest:
    at = run_app(AppTest.from_file(EXPLORER), 90)
    at.radio(key="explorer_source").set_value("AU table (CSV)")
    run_app(at, 90)
    at.selectbox(key="explorer_table").set_value("Upload a CSV…")
    run_app(at, 90)
    at.file_uploader(key="explorer_csv").set_value((name, data, "text/csv"))
    return run_app(at, 90)


def test_au_page_shows_the_cli_line_for_too_few_faces(models_dir):
    at = _upload_to_au_page(_one_angry().to_csv(index=False).encode(), "one_angry.csv")
    assert "angry" in at.multiselect(key="au_classes").value
    at.button(key="au_train_button").click()
    run_app(at, 90)
    assert any("one_angry.csv: training needs at least 10 usable faces of each emotion; angry 1" in e
               for e in texts(at.error))
    assert "au_train" not in at.session_state


def test_au_page_shows_the_cli_line_when_nothing_is_usable(models_dir):
    table = synthetic_table(12)
    table["AU12_r"] = 1e308
    at = _upload_to_au_page(table.to_csv(index=False).encode(), "all_bad.csv")
    assert any("0 usable faces" in c and "72 with AU values that are infinite" in c for c in texts(at.caption))
    at.button(key="au_train_button").click()
    run_app(at, 90)
    assert any(e.startswith("all_bad.csv: no usable rows labelled") for e in texts(at.error))


def test_au_page_trains_around_spoilt_rows_and_says_so(models_dir):
    at = _upload_to_au_page(with_bad_values().to_csv(index=False).encode(), "spoilt.csv")
    at.button(key="au_train_button").click()
    run_app(at, 120)
    assert at.session_state["au_train"]["model"].info["data"]["rows"] == 115
    assert any("Left out 5 of 120 rows: 3 with AU values that are infinite" in c for c in texts(at.caption))
    assert not at.error


def test_explorer_shows_one_line_for_unreadable_and_unusable_tables(models_dir):
    at = _upload_to_explorer(BAD_FILES["corrupt.csv.gz"][0](), "corrupt.csv.gz")
    assert any(e.startswith("corrupt.csv.gz: the gzip data is corrupt or cut short") for e in texts(at.error))
    table = synthetic_table(12)
    table["AU04_r"] = -np.inf
    at = _upload_to_explorer(_gzip(table.to_csv(index=False).encode()), "minus_inf.csv.gz")
    assert any(e.startswith("minus_inf.csv.gz: no usable rows (left out 72 of 72 rows: 72 with AU values that "
                            "are infinite") for e in texts(at.error))


def test_explorer_plots_the_good_rows_of_a_spoilt_table(models_dir):
    at = _upload_to_explorer(with_bad_values().to_csv(index=False).encode("utf-16"), "spoilt_utf16.csv")
    assert not at.error
    assert any("115 faces with measured AUs; left out 5 of 120 rows" in c for c in texts(at.caption))
    assert len(at.get("plotly_chart")) == 3


def test_rows_without_a_file_name_are_each_a_face_of_their_own(tmp_path):
    """A table whose file column is blank (or missing values) kept one row of all: every row was
    taken for a later face of one nameless image."""
    table = synthetic_table(12)
    table["file"] = ""
    table.loc[::2, "file"] = np.nan
    path = write_csv(table, tmp_path / "nameless.csv")
    assert au_table.select(au_table.read(path)).n == len(table)
    assert len(fit_au_model(au_table.read(path)).classes) == 6


def test_one_bad_byte_late_in_a_utf8_table_keeps_every_other_name(tmp_path):
    """A byte that is not UTF-8 past the first megabyte used to make the whole file read again as
    Latin-1, garbling every name; now only that byte is kept escaped."""
    table = synthetic_table(2000)
    table["file"] = [f"행복_{i}.jpg" for i in range(len(table))]
    data = table.to_csv(index=False).encode("utf-8")
    cut = data.rindex("복".encode())  # the last row's second syllable
    path = tmp_path / "late.csv"
    path.write_bytes(data[:cut] + b"\xff" + data[cut + 1:])
    read = au_table.read(path)
    assert read["file"].iloc[0] == "행복_0.jpg" and read["file"].iloc[-2] == f"행복_{len(table) - 2}.jpg"
    assert read["file"].iloc[-1] == "행\\xff\\xb3\\xb5_11999.jpg" and len(read) == len(table)


def test_the_common_table_and_training_errors_read_in_korean(tmp_path):
    from fer_core import i18n

    errors = []
    for call in (lambda: au_table.read(write_csv(pd.DataFrame({"a": [1], "b": [2]}), tmp_path / "noaus.csv")),
                 lambda: fit_au_model(synthetic_table(3)),
                 lambda: fit_au_model(synthetic_table(12), classes=("happy",))):
        with pytest.raises(FerError) as info:
            call()
        errors.append(str(info.value))
    with i18n.using_language("ko"):
        korean = [i18n.message(e) for e in errors]
    assert all(k != e for k, e in zip(korean, errors))
    assert not any(w in k for k in korean for w in ("missing", "training needs", "use OpenFace"))


def test_explorer_counts_and_plots_faces_measured_under_a_mask(models_dir):
    """A table written by extract --mask (hidden AUs empty) said no face was measured and plotted
    nothing; its faces are found and the AUs a mask leaves are plotted."""
    from fer_core.masks import HIDDEN_AUS

    table = synthetic_table(12)
    table["masked"] = 1
    for code in HIDDEN_AUS:
        table[f"{code}_r"] = np.nan
    at = _upload_to_explorer(table.to_csv(index=False).encode(), "masked.csv")
    assert not at.error, texts(at.error)
    assert not any("no measured face" in c for c in texts(at.caption))
    assert len(at.get("plotly_chart")) == 3
    assert set(at.multiselect(key="explorer_aus").value) == {c for c in AU_COLUMNS if c[:4] not in HIDDEN_AUS}


def test_au_page_says_when_its_model_was_trained_on_another_table_of_the_same_name(models_dir):
    at = _upload_to_au_page(synthetic_table(12).to_csv(index=False).encode(), "aus.csv")
    at.button(key="au_train_button").click()
    run_app(at, 120)
    assert "au_train" in at.session_state and not any("not on the table chosen" in s for s in texts(at.info))
    at.file_uploader(key="au_csv").set_value(("aus.csv", synthetic_table(12, seed=1).to_csv(index=False).encode(),
                                              "text/csv"))
    run_app(at, 90)
    assert any("trained on aus.csv, not on the table chosen above" in s for s in texts(at.info))


def test_a_latin1_table_whose_first_megabyte_is_ascii_keeps_its_names(tmp_path):
    """The other side of a late bad byte: a Latin-1 file (one byte for é) is read as Latin-1."""
    table = synthetic_table(2000)
    table.loc[len(table) - 1, "file"] = "happy/café.jpg"
    path = tmp_path / "latin.csv"
    path.write_bytes(table.to_csv(index=False).encode("latin-1"))
    assert au_table.read(path)["file"].iloc[-1] == "happy/café.jpg"


def test_a_file_name_with_spaces_at_its_ends_reads_back_as_written(tmp_path):
    """A CSV this workbench writes keeps " x.jpg" (read with OpenFace 2.0's ", " rule it became
    "x.jpg", and a Ray resume measured that file again on every run); OpenFace 2.0's own ", "
    separated CSVs still read."""
    from fer_core import au_table

    table = synthetic_table(2)
    table.loc[0, "file"] = " leading space.jpg"
    table.loc[1, "file"] = "trailing space.jpg "
    for suffix in (".csv", ".csv.gz"):
        back = au_table.read(au_table.write(table, tmp_path / f"t{suffix}"))
        assert back["file"].tolist()[:2] == [" leading space.jpg", "trailing space.jpg "]
    openface = tmp_path / "of.csv"
    aus = ", ".join(au_table.AU_COLUMNS)
    openface.write_text(f"face, confidence, {aus}\n0, 0.98, {', '.join(['1.5'] * 17)}\n")
    assert au_table.read(openface)["AU01_r"].tolist() == [1.5]


def _with_cells(table: pd.DataFrame, cells: dict[tuple[int, str], str]) -> pd.DataFrame:
    """``table`` as text with some cells replaced, as a hand-edited or damaged CSV has them."""
    text = table.astype(str)
    for (row, column), value in cells.items():
        text.loc[row, column] = value
    return text


def test_integers_too_large_for_a_float_are_infinite_not_a_crash(tmp_path):
    """A column of whole numbers holding one of 400 digits is parsed as Python ints, which
    ``pd.to_numeric`` refused with OverflowError (a traceback, not a line): it is infinite, as the
    same digits with a decimal point are, so its row is left out as invalid; in ``face`` it is no
    number (0), and as a label no study code."""
    huge = "9" * 400
    table = synthetic_table(12).assign(face=0)
    table["AU07_r"] = table["AU07_r"].round().astype(int)  # whole numbers: read as integers
    path = tmp_path / "huge.csv"
    _with_cells(table, {(0, "AU07_r"): huge, (1, "AU07_r"): "-" + huge, (2, "face"): huge}).to_csv(path, index=False)
    read = au_table.read(path)
    assert read["AU07_r"].tolist()[:2] == [np.inf, -np.inf] and read["face"].tolist()[:3] == [0, 0, 0]
    assert au_table.select(read).left_out == {AU_INVALID: 2}
    _with_cells(table, {(3, "label"): huge}).to_csv(path, index=False)
    with pytest.raises(AUTableError, match=r"huge\.csv: unknown labels '9999"):
        au_table.read(path)


def test_an_unknown_label_of_100000_characters_is_shown_cut(tmp_path):
    """Each unknown label was repeated whole: a 100,000-character cell made a 100 KB "one line"
    error. Each is cut to ``SHOWN_LABEL_CHARS``, and the message still names what to do."""
    table = synthetic_table(2)
    table.loc[0, "label"] = "x" * 100_000
    table.loc[1, "label"] = "y" * 100_000
    path = write_csv(table, tmp_path / "long.csv")
    with pytest.raises(AUTableError) as caught:
        au_table.read(path)
    message = str(caught.value)
    assert len(message) < 400 and "\n" not in message, message[:500]
    assert "'" + "x" * (au_table.SHOWN_LABEL_CHARS - 1) + "…'" in message and "use emotion names" in message
    with pytest.raises(AUTableError, match=r"unknown labels 'surprised\?!' in column 'label'"):
        au_table.parse_labels(pd.Series(["surprised?!"]), "t.csv", "label")  # a short one stays whole


def test_an_infinite_face_or_success_in_openface_output_is_unknown_not_a_crash(tmp_path):
    """OpenFace's bookkeeping columns (face, success, frame) are cast to whole numbers; 'inf'
    there raised pandas' IntCastingNaNError. An infinite bookkeeping number is unknown, as a blank is."""
    aus = ", ".join(AU_COLUMNS)
    path = tmp_path / "happy001.csv"
    path.write_text(f"face, success, confidence, {aus}\ninf, 1, 0.98, {', '.join(['1.5'] * 17)}\n"
                    f"1, -inf, 0.9, {', '.join(['0.5'] * 17)}\n")
    read = au_table.read(path)
    assert read["face"].tolist() == [0, 1] and read["success"].tolist() == [1, 0]


def test_a_header_with_a_lone_carriage_return_is_one_line(tmp_path):
    """The header line goes through ``csv.reader``, whose own ``csv.Error`` escaped."""
    path = tmp_path / "cr.csv"
    path.write_bytes(b"file,AU01_r\rx," + ",".join(AU_COLUMNS[1:]).encode() + b"\na,1\n")
    with pytest.raises(AUTableError, match=r"cr\.csv: not a readable CSV"):
        au_table.read(path)


def test_a_parquet_file_with_damaged_pandas_metadata_is_one_line(tmp_path):
    """pyarrow reads the pandas metadata Parquet keeps beside the data; a damaged entry raised a
    bare KeyError from deep inside ``to_pandas``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = pa.Table.from_pandas(synthetic_table(2))
    meta = json.loads(arrow.schema.metadata[b"pandas"])
    for column in meta["columns"]:
        column.pop("numpy_type")
    path = tmp_path / "damaged.parquet"
    pq.write_table(arrow.replace_schema_metadata({b"pandas": json.dumps(meta).encode()}), path)
    with pytest.raises(AUTableError, match=r"damaged\.parquet: not a readable Parquet file"):
        au_table.read(path)


def test_a_capped_fit_says_its_saved_model_was_refitted_on_the_sample_and_records_what_fitted_it(monkeypatch):
    """A steward's review: with --max-rows the manifest said the saved model "was then refitted on every
    row" while it was refitted on a sample; the page's models recorded no code or library versions;
    and the same fit twice was two files (the time stamp alone), so an archived checksum never matched."""
    from fer_core.predictors.au_models import fit_au, held_out_description

    table = synthetic_table(400, seed=1)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    first, second = (fit_au(table, max_rows=300) for _ in range(2))
    sample = first.info["data"]["sample"]
    described = held_out_description("t.csv", 0.25, 0, sample=sample)
    assert described.endswith(f"; the model saved was then refitted on {sample}") and "every row" not in described
    assert held_out_description("t.csv", 0.25, 0).endswith("; the model saved was then refitted on every row")
    assert first.info["trained"] == "1970-01-01T00:00:00Z" and first.to_bytes() == second.to_bytes()
    fitted = first.info["fitted_by"]  # fit_au's, whichever surface fitted it (the AU model page too)
    assert fitted["workbench"] and fitted["code_sha256"] and "scikit-learn" in fitted["versions"]
