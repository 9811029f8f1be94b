"""OpenFace 2 as an AU source: import its CSV output, or run it in Docker (the original method).

Every function returns the project's AU table (``aus.TABLE_COLUMNS``, ``source = "openface"``),
so a model trained on OpenFace AUs can be scored on embedded AUs and vice versa.

What OpenFace 2 writes (``lib/local/Utilities/src/RecorderCSV.cpp``):

- ``FaceLandmarkImg`` (one CSV per image, named ``<image stem>.csv``): ``face, confidence``, then
  optional gaze / pose / landmark / shape columns, then ``AU01_r … AU45_r`` and ``AU01_c … AU45_c``.
  One row per detected face; an image without a face gets a header-only CSV or none at all.
  It has no ``success`` column (a row means a face was found); one is honoured if present.
- ``FeatureExtraction`` (sequences): ``frame, [face_id,] timestamp, confidence, success, …``; frames
  where tracking failed have ``success 0`` and AU values of 0, which are not measurements.
- OpenFace 2.0 separates fields with ``", "``; 2.2 with ``","``. Both are read.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import IO, Callable, Iterable, Sequence, Union

import numpy as np
import pandas as pd

from .aus import AU_COLUMNS, TABLE_COLUMNS
from .emotions import OPENFACE_STUDY_CODES, SIX_EMOTIONS, emotion_from_filename, normalize_emotion
from .errors import AUTableError, DatasetError, DockerUnavailable, FerError
from .images import LabeledImage, list_images, load_image

SOURCE = "openface"
NO_FACE = "OpenFace found no face"
PathOrBuffer = Union[str, os.PathLike, IO[str], IO[bytes]]
Progress = Callable[[int, int], None]

_CODES_HINT = ", ".join(f"{k} {v}" for k, v in OPENFACE_STUDY_CODES.items())


# -- reading CSVs ------------------------------------------------------------------------------
def read_openface_csv(path_or_buffer: PathOrBuffer, name: str | None = None,
                      label: str | None = None) -> pd.DataFrame:
    """AU table of one OpenFace per-image CSV (``FaceLandmarkImg`` or ``FeatureExtraction``).

    ``file`` is ``name`` when given (the image the CSV belongs to), else the CSV's stem, which is
    the image's stem because OpenFace names its CSV after the image. Several faces give several
    rows; failed detections (``success 0``) and header-only CSVs give rows with NaN AUs and the
    reason "OpenFace found no face".
    """
    display = _display_name(path_or_buffer)
    frame = _read_csv(path_or_buffer, display)
    file = name if name is not None else _stem(display)
    return _from_openface(frame, display, file, _clean_label(label))


def read_au_table(path_or_buffer: PathOrBuffer) -> pd.DataFrame:
    """Read any AU CSV this project meets, detecting its kind from the columns.

    - the project's own schema (``file``, ``success``, … + AUs): validated and returned as is;
    - OpenFace per-image output (``face``/``frame`` + ``confidence``): see ``read_openface_csv``;
    - a merged labelled table like the study's ``emotion.csv`` (17 AU_r columns and optionally a
      ``label``/``emotion`` column of names or the study's codes 0..5): one row per face, with
      ``file = "<csv name>#<data row number, from 1>"`` unless the table has a ``file`` column.
    """
    display = _display_name(path_or_buffer)
    frame = _read_csv(path_or_buffer, display)
    cols = set(frame.columns)
    if "file" in cols and ("success" in cols or "source" in cols):
        return _from_project(frame, display)
    if ("face" in cols or "frame" in cols or "face_id" in cols) and "confidence" in cols:
        return _from_openface(frame, display, _stem(display), None)
    return _from_merged(frame, display)


def import_openface_dir(folder: str | os.PathLike[str],
                        labels_from: str | os.PathLike[str] | Sequence[LabeledImage] | None = None,
                        ) -> pd.DataFrame:
    """AU table of an OpenFace ``-out_dir``: one CSV per image, possibly in emotion subfolders.

    ``labels_from`` (the image folder OpenFace read, or its ``LabeledImage`` list) maps each CSV to
    its image by stem, giving ``file`` the image path and its label; images without a CSV become
    failure rows. Without it, labels come from the CSV's emotion subfolder or an emotion-prefixed
    stem (``angry001``). Non-CSV files are skipped; a bad CSV becomes a failure row, never an
    exception, so the batch is kept.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder; pick the folder OpenFace wrote with -out_dir")
    csvs = sorted(p for p in folder.rglob("*.csv")
                  if p.is_file() and not any(part.endswith("_aligned") or part.startswith(".")
                                             for part in p.relative_to(folder).parts))
    images: list[LabeledImage] = []
    if labels_from is not None:
        images = (list_images(labels_from) if isinstance(labels_from, (str, os.PathLike))
                  else list(labels_from))
    by_dir_stem = {(it.path.parent.name.lower(), it.path.stem): it for it in images}
    stems: dict[str, list[LabeledImage]] = {}
    for it in images:
        stems.setdefault(it.path.stem, []).append(it)

    parts: list[pd.DataFrame] = []
    matched: set[Path] = set()
    for csv in csvs:
        rel = csv.relative_to(folder)
        image = by_dir_stem.get((csv.parent.name.lower(), csv.stem))
        if image is None and len(stems.get(csv.stem, [])) == 1:
            image = stems[csv.stem][0]
        if image is not None:
            matched.add(image.path)
            file, label = str(image.path), image.label or _label_from_path(rel)
        else:
            file, label = rel.with_suffix("").as_posix(), _label_from_path(rel)
        try:
            parts.append(read_openface_csv(csv, name=file, label=label))
        except FerError as exc:
            parts.append(failure_rows([(file, label)], _one_line(exc)))
    missing = [(str(it.path), it.label) for it in images if it.path not in matched]
    if missing:
        parts.append(failure_rows(missing, "OpenFace wrote no CSV for this image (no face found or not processed)"))
    return _concat(parts)


def failure_rows(files: Iterable[tuple[str, str | None]], reason: str) -> pd.DataFrame:
    """One failed row per (file, label): AUs NaN, ``success 0`` and the one-line ``reason``."""
    rows = [{"file": f, "face": 0, "label": lab, "success": 0, "confidence": np.nan,
             "source": SOURCE, "reason": reason, **{c: np.nan for c in AU_COLUMNS}} for f, lab in files]
    return _table(pd.DataFrame(rows, columns=list(TABLE_COLUMNS)))


# -- parsing helpers ---------------------------------------------------------------------------
def _display_name(src: PathOrBuffer) -> str:
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    return str(getattr(src, "name", None) or "uploaded CSV")


def _stem(display: str) -> str:
    return Path(display).stem if display else "table"


def _one_line(exc: BaseException | str) -> str:
    return " ".join(str(exc).split())


def _read_csv(src: PathOrBuffer, display: str) -> pd.DataFrame:
    """Read with OpenFace's ``", "`` separators and stripped header names."""
    if isinstance(src, (str, os.PathLike)) and not Path(src).is_file():
        raise AUTableError(f"{display}: file not found; pick an existing CSV")
    if hasattr(src, "seek"):
        try:
            src.seek(0)
        except (OSError, ValueError):
            pass
    try:
        frame = pd.read_csv(src, skipinitialspace=True, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise AUTableError(f"{display}: file is empty; pick a CSV written by OpenFace") from None
    except UnicodeDecodeError:
        raise AUTableError(f"{display}: not a text CSV; pick a CSV written by OpenFace") from None
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        raise AUTableError(f"{display}: not a readable CSV ({_one_line(exc)[:120]}); "
                           f"check the file is OpenFace output") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _au_values(frame: pd.DataFrame, display: str) -> pd.DataFrame:
    """The 17 AU_r columns as floats; missing or non-numeric columns raise AUTableError."""
    missing = [c for c in AU_COLUMNS if c not in frame.columns]
    if missing:
        what = "all 17 AU intensity columns" if len(missing) == len(AU_COLUMNS) else f"{len(missing)} AU columns"
        raise AUTableError(f"{display}: missing {what} ({', '.join(missing)}); "
                           f"use OpenFace output with AU intensities (-aus) or a table with AU01_r … AU45_r")
    out = pd.DataFrame(index=frame.index)
    for c in AU_COLUMNS:
        col = frame[c]
        values = pd.to_numeric(col, errors="coerce")
        bad = values.isna() & col.notna() & (col.astype(str).str.strip() != "")
        if bad.any():
            raise AUTableError(f"{display}: column {c} has non-numeric values such as "
                               f"{str(col[bad].iloc[0])[:30]!r}; fix or remove those rows")
        out[c] = values.astype(float)
    return out


def _clean_label(label) -> str | None:
    if label is None or (isinstance(label, float) and math.isnan(label)):
        return None
    return normalize_emotion(label) or str(label)


def _labels(values: pd.Series, display: str, column: str) -> list[str | None]:
    """Emotion names from names/aliases or the study's codes 0..5; unknown values raise."""
    out: list[str | None] = []
    unknown: list[str] = []
    cache: dict[object, str | None] = {}
    for v in values:
        key = (type(v), v) if not (isinstance(v, float) and math.isnan(v)) else "nan"
        if key not in cache:
            cache[key] = _label_value(v)
            if cache[key] == "?":
                unknown.append(repr(v.item() if hasattr(v, "item") else v))
        out.append(cache[key])
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise AUTableError(f"{display}: unknown labels {shown} in column {column!r}; "
                           f"use emotion names ({', '.join(SIX_EMOTIONS)}) or the study's codes ({_CODES_HINT})")
    return out


def _label_value(v) -> str | None:
    """'?' marks an unknown value."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (bool, np.bool_)):
        return "?"
    if isinstance(v, (int, np.integer, float, np.floating)):
        return OPENFACE_STUDY_CODES.get(int(v), "?") if float(v).is_integer() else "?"
    text = str(v).strip()
    if not text:
        return None
    if re.fullmatch(r"[+-]?\d+(\.0*)?", text):
        return OPENFACE_STUDY_CODES.get(int(float(text)), "?")
    return normalize_emotion(text) or "?"


def _from_openface(frame: pd.DataFrame, display: str, file: str, label: str | None) -> pd.DataFrame:
    aus = _au_values(frame, display)
    if frame.empty:
        return failure_rows([(file, label)], NO_FACE)
    n = len(frame)
    if "success" in frame.columns:
        success = pd.to_numeric(frame["success"], errors="coerce").fillna(0).astype(int).clip(0, 1).to_numpy()
    else:
        success = np.ones(n, dtype=int)  # FaceLandmarkImg writes a row only for a detected face
    face_col = "face" if "face" in frame.columns else "face_id" if "face_id" in frame.columns else None
    faces = (pd.to_numeric(frame[face_col], errors="coerce").fillna(0).astype(int).to_numpy()
             if face_col else np.zeros(n, dtype=int))
    files = [file] * n
    if "frame" in frame.columns and frame["frame"].nunique() > 1:
        files = [f"{file}#{_frame_id(v)}" for v in frame["frame"]]
    conf = (pd.to_numeric(frame["confidence"], errors="coerce").to_numpy(dtype=float)
            if "confidence" in frame.columns else np.full(n, np.nan))
    aus.loc[success == 0, :] = np.nan  # OpenFace writes 0 for failed frames: not a measurement
    out = pd.DataFrame({"file": files, "face": faces, "label": [label] * n, "success": success,
                        "confidence": conf, "source": SOURCE,
                        "reason": np.where(success == 1, "", NO_FACE)})
    return _table(pd.concat([out.reset_index(drop=True), aus.reset_index(drop=True)], axis=1))


def _frame_id(v) -> str:
    try:
        f = float(v)
        return str(int(f)) if f.is_integer() else str(v)
    except (TypeError, ValueError):
        return str(v)


def _from_merged(frame: pd.DataFrame, display: str) -> pd.DataFrame:
    aus = _au_values(frame, display)
    n = len(frame)
    column = "label" if "label" in frame.columns else "emotion" if "emotion" in frame.columns else None
    labels = _labels(frame[column], display, column) if column else [None] * n
    complete = aus.notna().all(axis=1).to_numpy()
    base = Path(display).name
    files = (frame["file"].astype(str).to_numpy() if "file" in frame.columns
             else [f"{base}#{i}" for i in range(1, n + 1)])
    out = pd.DataFrame({"file": files, "face": 0, "label": labels,
                        "success": complete.astype(int), "confidence": np.nan, "source": SOURCE,
                        "reason": np.where(complete, "", "AU values missing in this row")})
    return _table(pd.concat([out, aus.reset_index(drop=True)], axis=1))


def _from_project(frame: pd.DataFrame, display: str) -> pd.DataFrame:
    aus = _au_values(frame, display)
    n = len(frame)
    out = pd.DataFrame({"file": frame["file"].astype(str).to_numpy()})
    out["face"] = (pd.to_numeric(frame["face"], errors="coerce").fillna(0).astype(int).to_numpy()
                   if "face" in frame.columns else 0)
    out["label"] = _labels(frame["label"], display, "label") if "label" in frame.columns else [None] * n
    out["success"] = (pd.to_numeric(frame["success"], errors="coerce").fillna(0).astype(int).to_numpy()
                      if "success" in frame.columns else aus.notna().all(axis=1).astype(int).to_numpy())
    out["confidence"] = (pd.to_numeric(frame["confidence"], errors="coerce").to_numpy(dtype=float)
                         if "confidence" in frame.columns else np.nan)
    out["source"] = frame["source"].fillna("").astype(str).to_numpy() if "source" in frame.columns else "csv"
    out["reason"] = frame["reason"].fillna("").astype(str).to_numpy() if "reason" in frame.columns else ""
    return _table(pd.concat([out, aus.reset_index(drop=True)], axis=1))


def _table(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reindex(columns=list(TABLE_COLUMNS))
    frame["face"] = frame["face"].astype(int)
    frame["success"] = frame["success"].astype(int)
    frame["confidence"] = frame["confidence"].astype(float)
    frame["label"] = frame["label"].astype(object).where(frame["label"].notna(), None)
    for c in AU_COLUMNS:
        frame[c] = frame[c].astype(float)
    return frame.reset_index(drop=True)


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if not p.empty]
    if not parts:
        return _table(pd.DataFrame(columns=list(TABLE_COLUMNS)))
    return _table(pd.concat(parts, ignore_index=True))


def _label_from_path(rel: Path) -> str | None:
    if len(rel.parts) > 1:
        label = normalize_emotion(rel.parent.name)
        if label:
            return label
    return emotion_from_filename(rel.stem)


# -- Docker backend ----------------------------------------------------------------------------
BIN_DIR = "/home/openface-build/build/bin"  # where the algebr/openface image keeps FaceLandmarkImg
OPENFACE_INPUT_SUFFIXES = (".jpg", ".jpeg", ".png")


def _default_docker_host() -> str:
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    return "npipe:////./pipe/docker_engine" if os.name == "nt" else "unix:///var/run/docker.sock"


class OpenFaceDocker:
    """Run OpenFace 2 ``FaceLandmarkImg`` in the ``algebr/openface`` image, as the original study did.

    The Docker client is created lazily with ``docker.from_env()`` (or injected, for tests), so
    importing this module or building commands never needs a Docker engine.
    """

    def __init__(self, client=None, image: str = "algebr/openface:latest", timeout_s: float = 600,
                 work_dir: str | os.PathLike[str] | None = None, poll_s: float = 1.0,
                 aus_only: bool = True):
        self._client = client
        self.image = image
        self.timeout_s = float(timeout_s)
        self.work_dir = Path(work_dir) if work_dir is not None else None
        self.poll_s = poll_s
        self.aus_only = aus_only

    # -- pure parts ---------------------------------------------------------------------------
    @staticmethod
    def build_command(input_dir: str = "input", output_dir: str = "processed",
                      aus_only: bool = True) -> list[str]:
        """The study's ``FaceLandmarkImg -fdir input -out_dir processed`` (run in ``BIN_DIR``).

        ``aus_only`` adds ``-aus``: OpenFace then writes only the AU CSV (no aligned faces, HOG or
        annotated images), which is all the table needs and far less to write.
        """
        command = ["./FaceLandmarkImg", "-fdir", input_dir, "-out_dir", output_dir]
        return command + ["-aus"] if aus_only else command

    @staticmethod
    def mounts(input_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str],
               input_name: str = "input", output_name: str = "processed") -> dict[str, dict[str, str]]:
        """``volumes=`` for ``containers.run``: host folders bound inside ``BIN_DIR``."""
        return {
            str(Path(input_dir).resolve()): {"bind": f"{BIN_DIR}/{input_name}", "mode": "ro"},
            str(Path(output_dir).resolve()): {"bind": f"{BIN_DIR}/{output_name}", "mode": "rw"},
        }

    @property
    def image_repo(self) -> str:
        """'algebr/openface:latest' -> 'algebr/openface' (for messages)."""
        repo, _, tag = self.image.rpartition(":")
        return repo if repo and "/" not in tag else self.image

    # -- engine -------------------------------------------------------------------------------
    def _engine_message(self, exc: BaseException) -> str:
        host = _default_docker_host()
        if "permission denied" in str(exc).lower():
            return (f"no permission to use the Docker engine at {host}: add your user to the docker "
                    f"group (`sudo usermod -aG docker $USER`, then log in again)")
        return f"Docker engine not reachable at {host}: start Docker Desktop / `sudo systemctl start docker`"

    def _image_message(self) -> str:
        return f"image {self.image_repo} not present: run `docker pull {self.image_repo}`"

    @property
    def client(self):
        """The Docker client, created on first use; raises DockerUnavailable without an engine."""
        if self._client is None:
            import docker

            try:
                self._client = docker.from_env()
            except docker.errors.DockerException as exc:
                raise DockerUnavailable(self._engine_message(exc)) from None
        return self._client

    def _check(self) -> None:
        import docker

        client = self.client
        try:
            client.ping()
        except docker.errors.DockerException as exc:
            raise DockerUnavailable(self._engine_message(exc)) from None
        except Exception as exc:  # requests' connection errors when the engine goes away
            raise DockerUnavailable(self._engine_message(exc)) from None
        try:
            client.images.get(self.image)
        except docker.errors.ImageNotFound:
            raise DockerUnavailable(self._image_message()) from None
        except docker.errors.DockerException as exc:
            raise DockerUnavailable(f"Docker cannot look up image {self.image}: {_one_line(exc)[:150]}; "
                                    f"check the engine with `docker info`") from None

    def status(self) -> tuple[bool, str]:
        """(ready, one-line message) — for the dashboard to show before offering this backend."""
        try:
            self._check()
        except DockerUnavailable as exc:
            return False, str(exc)
        return True, f"Docker engine reachable and image {self.image} present"

    def pull(self) -> None:
        """Download the image (about 2 GB); raises DockerUnavailable on failure."""
        import docker

        repo, _, tag = self.image.rpartition(":")
        if not repo or "/" in tag:
            repo, tag = self.image, "latest"
        try:
            self.client.images.pull(repo, tag=tag)
        except docker.errors.DockerException as exc:
            raise DockerUnavailable(f"could not pull {self.image}: {_one_line(exc)[:150]}; "
                                    f"check the network and run `docker pull {self.image}`") from None

    # -- extraction ---------------------------------------------------------------------------
    def extract(self, items: Sequence[LabeledImage], progress: Progress | None = None) -> pd.DataFrame:
        """AU table of images via OpenFace in Docker; one row per face, failures kept as rows.

        Images are copied (non JPEG/PNG converted to PNG) under unique safe names into a temp
        input folder; the container and temp folders are always removed, also on Ctrl-C.
        """
        import docker

        items = list(items)
        total = len(items)
        if not items:
            return _concat([])
        self._check()
        tmp = Path(tempfile.mkdtemp(prefix="fer-openface-", dir=self.work_dir))
        container = None
        try:
            in_dir, out_dir = tmp / "input", tmp / "processed"
            in_dir.mkdir()
            out_dir.mkdir()
            stems, failed = self._prepare(items, in_dir)
            if progress:
                progress(0, total)
            run_reason = ""
            if stems:
                try:
                    container = self.client.containers.run(
                        self.image, self.build_command(aus_only=self.aus_only),
                        volumes=self.mounts(in_dir, out_dir), detach=True, working_dir=BIN_DIR, remove=False)
                except docker.errors.ImageNotFound:
                    raise DockerUnavailable(self._image_message()) from None
                except docker.errors.DockerException as exc:
                    raise DockerUnavailable(f"Docker could not start {self.image}: {_one_line(exc)[:150]}; "
                                            f"check `docker info` and that {tmp.parent} may be shared with containers") from None
                run_reason = self._wait(container, out_dir, total, progress)
            rows = self._collect(items, stems, failed, out_dir, run_reason)
            if progress:
                progress(total, total)
            return rows
        finally:
            if container is not None:
                try:
                    container.remove(force=True)
                except Exception:  # already gone, or the engine went away: nothing left to do
                    pass
            shutil.rmtree(tmp, ignore_errors=True)

    def _prepare(self, items: list[LabeledImage], in_dir: Path) -> tuple[dict[int, str], dict[int, str]]:
        """Copy each readable image as ``<index>_<safe stem>.jpg|png``; reasons for the rest."""
        stems: dict[int, str] = {}
        failed: dict[int, str] = {}
        for i, it in enumerate(items):
            stem = f"{i:06d}_{re.sub(r'[^A-Za-z0-9_-]+', '_', Path(it.path).stem)[:40]}"
            try:
                rgb = load_image(it.path)  # also guards OpenFace, whose -fdir loop stops at an unreadable image
                suffix = Path(it.path).suffix.lower()
                if suffix in OPENFACE_INPUT_SUFFIXES:
                    shutil.copyfile(it.path, in_dir / f"{stem}{'.jpg' if suffix == '.jpeg' else suffix}")
                else:
                    from PIL import Image

                    Image.fromarray(rgb).save(in_dir / f"{stem}.png")
                stems[i] = stem
            except FerError as exc:
                failed[i] = _one_line(exc)
            except OSError as exc:
                failed[i] = f"{it.path}: cannot copy image for OpenFace ({exc.strerror or exc})"
        return stems, failed

    def _wait(self, container, out_dir: Path, total: int, progress: Progress | None) -> str:
        """Wait for the container with a deadline; '' on success, else the reason it failed."""
        import docker
        import requests

        deadline = time.monotonic() + self.timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                try:
                    container.kill()
                except Exception:
                    pass
                return f"OpenFace timed out after {self.timeout_s:g} s; raise the timeout or send fewer images"
            try:
                result = container.wait(timeout=max(0.01, min(self.poll_s, remaining)))
                break
            except (requests.exceptions.Timeout, requests.exceptions.ConnectionError):
                try:
                    container.reload()
                except docker.errors.DockerException:
                    return "lost the connection to the Docker engine while OpenFace ran; restart Docker and retry"
                if progress:
                    progress(min(total, sum(1 for _ in out_dir.glob("*.csv"))), total)
        code = int(result.get("StatusCode", -1)) if isinstance(result, dict) else int(result)
        if code == 0:
            return ""
        try:
            logs = container.logs(stdout=True, stderr=True, tail=20)
            text = logs.decode("utf-8", "replace") if isinstance(logs, bytes) else str(logs)
        except Exception:
            text = ""
        last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
        hint = " (killed: out of memory? give Docker more memory)" if code == 137 else ""
        return f"OpenFace exited with code {code}{hint}" + (f": {last[:200]}" if last else "")

    def _collect(self, items: list[LabeledImage], stems: dict[int, str], failed: dict[int, str],
                 out_dir: Path, run_reason: str) -> pd.DataFrame:
        parts = []
        for i, it in enumerate(items):
            file = str(it.path)
            if i in failed:
                parts.append(failure_rows([(file, it.label)], failed[i]))
                continue
            csv = out_dir / f"{stems[i]}.csv"
            if not csv.is_file():
                parts.append(failure_rows([(file, it.label)], run_reason or NO_FACE))
                continue
            try:
                parts.append(read_openface_csv(csv, name=file, label=it.label))
            except FerError as exc:
                reason = f"{Path(file).name}: OpenFace output unreadable ({_one_line(exc)[:150]})"
                parts.append(failure_rows([(file, it.label)], run_reason or reason))
        return _concat(parts)
