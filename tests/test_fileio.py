"""Output paths are checked before any work: a folder the user cannot write to is said at once
(not after all the measuring or fitting), and a table's name must end with a format
``write_frame`` writes, from the one list in ``fileio``."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from pathlib import Path

import pandas as pd
import pytest

from fer_core import au_table, fileio
from fer_core.cli import main
from fer_core.errors import OutputFileError

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _deny_writing(monkeypatch, folder: Path) -> None:
    """``os.access`` says ``folder`` cannot be written, as it does for a user without the right
    (root may write anywhere, so a test run as root cannot meet a read-only folder for real)."""
    real = os.access

    def access(path, mode, *args, **kwargs):
        if Path(path) == folder and mode & os.W_OK:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(fileio.os, "access", access)


def test_a_folder_that_cannot_be_written_is_refused_by_output_path(tmp_path, monkeypatch):
    folder = tmp_path / "shared"
    folder.mkdir()
    _deny_writing(monkeypatch, folder)
    with pytest.raises(OutputFileError, match=r"au\.csv: permission denied; write to a folder you can write to"):
        fileio.output_path(folder / "au.csv")
    with pytest.raises(OutputFileError, match="permission denied"):
        fileio.atomic_write_text(folder / "m.json", "{}")  # every writer goes through output_path
    assert list(folder.iterdir()) == []
    fileio.output_path(tmp_path / "au.csv")  # the folder beside it is fine


def test_a_read_only_file_system_is_said_as_such(tmp_path, monkeypatch):
    _deny_writing(monkeypatch, tmp_path)

    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(fileio.os, "statvfs", lambda path: ReadOnly())
    with pytest.raises(OutputFileError, match=r"au\.csv: the file system is read-only; write elsewhere"):
        fileio.output_path(tmp_path / "au.csv")


@pytest.mark.parametrize("command", ["extract", "train-au"])
def test_extract_and_train_au_say_a_read_only_out_folder_before_any_work(capsys, tmp_path, monkeypatch, command):
    """Seen as a non-root user: extract measured every image and train-au fitted the model, then
    failed to write. The input here does not exist: the out folder is said first."""
    folder = tmp_path / "out"
    folder.mkdir()
    _deny_writing(monkeypatch, folder)
    out = folder / ("au.csv" if command == "extract" else "m.json")
    code = main([command, str(tmp_path / "no_such_input"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "permission denied" in err and err.count("\n") == 1, err
    assert list(folder.iterdir()) == []


@pytest.mark.skipif(AS_ROOT, reason="root may write into a read-only folder; the monkeypatched tests above "
                                    "cover this when run as root")
def test_a_really_read_only_folder_is_refused(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputFileError, match="permission denied"):
            fileio.output_path(folder / "au.csv")
    finally:
        folder.chmod(0o755)


_MAGIC = {"gzip": b"\x1f\x8b", "bz2": b"BZh", "xz": b"\xfd7zXZ\x00", "parquet": b"PAR1"}


def test_every_table_ending_is_written_in_its_format_and_reads_back(tmp_path):
    """``TABLE_ENDINGS`` and ``write_frame`` are one list: each ending the CLI accepts is written
    as the format it names."""
    table = au_table.failure_rows([("a.jpg", "happy"), ("b.jpg", None)], "no face found", "mediapipe")
    assert set(fileio.TABLE_ENDINGS) == {".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".parquet"}
    for ending in fileio.TABLE_ENDINGS:
        path = fileio.write_frame(table, tmp_path / f"AU{ending.upper()}")
        fmt = fileio.TABLE_FORMATS[ending]
        head = path.read_bytes()[:6]
        assert head.startswith(_MAGIC[fmt]) if fmt in _MAGIC else head.startswith(b"file,"), (ending, head)
        assert au_table.read(path)["file"].tolist() == ["a.jpg", "b.jpg"]
    assert gzip.decompress((tmp_path / "AU.CSV.GZ").read_bytes()) == bz2.decompress(
        (tmp_path / "AU.CSV.BZ2").read_bytes()) == lzma.decompress((tmp_path / "AU.CSV.XZ").read_bytes())


@pytest.mark.parametrize("name", ["au.gz", "au.xlsx", "au.txt", "au"])
def test_write_frame_refuses_an_ending_that_names_no_format_it_writes(tmp_path, name):
    """au.gz was written as gzip CSV and au.xlsx as plain CSV, while the CLI refused both: the
    check and the writer now read the same list."""
    with pytest.raises(OutputFileError, match=rf"{name}: a table's name must end with \.csv, \.csv\.gz"):
        fileio.write_frame(pd.DataFrame({"x": [1]}), tmp_path / name)
    with pytest.raises(OutputFileError, match=rf"{name}: --csv must end with \.csv"):
        fileio.table_output_path(tmp_path / name, "--csv")
    assert list(tmp_path.iterdir()) == []


# -- temporary files left by killed writes ------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]
_KILLED_WRITE = """
import os, sys
from fer_core import fileio

with fileio.atomic_output(sys.argv[1]) as fh:
    fh.write(b'{"half": ')
    fh.flush()
    os._exit(137)  # as under kill -9: nothing removes the temporary file
"""


def _killed_write(target: Path, hours_ago: float = 2) -> Path:
    """The temporary file of a write of ``target`` killed half way, last changed ``hours_ago``."""
    import subprocess
    import sys

    before = set(target.parent.iterdir())
    died = subprocess.run([sys.executable, "-c", _KILLED_WRITE, str(target)], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert died.returncode == 137, died.stderr[-2000:]
    (part,) = [p for p in set(target.parent.iterdir()) - before if p.name.startswith(f".{target.name}.")]
    then = os.stat(part).st_mtime - hours_ago * 3600
    os.utime(part, (then, then))
    return part


def test_a_save_removes_what_killed_saves_of_that_model_left_and_nothing_else(models_dir, capsys):
    """Before: every kill mid-save left a hidden .x.json.*.part (a model's size each) in models/
    for good; nothing ever removed them."""
    out = models_dir / "x.json"
    left = [_killed_write(out), _killed_write(models_dir / "manifest.json")]
    recent = _killed_write(out, hours_ago=0)  # perhaps a writer that is still at it: not touched
    other = _killed_write(models_dir / "other.json")  # another model's: its own save tidies it
    table = REPO / "data" / "fer2013_val_au.csv.gz"
    assert main(["train-au", str(table), "--out", str(out), "--name", "x-model"]) == 0
    assert not any(p.exists() for p in left)
    assert recent.exists() and other.exists()
    assert "Traceback" not in capsys.readouterr().err


def test_a_part_file_a_live_writer_holds_is_never_removed(tmp_path):
    """Its writer is at it (however long since it last wrote): the lock it holds keeps it."""
    target = tmp_path / "m.json"
    with fileio.atomic_output(target) as fh:
        fh.write(b'{"a": 1}')
        fh.flush()
        (part,) = tmp_path.iterdir()
        os.utime(part, (0, 0))  # unchanged for decades, yet held
        assert fileio.remove_stale_parts(target, older_than=0) == [] and part.exists()
    assert target.read_text() == '{"a": 1}' and list(tmp_path.iterdir()) == [target]


def test_only_the_targets_own_part_files_are_removed(tmp_path):
    """A name that merely starts like the target's (x.json.bak's writes, a user's .part file) stays."""
    target = tmp_path / "x.json"
    own = _killed_write(target)
    look_alikes = [tmp_path / ".x.json.bak.abcd1234.part", tmp_path / ".x.json.notes.part",
                   tmp_path / "x.json.abcd1234.part"]
    for p in look_alikes:
        p.write_bytes(b"someone else's")
        os.utime(p, (0, 0))
    assert fileio.remove_stale_parts(target) == [own] and not own.exists()
    assert all(p.exists() for p in look_alikes)


def test_a_table_written_again_removes_what_a_killed_write_of_it_left(tmp_path, capsys):
    """extract --out killed with SIGKILL while writing left its hidden .part file, and later runs into
    the same --out kept it (a reliability review): for a large table, gigabytes nobody sees."""
    import pandas as pd

    target = tmp_path / "au.csv"
    left = _killed_write(target)
    fileio.write_frame(pd.DataFrame({"file": ["a.jpg"]}), target)
    assert not left.exists() and list(tmp_path.iterdir()) == [target]
