"""OpenFace 2 import and Docker backend: real CSV parsing, a fake Docker client at the SDK boundary."""

from __future__ import annotations

import importlib.util
import io
import math
import time
from pathlib import Path

import docker
import numpy as np
import pandas as pd
import pytest
import requests
from PIL import Image

from fer_core import au_table
from fer_core.au_table import AU_COLUMNS, TABLE_COLUMNS
from fer_core.au_table import read as read_au_table
from fer_core.config import openface_study_table
from fer_core.errors import AUTableError, DockerUnavailable
from fer_core.images import LabeledImage, list_images
from fer_core.measure.openface_csv import NO_FACE, import_openface_dir, read_openface_csv
from fer_core.measure.openface_docker import BIN_DIR, OpenFaceDocker

FIXTURES = Path(__file__).parent / "fixtures" / "openface"
REPO = Path(__file__).resolve().parents[1]
needs_study = pytest.mark.skipif(not openface_study_table().is_file(), reason="../shared datasets not present")


def assert_schema(table: pd.DataFrame) -> None:
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert set(table["source"]) <= {"openface"}
    failed = table["success"] == 0
    assert table.loc[failed, list(AU_COLUMNS)].isna().all().all()
    assert (table.loc[failed, "reason"] != "").all()
    assert (table.loc[~failed, "reason"] == "").all()


# -- per-image CSVs ----------------------------------------------------------------------------
def test_face_landmark_img_two_faces_keeps_only_intensities():
    table = read_openface_csv(FIXTURES / "happy001.csv", name="photos/happy001.jpg", label="Happiness")
    assert_schema(table)
    assert len(table) == 2
    assert table["face"].tolist() == [0, 1]
    assert table["file"].tolist() == ["photos/happy001.jpg"] * 2
    assert table["label"].tolist() == ["happy", "happy"]
    assert table["success"].tolist() == [1, 1]
    assert table["confidence"].tolist() == pytest.approx([0.975, 0.93])
    assert table.loc[0, "AU06_r"] == pytest.approx(2.87)
    assert table.loc[0, "AU12_r"] == pytest.approx(3.41)
    assert table.loc[1, "AU45_r"] == pytest.approx(0.22)
    assert not any(c.endswith("_c") for c in table.columns)


def test_file_defaults_to_csv_stem_and_extra_columns_are_ignored():
    table = read_openface_csv(FIXTURES / "angry002.csv")
    assert_schema(table)
    assert table["file"].tolist() == ["angry002"]
    assert table["label"].tolist() == [None]
    assert table.loc[0, "AU04_r"] == pytest.approx(2.94)
    assert table.loc[0, "AU45_r"] == pytest.approx(0.04)


def test_header_only_csv_is_a_no_face_row():
    table = read_openface_csv(FIXTURES / "sad003.csv", name="sad003.jpg", label="sad")
    assert_schema(table)
    assert len(table) == 1
    assert table.loc[0, "success"] == 0
    assert table.loc[0, "reason"] == NO_FACE
    assert table.loc[0, "label"] == "sad"


def test_a_feature_extraction_videos_frames_are_one_video():
    """OpenFace names a FeatureExtraction frame clip#12; the per-video score, train-au's split and
    the AU page's chart took each frame for a video of its own (a 50-entry video picker, a
    point each). ``video_names`` reads them as the video they are; a photo is none."""
    from fer_core import au_table

    table = au_table.concat([read_openface_csv(FIXTURES / "clip.csv", name="happy/clip", label="happy"),
                             read_openface_csv(FIXTURES / "angry002.csv", name="angry002.jpg", label="angry")])
    assert au_table.video_names(table).tolist()[:3] == ["happy/clip"] * 3 and pd.isna(au_table.video_names(table)[3])


def test_feature_extraction_failed_frame_has_nan_aus():
    table = read_openface_csv(FIXTURES / "clip.csv")
    assert_schema(table)
    assert table["file"].tolist() == ["clip#1", "clip#2", "clip#3"]
    assert table["time_s"].tolist() == pytest.approx([0.0, 0.033, 0.067])  # its timestamp column
    assert table["success"].tolist() == [1, 0, 1]
    assert table.loc[1, "reason"] == NO_FACE
    assert np.isnan(table.loc[1, "AU25_r"])  # OpenFace wrote 0.00: not a measurement
    assert table.loc[2, "AU25_r"] == pytest.approx(2.84)


def test_image_csv_with_success_column_and_buffer_input():
    header = "face, confidence, success, " + ", ".join(AU_COLUMNS)
    text = "\n".join([header, "0, 0.97, 1, " + ", ".join(["1.5"] * 17), "1, 0.2, 0, " + ", ".join(["0"] * 17)])
    table = read_openface_csv(io.StringIO(text), name="group.png")
    assert_schema(table)
    assert table["success"].tolist() == [1, 0]
    assert table.loc[0, "AU01_r"] == 1.5 and math.isnan(table.loc[1, "AU01_r"])


def test_csv_without_au_columns_names_the_file():
    with pytest.raises(AUTableError) as err:
        read_au_table(FIXTURES / "no_aus.csv")
    message = str(err.value)
    assert "no_aus.csv" in message and "AU01_r" in message and "AU45_r" in message
    assert "\n" not in message


def test_missing_some_au_columns_are_listed(tmp_path):
    path = tmp_path / "partial.csv"
    cols = [c for c in AU_COLUMNS if c not in ("AU09_r", "AU45_r")]
    path.write_text(",".join(cols + ["emotion"]) + "\n" + ",".join(["1"] * len(cols) + ["2"]) + "\n")
    with pytest.raises(AUTableError, match=r"partial\.csv: missing 2 AU columns \(AU09_r, AU45_r\)"):
        read_au_table(path)


def test_empty_and_non_numeric_csvs(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(AUTableError, match="empty.csv: file is empty"):
        read_au_table(empty)
    bad = tmp_path / "bad.csv"
    bad.write_text(",".join(AU_COLUMNS) + "\n" + ",".join(["x"] + ["1"] * 16) + "\n")
    with pytest.raises(AUTableError, match="bad.csv: column AU01_r has non-numeric"):
        read_au_table(bad)


# -- merged and project tables -----------------------------------------------------------------
def test_merged_table_with_names():
    table = read_au_table(FIXTURES / "merged_names.csv")
    assert_schema(table)
    assert table["file"].tolist() == ["merged_names.csv#1", "merged_names.csv#2", "merged_names.csv#3"]
    assert table["label"].tolist() == ["happy", "angry", "surprise"]
    assert table["success"].tolist() == [1, 1, 1]
    assert table.loc[2, "AU26_r"] == pytest.approx(2.9)


def test_unknown_labels_are_named():
    with pytest.raises(AUTableError) as err:
        read_au_table(FIXTURES / "merged_unknown.csv")
    message = str(err.value)
    assert "merged_unknown.csv" in message and "6" in message and "'bored'" in message
    assert "'emotion'" in message and "\n" not in message


def test_read_au_table_detects_openface_output():
    table = read_au_table(FIXTURES / "happy001.csv")
    assert table["file"].tolist() == ["happy001", "happy001"]
    assert table["face"].tolist() == [0, 1]


def test_project_schema_round_trip(tmp_path):
    table = read_openface_csv(FIXTURES / "happy001.csv", name="a.jpg", label="happy")
    table = pd.concat([table, read_openface_csv(FIXTURES / "sad003.csv", name="b.jpg", label="sad")],
                      ignore_index=True)
    path = tmp_path / "table.csv"
    table.to_csv(path, index=False)
    back = read_au_table(path)
    assert list(back.columns) == list(TABLE_COLUMNS)
    assert back["file"].tolist() == ["a.jpg", "a.jpg", "b.jpg"]
    assert back["label"].tolist() == ["happy", "happy", "sad"]
    assert back["success"].tolist() == [1, 1, 0]
    assert back["reason"].tolist() == ["", "", NO_FACE]
    np.testing.assert_allclose(back[list(AU_COLUMNS)].to_numpy(), table[list(AU_COLUMNS)].to_numpy())


@needs_study
def test_study_table():
    table = read_au_table(openface_study_table())
    assert_schema(table)
    assert len(table) == 4473
    assert table["label"].value_counts().to_dict() == {
        "angry": 712, "disgust": 219, "happy": 764, "neutral": 700, "sad": 1038, "surprise": 1040}
    assert table["file"].iloc[0] == "emotion.csv#1" and table["file"].iloc[-1] == "emotion.csv#4473"
    assert (table["success"] == 1).all()
    assert table[list(AU_COLUMNS)].notna().all().all()
    assert table[list(AU_COLUMNS)].to_numpy().min() >= 0 and table[list(AU_COLUMNS)].to_numpy().max() <= 5
    assert table.loc[0, "AU01_r"] == pytest.approx(3.09)
    assert int(table.duplicated(subset=list(AU_COLUMNS) + ["label"]).sum()) == 19


# -- an OpenFace -out_dir ----------------------------------------------------------------------
def test_import_openface_dir_by_folder_and_prefix(tmp_path):
    out = tmp_path / "processed"
    (out / "angry").mkdir(parents=True)
    (out / "angry" / "img7.csv").write_bytes((FIXTURES / "angry002.csv").read_bytes())
    (out / "happy001.csv").write_bytes((FIXTURES / "happy001.csv").read_bytes())
    (out / "sad003.csv").write_bytes((FIXTURES / "sad003.csv").read_bytes())
    (out / "broken.csv").write_text("face, confidence\n0, 0.9\n")
    (out / "happy001_of_details.txt").write_text("Input:/input/happy001.jpg\n")
    (out / "happy001.hog").write_bytes(b"\x00\x01")
    (out / "happy001_aligned").mkdir()
    (out / "happy001_aligned" / "face_det_000000.csv").write_text("not,a,table\n")
    table = import_openface_dir(out)
    assert list(table.columns) == list(TABLE_COLUMNS)
    rows = {f: g for f, g in table.groupby("file")}
    assert set(rows) == {"angry/img7", "happy001", "sad003", "broken"}
    assert rows["angry/img7"]["label"].tolist() == ["angry"]
    assert rows["happy001"]["label"].tolist() == ["happy", "happy"]
    assert rows["sad003"]["reason"].tolist() == [NO_FACE]
    assert rows["broken"]["success"].tolist() == [0]
    assert "broken.csv" in rows["broken"]["reason"].iloc[0] and "AU01_r" in rows["broken"]["reason"].iloc[0]


def test_import_openface_dir_maps_csvs_to_images(tmp_path):
    images = tmp_path / "input"
    for emotion, stem in (("happy", "happy001"), ("angry", "angry002"), ("sad", "lost")):
        (images / emotion).mkdir(parents=True, exist_ok=True)
        Image.new("L", (48, 48), 128).save(images / emotion / f"{stem}.jpg")
    out = tmp_path / "processed"
    out.mkdir()
    for name in ("happy001.csv", "angry002.csv"):
        (out / name).write_bytes((FIXTURES / name).read_bytes())
    table = import_openface_dir(out, labels_from=images)
    by_file = {Path(f).name: g for f, g in table.groupby("file")}
    assert set(by_file) == {"happy001.jpg", "angry002.jpg", "lost.jpg"}
    assert by_file["happy001.jpg"]["file"].iloc[0] == "happy/happy001.jpg"  # as extract names it: they join
    assert by_file["angry002.jpg"]["label"].tolist() == ["angry"]
    assert by_file["lost.jpg"]["success"].tolist() == [0]
    assert by_file["lost.jpg"]["label"].tolist() == ["sad"]


# -- Docker: command, mounts, status -----------------------------------------------------------
def test_build_command_and_mounts(tmp_path):
    assert OpenFaceDocker.build_command(aus_only=False) == [
        "./FaceLandmarkImg", "-fdir", "input", "-out_dir", "processed"]
    assert OpenFaceDocker.build_command() == [
        "./FaceLandmarkImg", "-fdir", "input", "-out_dir", "processed", "-aus"]
    mounts = OpenFaceDocker.mounts(tmp_path / "in", tmp_path / "out")
    assert mounts == {
        str((tmp_path / "in").resolve()): {"bind": f"{BIN_DIR}/input", "mode": "ro"},
        str((tmp_path / "out").resolve()): {"bind": f"{BIN_DIR}/processed", "mode": "rw"},
    }
    assert BIN_DIR == "/home/openface-build/build/bin"


def test_real_sdk_without_engine_reports_how_to_start_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    backend = OpenFaceDocker(work_dir=tmp_path)
    ok, message = backend.status()
    assert not ok
    assert message == (f"Docker engine not reachable at unix://{tmp_path}/no-docker.sock: "
                       "start Docker Desktop, or run: sudo systemctl start docker")
    with pytest.raises(DockerUnavailable):
        backend.extract([LabeledImage(tmp_path / "x.jpg", None)])


# -- Docker: a fake client at the SDK boundary -------------------------------------------------
R_HEADER = ", ".join(AU_COLUMNS)
C_HEADER = ", ".join(c.replace("_r", "_c") for c in AU_COLUMNS[:-1]) + ", AU28_c, AU45_c"


class FakeContainer:
    """Plays FaceLandmarkImg: writes per-image CSVs (``-aus`` format) into the mounted output."""

    def __init__(self, mode: str, volumes: dict):
        self.mode = mode
        self.volumes = volumes
        self.removed = self.killed = False
        self.inputs: list[str] = []

    def start(self) -> None:
        if self.mode == "start-fails":
            raise docker.errors.APIError("Mounts denied: the path is not shared from the host")
        host = {v["bind"]: Path(k) for k, v in self.volumes.items()}
        in_dir, out_dir = host[f"{BIN_DIR}/input"], host[f"{BIN_DIR}/processed"]
        self.inputs = sorted(p.name for p in in_dir.iterdir())
        if self.mode == "no-output":  # the output folder never reached the container: nothing comes back
            return
        limit = 1 if self.mode == "crash" else None
        for k, name in enumerate(self.inputs[:limit]):
            stem = Path(name).stem
            if "noface" in stem:
                continue
            rows = [f"{face}, 0.9{face}, " + ", ".join(f"{(k + face + j) % 5}.25" for j in range(17))
                    + ", " + ", ".join(["1"] * 18) for face in range(2 if "crowd" in stem else 1)]
            (out_dir / f"{stem}.csv").write_text("\n".join([f"face, confidence, {R_HEADER}, {C_HEADER}", *rows]) + "\n")
            (out_dir / f"{stem}_of_details.txt").write_text(f"Input:{name}\n")

    def wait(self, timeout=None):
        if self.mode == "engine-gone":
            raise requests.exceptions.ConnectionError("('Connection aborted.', FileNotFoundError(2))")
        if self.mode == "timeout":
            time.sleep(min(timeout or 0.0, 0.02))
            raise requests.exceptions.ReadTimeout("UnixHTTPConnectionPool: Read timed out.")
        if self.mode == "interrupt":
            raise KeyboardInterrupt
        return {"Error": None, "StatusCode": 139 if self.mode == "crash" else 0}

    def reload(self):
        if self.mode == "engine-gone":  # what docker-py raises once the engine is gone
            raise requests.exceptions.ConnectionError("('Connection aborted.', FileNotFoundError(2))")

    def logs(self, stdout=True, stderr=True, tail="all"):
        return b"Loading the model\nModel loaded\nStarting tracking\nSegmentation fault (core dumped)\n"

    def kill(self):
        self.killed = True

    def remove(self, force=False, v=False):
        self.removed = True


class FakeClient:
    def __init__(self, mode: str = "ok", engine: bool = True, image: bool = True, run_error=None):
        self.mode, self.engine, self.has_image, self.run_error = mode, engine, image, run_error
        self.runs: list[dict] = []
        self.containers = self
        self.images = self
        self.container: FakeContainer | None = None

    def ping(self):
        if not self.engine:
            raise docker.errors.DockerException("Error while fetching server API version: Connection refused")
        return True

    def get(self, name):
        if not self.has_image:
            raise docker.errors.ImageNotFound(f"No such image: {name}")
        if self.mode == "lookup-fails":
            raise docker.errors.APIError("500 Server Error: Internal Server Error")
        return object()

    def pull(self, repo, tag=None):
        raise docker.errors.APIError(f"pull access denied for {repo}, repository does not exist")

    def create(self, image, command, volumes=None, working_dir=None, **kwargs):
        """docker-py's ``containers.create``: the container exists (and must be removed) before it starts."""
        self.runs.append({"image": image, "command": command, "volumes": volumes, "working_dir": working_dir})
        if self.run_error is not None:
            raise self.run_error
        self.container = FakeContainer(self.mode, volumes)
        return self.container


@pytest.fixture
def images(tmp_path) -> list[LabeledImage]:
    root = tmp_path / "images"
    for emotion in ("angry", "happy", "sad", "neutral", "surprise"):
        (root / emotion).mkdir(parents=True)
    Image.new("L", (48, 48), 90).save(root / "angry" / "a 1.jpg")
    Image.new("RGB", (64, 64), (200, 150, 120)).save(root / "happy" / "crowd.png")
    Image.new("RGB", (48, 48), (10, 20, 30)).save(root / "sad" / "s1.bmp")
    Image.new("L", (48, 48), 0).save(root / "neutral" / "noface.jpg")
    (root / "surprise" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return list_images(root)


def leftovers(work: Path) -> list[Path]:
    return sorted(work.rglob("*")) if work.exists() else []


def test_extract_success_maps_csvs_back(tmp_path, images):
    work = tmp_path / "work"
    work.mkdir()
    client = FakeClient()
    progress = []
    table = OpenFaceDocker(client=client, work_dir=work).extract(images, progress=lambda d, t: progress.append((d, t)))
    assert_schema(table)
    run = client.runs[0]
    assert run["image"] == "algebr/openface:latest" and client.container.removed
    assert run["working_dir"] == BIN_DIR
    assert run["command"] == OpenFaceDocker.build_command()
    assert sorted(v["bind"] for v in run["volumes"].values()) == [f"{BIN_DIR}/input", f"{BIN_DIR}/processed"]
    # the broken JPEG never reached OpenFace, the BMP arrived as PNG, names are unique and safe
    assert [Path(n).suffix for n in client.container.inputs] == [".jpg", ".png", ".jpg", ".png"]
    assert all(" " not in n for n in client.container.inputs)
    rows = {Path(f).name: g for f, g in table.groupby("file")}
    assert set(rows) == {"a 1.jpg", "crowd.png", "s1.bmp", "noface.jpg", "broken.jpg"}
    assert rows["crowd.png"]["face"].tolist() == [0, 1]
    assert rows["crowd.png"]["label"].tolist() == ["happy", "happy"]
    assert rows["crowd.png"]["file"].iloc[0] == str(tmp_path / "images" / "happy" / "crowd.png")
    assert rows["s1.bmp"]["success"].tolist() == [1]
    assert rows["a 1.jpg"]["AU01_r"].iloc[0] == pytest.approx(0.25)
    assert rows["noface.jpg"]["reason"].tolist() == [NO_FACE]
    # said as the local engine says it (the row names the file), so scoring leaves it out as unreadable
    assert rows["broken.jpg"]["reason"].iloc[0] == "not a readable image (use JPEG or PNG)"
    assert au_table.unreadable_files(table).sum() == 1
    assert table["file"].map(lambda f: Path(f).name).drop_duplicates().tolist() == [
        it.path.name for it in images]
    assert progress[0] == (0, 5) and progress[-1] == (5, 5)
    assert client.container.removed
    assert leftovers(work) == []


def test_extract_names_files_like_the_other_engines_and_reports_skipped_files_as_openface_rows(tmp_path, images):
    """From a folder (CLI and AU page): file names relative to it, as MediaPipe's engines write
    them, and the listing's skipped files as failure rows of OpenFace's table, not MediaPipe's."""
    from fer_core.images import SkippedFile

    work = tmp_path / "work"
    work.mkdir()
    skipped = [SkippedFile("sad/huge.tif", "sad", "too large to read safely")]
    table = OpenFaceDocker(client=FakeClient(), work_dir=work).extract(images, root=tmp_path / "images",
                                                                        skipped=skipped)
    assert_schema(table)
    assert {"happy/crowd.png", "angry/a 1.jpg", "sad/huge.tif"} <= set(table["file"])
    assert set(table["source"]) == {"openface"}
    row = table.set_index("file").loc["sad/huge.tif"]
    assert (row["success"], row["reason"], row["label"]) == (0, "too large to read safely", "sad")
    from fer_core.measure.extract import file_order_key  # the local engine's order (skipped rows came last)

    files = table["file"].tolist()
    assert files == sorted(files, key=file_order_key) and table.index.tolist() == list(range(len(files)))


def test_extract_container_exits_non_zero(tmp_path, images):
    work = tmp_path / "work"
    work.mkdir()
    client = FakeClient(mode="crash")
    table = OpenFaceDocker(client=client, work_dir=work).extract(images)
    assert_schema(table)
    assert table["success"].sum() == 1  # the first image was written before the crash
    reasons = table.loc[table["success"] == 0, "reason"]
    assert reasons.str.contains("OpenFace exited with code 139: Segmentation fault").sum() == 3
    assert client.container.removed
    assert leftovers(work) == []


def test_extract_timeout_kills_and_removes(tmp_path, images):
    work = tmp_path / "work"
    work.mkdir()
    client = FakeClient(mode="timeout")
    started = time.monotonic()
    table = OpenFaceDocker(client=client, work_dir=work, timeout_s=0.2, poll_s=0.05).extract(images)
    assert time.monotonic() - started < 5
    assert len(table) >= len(images)
    assert table.loc[table["success"] == 0, "reason"].str.contains("timed out after 0.2 s").any()
    assert client.container.killed and client.container.removed
    assert leftovers(work) == []


def test_losing_the_engine_mid_run_keeps_the_images_finished_and_removes_the_container(tmp_path, images):
    """docker-py raises requests' ConnectionError when the engine goes away: that was 'a bug' that
    threw the batch away; now every image gets its row, with the reason for the unfinished ones."""
    work = tmp_path / "work"
    work.mkdir()
    client = FakeClient(mode="engine-gone")
    table = OpenFaceDocker(client=client, work_dir=work, poll_s=0.01).extract(images)
    assert set(table["file"]) == {str(it.path) for it in images}
    assert (table["success"] == 1).any(), "the CSVs OpenFace wrote before the engine went are kept"
    assert table["reason"].str.contains("lost the connection to the Docker engine").any()
    assert leftovers(work) == []


def test_a_container_that_fails_to_start_is_removed(tmp_path, images):
    work = tmp_path / "work"
    work.mkdir()
    client = FakeClient(mode="start-fails")
    with pytest.raises(DockerUnavailable, match="could not start"):
        OpenFaceDocker(client=client, work_dir=work).extract(images)
    assert client.container.removed and leftovers(work) == []


def test_the_time_limit_grows_with_the_batch():
    assert OpenFaceDocker().limit_for(28_709) > 3600 and OpenFaceDocker(timeout_s=5).limit_for(28_709) == 5


def test_extract_keyboard_interrupt_still_cleans_up(tmp_path, images):
    work = tmp_path / "work"
    work.mkdir()
    client = FakeClient(mode="interrupt")
    with pytest.raises(KeyboardInterrupt):
        OpenFaceDocker(client=client, work_dir=work).extract(images)
    assert client.container.removed
    assert leftovers(work) == []


def test_engine_not_reachable(tmp_path, images):
    work = tmp_path / "work"
    work.mkdir()
    backend = OpenFaceDocker(client=FakeClient(engine=False), work_dir=work)
    ok, message = backend.status()
    assert not ok and message.startswith("Docker engine not reachable at ") and "systemctl start docker" in message
    with pytest.raises(DockerUnavailable, match="Docker engine not reachable"):
        backend.extract(images)
    assert backend.client.runs == []
    assert leftovers(work) == []


def test_missing_image(tmp_path, images):
    work = tmp_path / "work"
    work.mkdir()
    backend = OpenFaceDocker(client=FakeClient(image=False), work_dir=work)
    assert backend.status() == (False, "image algebr/openface not present; pull it with: docker pull algebr/openface")
    with pytest.raises(DockerUnavailable, match="docker pull algebr/openface"):
        backend.extract(images)
    assert backend.client.runs == []
    # the image disappears between the check and the run: temp folders still go
    client = FakeClient(run_error=docker.errors.ImageNotFound("No such image: algebr/openface:latest"))
    with pytest.raises(DockerUnavailable, match="docker pull algebr/openface"):
        OpenFaceDocker(client=client, work_dir=work).extract(images)
    assert len(client.runs) == 1 and client.container is None
    assert leftovers(work) == []


def test_status_ready():
    assert OpenFaceDocker(client=FakeClient()).status() == (
        True, "Docker engine reachable and image algebr/openface:latest present")


# -- the reproduction benchmark ----------------------------------------------------------------
@needs_study
def test_reproduce_two_splits():
    spec = importlib.util.spec_from_file_location("reproduce_original", REPO / "bench" / "reproduce_original.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.reproduce(read_au_table(openface_study_table()), splits=2, seed=0)
    assert result["rows"] == 4473 and len(result["runs"]) == 2
    assert result["duplicates"]["duplicate_rows"] == 19
    assert result["duplicates"]["conflicting_vectors"] == 2
    # Full run (bench/reproduce_original.py, 10 splits): logistic regression 0.714 +- 0.009,
    # MLP 0.766 +- 0.010. Floor = full-run mean minus 3 sd, so an importer or model regression shows.
    for run in result["runs"]:
        assert run["test"] + run["duplicates_across_split"] == 1119 and run["duplicates_across_split"] > 0
        assert run["logreg"]["accuracy"] > 0.714 - 3 * 0.009
        assert run["mlp"]["accuracy"] > 0.766 - 3 * 0.010 - 0.02  # MLP: early stopping adds noise
    assert "0.755" in module.format_report(result)
    # for a paper (a replicator's review): confusion counts summed over the splits, whose diagonals
    # give the recalls, the two models tested with the correction for splits sharing rows
    for key in ("mlp", "logreg"):
        confusion = np.array(result["summary"][key]["confusion"])
        assert confusion.sum() == sum(run["test"] for run in result["runs"])
        recalls = [np.mean([run[key]["recall"][c] for run in result["runs"]]) for c in result["classes"]]
        per_split = [np.diag(run[key]["confusion"]) / np.sum(run[key]["confusion"], axis=1) for run in result["runs"]]
        assert np.allclose(np.mean(per_split, axis=0), recalls, atol=1e-4)  # the held-out recalls keep 4 decimals
        lo, hi = result["summary"][key]["accuracy_ci95_corrected"]
        assert lo < result["summary"][key]["accuracy_mean"] < hi
    versus = result["mlp_vs_logreg"]
    assert versus["df"] == 1 and 0 < versus["p"] <= 1 and "Nadeau" in versus["test"]
    assert "MLP - logistic regression: " in module.format_report(result)


@needs_study
def test_reproduce_one_split_claims_no_spread():
    """One split has no standard deviation: it printed "0.707 ± 0.000", as if ten splits agreed."""
    spec = importlib.util.spec_from_file_location("reproduce_original", REPO / "bench" / "reproduce_original.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = read_au_table(openface_study_table())
    result = module.reproduce(table.groupby("label").head(80), splits=1, seed=3)
    report = module.format_report(result)
    assert "±" not in report and "one stratified 75/25 split (seed 3)" in report
    assert result["summary"]["logreg"]["accuracy_sd"] is None


def test_the_corrected_t_test_gives_no_test_where_the_splits_do_not_vary():
    """Differences equal on every split (or one split) gave t = inf and p = 0: a certainty from no
    spread at all. Now no test is given, and said."""
    spec = importlib.util.spec_from_file_location("reproduce_original", REPO / "bench" / "reproduce_original.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    flat = module.corrected_t_test(np.full(5, 0.05), 1 / 3)
    assert flat["t"] is None and flat["p"] is None and "no test" in flat["note"]
    spread = module.corrected_t_test(np.array([0.04, 0.05, 0.06, 0.05, 0.05]), 1 / 3)
    assert spread["t"] > 0 and 0 < spread["p"] < 0.05


def test_a_table_with_its_own_file_and_label_columns_keeps_them(tmp_path):
    """A merged table in OpenFace's columns (face, confidence) but with a file and label per row:
    each row kept its image and emotion (they all became one unlabelled image)."""
    rows = [f"{name},0,0.95,happy," + ",".join(["1.5"] * 17) for name in ("a.jpg", "b.jpg", "c.jpg")]
    path = tmp_path / "merged.csv"
    path.write_text("\n".join(["file,face,confidence,label," + ",".join(AU_COLUMNS), *rows]) + "\n")
    table = au_table.read(path)
    assert list(table["file"]) == ["a.jpg", "b.jpg", "c.jpg"] and set(table["label"]) == {"happy"}
    assert au_table.select(table, ["happy"]).n == 3


def test_import_openface_refuses_an_empty_folder_and_skips_its_own_output(tmp_path, capsys):
    from fer_core.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["import-openface", str(empty), "--out", str(tmp_path / "o.csv")]) == 2
    assert "no OpenFace CSVs found" in capsys.readouterr().err
    folder = tmp_path / "processed"
    folder.mkdir()
    (folder / "happy001.csv").write_text(f"face, confidence, {R_HEADER}\n0, 0.9, " + ", ".join(["1.0"] * 17) + "\n")
    out = folder / "au.csv"
    for _ in range(2):  # the second run must not read the first run's output back in
        assert main(["import-openface", str(folder), "--out", str(out)]) == 0
    assert len(au_table.read(out)) == 1


def test_import_openface_reads_upper_case_csvs_labels_one_file_by_name_and_keeps_its_input(tmp_path, capsys):
    """HAPPY004.CSV was left out of a folder import unsaid; happy001.csv imported on its own had no
    label (in its folder it had one); --out naming the CSV being read replaced OpenFace's own file."""
    from fer_core.cli import main

    folder = tmp_path / "processed"
    folder.mkdir()
    (folder / "happy001.csv").write_bytes((FIXTURES / "happy001.csv").read_bytes())
    (folder / "HAPPY004.CSV").write_bytes((FIXTURES / "happy001.csv").read_bytes())
    assert main(["import-openface", str(folder), "--out", str(tmp_path / "all.csv")]) == 0
    assert set(au_table.read(tmp_path / "all.csv")["file"]) == {"happy001", "HAPPY004"}
    assert main(["import-openface", str(folder / "happy001.csv"), "--out", str(tmp_path / "one.csv")]) == 0
    assert set(au_table.read(tmp_path / "one.csv")["label"]) == {"happy"}
    before = (folder / "happy001.csv").read_bytes()
    assert main(["import-openface", str(folder / "happy001.csv"), "--out", str(folder / "happy001.csv")]) == 2
    assert "--out is the table being read" in capsys.readouterr().err
    assert (folder / "happy001.csv").read_bytes() == before


def test_openface_cannot_measure_under_a_drawn_mask(tmp_path, capsys):
    from fer_core.cli import main

    (tmp_path / "happy").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "happy" / "a.png")
    assert main(["extract", str(tmp_path), "--backend", "openface-docker", "--mask", "surgical",
                 "--out", str(tmp_path / "o.csv")]) == 2
    assert "--mask draws masks for the embedded MediaPipe" in capsys.readouterr().err


def test_a_merged_table_in_openface_columns_is_one_image_per_first_face():
    """Rows of face 0 one after another, without a file column, are images of their own (a merged
    table of OpenFace's per-image rows): five rows were one image, four left out as later faces."""
    rows = [f"0, 0.98, {label}, " + ", ".join(["0.5"] * 17) for label in ("happy", "sad", "angry", "happy", "sad")]
    rows.insert(2, "1, 0.91, sad, " + ", ".join(["1.5"] * 17))  # the second image has two faces
    table = read_au_table(io.BytesIO("\n".join([f"face, confidence, emotion, {R_HEADER}", *rows]).encode()))
    assert table["file"].tolist() == ["uploaded CSV#1", "uploaded CSV#2", "uploaded CSV#2", "uploaded CSV#3",
                                      "uploaded CSV#4", "uploaded CSV#5"]
    assert table["face"].tolist() == [0, 0, 1, 0, 0, 0]
    chosen = au_table.select(table)
    assert chosen.n == 5 and chosen.left_out == {"later faces of an image": 1}  # the second face of image 2


def test_a_run_that_writes_no_csv_at_all_says_where_to_look(tmp_path, images):
    """OpenFace exits cleanly and not one CSV comes back (the folder is not shared with Docker, or
    the engine is on another machine): every image was "OpenFace found no face"."""
    work = tmp_path / "work"
    work.mkdir()
    table = OpenFaceDocker(client=FakeClient(mode="no-output"), work_dir=work).extract(images)
    assert_schema(table)
    sent = table[~table["file"].str.endswith("broken.jpg")]
    assert set(sent["reason"]) == {f"OpenFace wrote no CSV at all: no face in any image, or its output did not "
                                   f"reach this machine; check that Docker may share {work} with containers"}
    assert leftovers(work) == []


def test_docker_messages_read_in_korean(tmp_path, images):
    """Every line the Docker backend can end in, as it writes it, in Korean (four were English)."""
    from apptest_helpers import english_left

    from fer_core import i18n

    lines = [OpenFaceDocker()._engine_message(PermissionError("Permission denied")),
             OpenFaceDocker(client=FakeClient(mode="lookup-fails")).status()[1]]
    for backend, call in ((OpenFaceDocker(client=FakeClient()), "pull"),
                          (OpenFaceDocker(client=FakeClient(mode="start-fails"), work_dir=tmp_path), "extract")):
        with pytest.raises(DockerUnavailable) as caught:
            backend.pull() if call == "pull" else backend.extract(images)
        lines.append(str(caught.value))
    (tmp_path / "processed").mkdir()  # OpenFace wrote nothing for these images
    lines += sorted(set(import_openface_dir(tmp_path / "processed", labels_from=images)["reason"]))
    lines += ["OpenFace wrote no CSV at all: no face in any image, or its output did not reach this machine; "
              "check that Docker may share /tmp with containers", "x.jpg: OpenFace output unreadable (x)"]
    with i18n.using_language("ko"):
        korean = [i18n.message(line) for line in lines]
    engine_says = ("APIError: 500 Server Error: Internal Server Error", "APIError: Mounts denied: the path is not "
                   "shared from the host", "APIError: pull access denied for algebr/openface, repository does not exist")
    keep = (*engine_says, "algebr/openface:latest", "algebr/openface", "happy001", "x.jpg",
            "sudo usermod -aG docker $USER", "docker info")
    assert len(lines) == 7 and english_left(korean, keep) == [], list(zip(lines, korean))


def test_a_face_or_success_that_is_no_whole_number_is_unknown_not_a_made_up_integer(tmp_path):
    """``face``/``success`` were cast with ``fillna(0).astype(int)``: 1e300 became whatever the
    platform's cast gives (-2**63 here, then clipped) and 2.7 became 2, with no word. They go through
    ``au_table.whole_numbers`` now: such a face number is unknown (0, as a blank), and a success that
    is not 0 or 1 leaves its row out with a reason that says so, not "OpenFace found no face"."""
    from fer_core.measure.openface_csv import BAD_SUCCESS

    ones = ", ".join(["1.5"] * 17)
    path = tmp_path / "happy001.csv"
    path.write_text(f"frame, face, success, confidence, {', '.join(AU_COLUMNS)}\n"
                    f"1, 0, 1, 0.98, {ones}\n2, 1e300, 1, 0.9, {ones}\n3, 2.7, 1, 0.9, {ones}\n"
                    f"4, 0, 2.7, 0.9, {ones}\n5, 0, 1e300, 0.9, {ones}\n6, 0, 0, 0.9, {ones}\n"
                    f"1e300, 0, 1, 0.9, {ones}\n")
    table = read_openface_csv(path, label="happy")
    assert table["face"].tolist() == [0] * 7
    assert table["success"].tolist() == [1, 1, 1, 0, 0, 0, 1]
    assert table["reason"].tolist() == ["", "", "", BAD_SUCCESS, BAD_SUCCESS, NO_FACE, ""]
    assert table["file"].tolist()[-1] == "happy001#1e+300"  # not 301 digits
    assert table.loc[table["success"] == 0, list(AU_COLUMNS)].isna().all().all()
    assert au_table.select(table).left_out == {au_table.NO_FACE: 3}


def test_an_unreadable_file_with_spaces_in_its_name_is_said_without_its_path(tmp_path):
    """The reason was the one-line error with the file's path in front, cut only where the path
    read the same after one_line (two spaces in a name are folded to one): such a file kept its
    path in the reason, was not seen as unreadable, and was scored as a face not found."""
    folder = tmp_path / "happy"
    folder.mkdir()
    (folder / "a  b.jpg").write_bytes(b"not an image")
    (folder / "c.jpg").write_bytes(b"")
    inputs = tmp_path / "in"
    inputs.mkdir()
    _, failed = OpenFaceDocker(client=FakeClient())._prepare(
        [LabeledImage(folder / "a  b.jpg", "happy"), LabeledImage(folder / "c.jpg", "happy")], inputs)
    assert failed == {0: "not a readable image (use JPEG or PNG)", 1: "file is empty"}


def test_a_tracked_videos_frames_without_face_0_keep_their_first_face():
    """OpenFace's face_id is a tracker's slot: in a FaceLandmarkVidMulti CSV where person 0 leaves
    and a new face is tracked, frames 5-8 have faces 1 and 2. Those frames were dropped whole,
    said as "later faces of an image" (an OpenFace researcher's review); their lowest face is now
    their first."""
    codes = [c.removesuffix("_r") for c in AU_COLUMNS]
    header = ", ".join(["frame", "face_id", "timestamp", "confidence", "success", *(f"{c}_r" for c in codes)])
    lines = [header]
    for frame in range(1, 9):
        for face in ((0, 1) if frame <= 4 else (1, 2)):
            values = [f"{face + 1:.2f}"] * len(codes)  # each face's AUs name it: face 1 reads 2.00
            lines.append(", ".join([str(frame), str(face), f"{(frame - 1) / 30:.3f}", "0.98", "1", *values]))
    table = read_openface_csv(io.StringIO("\n".join(lines) + "\n"), name="happy/multi", label="happy")
    first = table[au_table.first_face_mask(table)]
    assert len(first) == 8, "one face per frame"
    assert first["face"].tolist() == [0] * 4 + [1] * 4 and first["AU12_r"].tolist() == [1.0] * 4 + [2.0] * 4
    assert au_table.first_faces(table)["file"].nunique() == 8


def test_csvs_joined_with_cat_lose_their_repeated_headers_and_a_cut_row_is_no_face():
    """`cat imgs/*/*.csv > all.csv` (a common way to join FaceLandmarkImg's per-image CSVs) carries
    one header line per file: each had become a face with success 1 whose AUs are "not a number",
    scored as wrong and said as masked. A file cut short mid-row gave a face with empty AUs and no
    reason. Header lines are left out; a cut row is a failure row that says why."""
    codes = [c.removesuffix("_r") for c in AU_COLUMNS]
    header = ", ".join(["face", "confidence", *(f"{c}_r" for c in codes), *(f"{c}_c" for c in codes)])

    def face(number: int, value: float) -> str:
        return ", ".join([str(number), "0.95", *[f"{value:.2f}"] * len(codes), *["1.00"] * len(codes)])

    text = "\n".join([header, face(0, 1), header, face(0, 2), header, face(0, 3), face(1, 4), header,
                      "0, 0.95, 1.00, 2.00"]) + "\n"
    table = read_openface_csv(io.StringIO(text), name="all")
    assert table["file"].tolist() == ["all#1", "all#2", "all#3", "all#3", "all#4"]
    assert table["AU12_r"].tolist()[:4] == [1.0, 2.0, 3.0, 4.0]
    assert table["success"].tolist() == [1, 1, 1, 1, 0]
    assert table.loc[4, "reason"] == au_table.AU_ROW_CUT
    # a value that is text is said so, and is no face either
    text_cell = read_openface_csv(io.StringIO("\n".join([header, face(0, 1), face(0, 1).replace("1.00", "abc", 1)])
                                              + "\n"), name="one")
    assert text_cell["success"].tolist() == [1, 0] and text_cell.loc[1, "reason"] == "an AU value is not a number"


def test_au_agreement_joins_extracts_and_openfaces_tables_of_the_same_images(tmp_path, capsys):
    """An OpenFace researcher could not compare the embedded AUs with OpenFace's on the same images:
    no command joined them (extract names angry/x.jpg, import-openface angry/x). import-openface
    --images names each CSV's row as extract does, and au-agreement gives each AU's r and means."""
    from fer_core.cli import main
    from fer_core.measure.agreement import au_agreement

    rng = np.random.default_rng(0)
    files = [f"{e}/img{i}.jpg" for e in ("angry", "happy") for i in range(20)]
    ours = pd.DataFrame({"file": files, "face": 0, "label": [f.split("/")[0] for f in files], "success": 1,
                         "source": "mediapipe", **{c: rng.uniform(0, 3, len(files)) for c in AU_COLUMNS}})
    theirs = ours.assign(file=[f.removesuffix(".jpg") for f in files], source="openface")
    theirs[list(AU_COLUMNS)] = 1.5 * ours[list(AU_COLUMNS)] + 0.2  # another scale, the same order
    theirs.loc[0, "AU12_r"] = np.nan  # a face OpenFace did not measure that AU of
    theirs = pd.concat([theirs, theirs.iloc[:1].assign(file="angry/other", success=1)], ignore_index=True)
    agreement = au_agreement(au_table.normalise(ours), au_table.normalise(theirs)).set_index("au")
    assert agreement["pearson_r"].round(6).eq(1.0).all() and agreement.loc["AU12", "n"] == 39
    assert agreement.loc["AU01", "n"] == 40
    assert agreement.loc["AU01", "mean_b"] == pytest.approx(1.5 * agreement.loc["AU01", "mean_a"] + 0.2, abs=1e-4)
    au_table.write(au_table.normalise(ours), tmp_path / "ours.csv")
    au_table.write(au_table.normalise(theirs), tmp_path / "theirs.csv")
    assert main(["au-agreement", str(tmp_path / "ours.csv"), str(tmp_path / "theirs.csv"),
                 "--out", str(tmp_path / "agreement.csv")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("40 faces in both tables") and "AU12  n 39  r 1.00" in out
    assert len(pd.read_csv(tmp_path / "agreement.csv")) == len(AU_COLUMNS)
    assert main(["au-agreement", str(tmp_path / "ours.csv"), str(FIXTURES / "happy001.csv")]) == 2
    assert "share 0 measured faces by file name" in capsys.readouterr().err
    # a group photo: only its first face in each table is compared, which was said nowhere (a reviewer's
    # OpenFace listed another child first)
    group = pd.concat([theirs, theirs.iloc[1:2].assign(face=1)], ignore_index=True)
    au_table.write(au_table.normalise(group), tmp_path / "group.csv")
    assert main(["au-agreement", str(tmp_path / "ours.csv"), str(tmp_path / "group.csv")]) == 0
    err = capsys.readouterr().err
    assert "pictures with several faces: 1; only each one's first face is compared" in err
    assert au_agreement(au_table.normalise(ours), au_table.normalise(theirs)).attrs["several_faces"] == 0
    frames = au_table.normalise(pd.concat([ours, ours.assign(time_s=1.0)], ignore_index=True).assign(time_s=lambda
                                t: t["time_s"].fillna(0.0)))  # each file a video of two frames, a face in each
    assert au_agreement(frames, au_table.normalise(theirs)).attrs["several_faces"] == 0


def test_import_openface_images_names_rows_as_extract_does(tmp_path, capsys):
    from fer_core.cli import main

    images = tmp_path / "input"
    (images / "happy").mkdir(parents=True)
    Image.new("L", (48, 48), 128).save(images / "happy" / "happy001.jpg")
    Image.new("L", (48, 48), 128).save(images / "happy" / "lost.jpg")
    out = tmp_path / "processed"
    out.mkdir()
    (out / "happy001.csv").write_bytes((FIXTURES / "happy001.csv").read_bytes())
    assert main(["import-openface", str(out), "--images", str(images), "--out", str(tmp_path / "of.csv")]) == 0
    table = read_au_table(tmp_path / "of.csv")
    assert sorted(set(table["file"])) == ["happy/happy001.jpg", "happy/lost.jpg"]
    assert main(["import-openface", str(out / "happy001.csv"), "--images", str(images),
                 "--out", str(tmp_path / "x.csv")]) == 2
    assert "give the folder" in capsys.readouterr().err


def test_a_masked_row_of_this_workbenchs_table_without_file_names_stays_a_face():
    """A table in this workbench's columns but without ``file`` is read like OpenFace's; its masked
    faces (hidden AUs empty, ``masked`` 1) are faces, not rows cut short (a code review)."""
    row = {"face": 0, "confidence": 0.9, "success": 1, "source": "mediapipe", "masked": 1,
           **{c: (np.nan if c in ("AU12_r", "AU25_r") else 1.0) for c in AU_COLUMNS}}
    buf = io.StringIO(pd.DataFrame([row, {**row, "masked": 0}]).to_csv(index=False))
    table = au_table.read(buf)
    assert table["success"].tolist() == [1, 0] and table.loc[1, "reason"] == au_table.AU_ROW_CUT


def _openface_csv_with_landmarks(faces: list[tuple[float, float, float, float]], aus: list[float],
                                 spaced: bool = True, drop: str | None = None, success: list[int] | None = None) -> str:
    """An OpenFace CSV as FeatureExtraction / FaceLandmarkImg write it with every output on: 2D landmarks
    x_0 … y_67 in pixels, 3D ones X_0 … Z_67 in millimetres, then AU_r and AU_c."""
    names = ["frame", "face_id", "timestamp", "confidence", "success", *(f"x_{i}" for i in range(68)),
             *(f"y_{i}" for i in range(68)), *(f"X_{i}" for i in range(68)), *(f"Y_{i}" for i in range(68)),
             *(f"Z_{i}" for i in range(68)), *AU_COLUMNS, "AU12_c"]
    rows = []
    for k, ((x, y, w, h), au) in enumerate(zip(faces, aus, strict=True)):
        ok = 1 if success is None else success[k]
        xs = np.linspace(x, x + w, 68) if ok else np.zeros(68)
        ys = np.linspace(y + h, y, 68) if ok else np.zeros(68)
        row = [1, k, 0.0, 0.98, ok, *xs, *ys, *np.full(68, -900.0), *np.full(68, 950.0), *np.full(68, 400.0),
               *[au if ok else 0.0] * len(AU_COLUMNS), 1]
        rows.append(row)
    frame = pd.DataFrame(rows, columns=names)
    if drop:
        frame = frame.drop(columns=[drop])
    return frame.to_csv(index=False, sep=",", float_format="%.3f").replace(",", ", " if spaced else ",")


def test_an_openface_face_has_the_box_of_its_2d_landmarks(tmp_path):
    """An OpenFace researcher could not tell which face of a group photo an imported row was: the
    import had no box, though OpenFace writes each face's 68 2D landmarks. Their box is read (not
    the 3D ones, X_0 … in millimetres), one decimal as extract writes it; a failed frame (landmarks
    of 0) has none, nor has a CSV lacking a landmark column."""
    boxes = [(40.0, 30.0, 120.5, 140.0), (300.0, 60.0, 90.0, 100.25)]
    for spaced in (True, False):  # OpenFace 2.0 writes ", ", 2.2 ","
        path = tmp_path / f"group{spaced}.csv"
        path.write_text(_openface_csv_with_landmarks(boxes, [1.0, 2.0], spaced=spaced))
        table = read_openface_csv(path, name="group.jpg")
        assert table[list(au_table.BOX_COLUMNS)].to_numpy().tolist() == [[40.0, 30.0, 120.5, 140.0],
                                                                         [300.0, 60.0, 90.0, 100.2]]
        assert table["AU12_r"].tolist() == pytest.approx([1.0, 2.0])
    path.write_text(_openface_csv_with_landmarks(boxes, [1.0, 2.0], success=[1, 0]))
    table = read_openface_csv(path, name="clip.mp4")
    assert table["box_x"].tolist()[0] == 40.0 and np.isnan(table["box_x"].tolist()[1])
    path.write_text(_openface_csv_with_landmarks(boxes, [1.0, 2.0], drop="y_67"))
    assert read_openface_csv(path, name="group.jpg")[list(au_table.BOX_COLUMNS)].isna().all().all()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "group.csv").write_text(_openface_csv_with_landmarks(boxes, [1.0, 2.0]))
    imported = import_openface_dir(tmp_path / "out")
    assert imported["box_w"].tolist() == [120.5, 90.0]
    assert au_table.read(tmp_path / "out" / "group.csv")["box_h"].tolist() == [140.0, 100.2]


def test_au_agreement_pairs_a_group_photos_faces_by_their_boxes(tmp_path, capsys):
    """A reviewer's OpenFace listed another child first: au-agreement compared extract's largest face
    with OpenFace's first, two people. With boxes in both tables (extract's; OpenFace's landmarks)
    each face is compared with the one whose box overlaps it most; a face found in one table only is
    left out and counted; a table without boxes still compares first faces, and says so."""
    from fer_core.cli import main
    from fer_core.measure.agreement import au_agreement

    rng = np.random.default_rng(1)
    rows = []
    for i in range(12):  # a large face left, a small one right; the right one a third face in some
        for face, box in enumerate([(10.0, 20.0, 200.0, 220.0), (400.0, 40.0, 100.0, 110.0)]):
            rows.append({"file": f"group{i}.jpg", "face": face, "success": 1, "source": "mediapipe",
                         **dict(zip(au_table.BOX_COLUMNS, box, strict=True)),
                         **{c: rng.uniform(0, 3) for c in AU_COLUMNS}})
    ours = au_table.normalise(pd.DataFrame(rows))
    theirs = ours.copy()
    theirs["file"] = theirs["file"].str.removesuffix(".jpg")
    theirs["face"] = 1 - theirs["face"]  # OpenFace lists the small face first
    theirs["box_y"], theirs["box_h"] = theirs["box_y"] + 30.0, theirs["box_h"] - 30.0  # 68 landmarks: from the brows
    theirs[list(AU_COLUMNS)] = 2 * theirs[list(AU_COLUMNS)]
    extra = theirs.iloc[:1].assign(face=2, box_x=700.0)  # a face only OpenFace found
    theirs = au_table.normalise(pd.concat([theirs, extra], ignore_index=True))
    agreement = au_agreement(ours, theirs)
    assert agreement["n"].eq(24).all() and agreement["pearson_r"].round(6).eq(1.0).all()
    assert (agreement.attrs["paired_by_box"], agreement.attrs["faces_paired_by_box"],
            agreement.attrs["faces_unpaired"], agreement.attrs["several_faces"]) == (12, 24, 1, 0)
    au_table.write(ours, tmp_path / "ours.csv")
    au_table.write(theirs, tmp_path / "theirs.csv")
    assert main(["au-agreement", str(tmp_path / "ours.csv"), str(tmp_path / "theirs.csv")]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("24 faces in both tables")
    assert "paired by box: 12 (24 faces paired; 1 found in one table only, left out)" in captured.err
    unboxed = au_agreement(ours, au_table.normalise(theirs.drop(columns=list(au_table.BOX_COLUMNS))))
    assert unboxed["n"].eq(12).all() and unboxed.attrs["several_faces"] == 12
    assert not (unboxed["pearson_r"] > 0.99).all()  # the first faces are other people
    # group0.jpg and group0.png share the key OpenFace's group0.csv matches: not one picture of four faces
    twin = ours[ours["file"] == "group0.jpg"].assign(file="group0.png")
    twin[list(AU_COLUMNS)] = 5 - twin[list(AU_COLUMNS)]
    both = au_agreement(au_table.normalise(pd.concat([ours, twin], ignore_index=True)), theirs)
    assert both["pearson_r"].round(6).eq(1.0).all() and both.attrs["same_name"] == 1
    assert both.attrs["paired_by_box"] == 12 and both.attrs["faces_paired_by_box"] == 24
    # two tables naming both files, in other orders: each compares group0.jpg with group0.jpg
    listed = au_agreement(au_table.normalise(pd.concat([twin, ours], ignore_index=True)),
                          au_table.normalise(pd.concat([ours, twin], ignore_index=True)))
    assert listed["pearson_r"].round(6).eq(1.0).all() and listed.attrs["same_name"] == 1
