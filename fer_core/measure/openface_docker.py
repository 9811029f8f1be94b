"""OpenFace 2 in Docker: run ``FaceLandmarkImg`` in the ``algebr/openface`` image, as the original
study did, and read its CSVs with ``openface_csv``.

The Docker engine is the one part of the workbench that tests cannot run for real here: command
building, mounts and CSV collection are plain functions, and the engine is reached only through
an injectable client.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from .. import au_table
from ..errors import DockerUnavailable, FerError, one_line, printable
from ..images import LabeledImage, SkippedFile, load_image, relative_file
from .openface_csv import NO_FACE, failure_rows, read_openface_csv

Progress = Callable[[int, int], None]
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

    def __init__(self, client=None, image: str = "algebr/openface:latest", timeout_s: float | None = None,
                 work_dir: str | os.PathLike[str] | None = None, poll_s: float = 1.0,
                 aus_only: bool = True):
        self._client = client
        self.image = image
        self.timeout_s = None if timeout_s is None else float(timeout_s)  # None: by the batch (limit_for)
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

    def limit_for(self, images: int) -> float:
        """The run's time limit: the one given, else 5 minutes plus 2 s an image (OpenFace reads
        an image in well under a second; a whole split must not time out at a fixed 10 minutes)."""
        return self.timeout_s if self.timeout_s is not None else 300.0 + 2.0 * images

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
                    f"group with: sudo usermod -aG docker $USER (then log in again)")
        return f"Docker engine not reachable at {host}: start Docker Desktop, or run: sudo systemctl start docker"

    def _image_message(self) -> str:
        return f"image {self.image_repo} not present; pull it with: docker pull {self.image_repo}"

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
            raise DockerUnavailable(f"Docker cannot look up image {self.image}: {one_line(exc)[:150]}; "
                                    f"check the engine with docker info") from None

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
            raise DockerUnavailable(f"could not pull {self.image}: {one_line(exc)[:150]}; "
                                    f"check the network and run docker pull {self.image}") from None

    # -- extraction ---------------------------------------------------------------------------
    def extract(self, items: Sequence[LabeledImage], progress: Progress | None = None, *,
                root: str | os.PathLike[str] | None = None, skipped: Sequence[SkippedFile] = ()) -> pd.DataFrame:
        """AU table of images via OpenFace in Docker; one row per face, failures kept as rows.

        Images are copied (non JPEG/PNG converted to PNG) under unique safe names into a temp
        input folder; the container and temp folders are always removed, also on Ctrl-C.
        ``root``: file names relative to it, as the MediaPipe engines write them; ``skipped``: the
        listing's files that were not images to send, one OpenFace failure row each.
        """
        table = self._extract(list(items), progress)
        if root is not None:
            table["file"] = [printable(relative_file(f, root)) for f in table["file"]]
        table = au_table.concat([table, *(failure_rows([(s.file, s.label)], s.reason) for s in skipped)])
        from .extract import file_order_key  # the local engine's row order: skipped files among the rest

        keys = [file_order_key(str(f)) for f in table["file"]]
        return au_table.normalise(table.iloc[sorted(range(len(keys)), key=keys.__getitem__)])

    def _extract(self, items: list[LabeledImage], progress: Progress | None) -> pd.DataFrame:
        import docker
        import requests

        total = len(items)
        if not items:
            return au_table.concat([])
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
                try:  # created, kept, then started: a start that fails leaves no container behind
                    container = self.client.containers.create(
                        self.image, self.build_command(aus_only=self.aus_only),
                        volumes=self.mounts(in_dir, out_dir), working_dir=BIN_DIR)
                    container.start()
                except docker.errors.ImageNotFound:
                    raise DockerUnavailable(self._image_message()) from None
                except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
                    raise DockerUnavailable(f"Docker could not start {self.image}: {one_line(exc)[:150]}; "
                                            f"check docker info and that {tmp.parent} may be shared with containers") from None
                run_reason = self._wait(container, out_dir, total, progress, self.limit_for(len(stems)))
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
            except FerError as exc:  # the row names the file: its reason is said as the local engine's is
                failed[i] = one_line(str(exc).removeprefix(f"{it.path}: "))  # before one_line folds its spaces
            except OSError as exc:
                failed[i] = f"cannot copy image for OpenFace ({exc.strerror or exc})"
        return stems, failed

    def _wait(self, container, out_dir: Path, total: int, progress: Progress | None, limit_s: float) -> str:
        """Wait for the container with a deadline; '' on success, else the reason it failed (the
        CSVs written so far are kept by the caller)."""
        import docker
        import requests

        deadline = time.monotonic() + limit_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                try:
                    container.kill()
                except Exception:
                    pass
                return f"OpenFace timed out after {limit_s:g} s; send fewer images at a time"
            try:
                result = container.wait(timeout=max(0.01, min(self.poll_s, remaining)))
                break
            except (requests.exceptions.Timeout, requests.exceptions.ConnectionError):
                try:
                    container.reload()
                except (docker.errors.DockerException, requests.exceptions.RequestException):
                    # the engine went away (docker-py raises requests' errors then): keep what is done
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
        if stems and not run_reason and not any(out_dir.glob("*.csv")):
            # a clean exit and not one CSV: likelier the folder never reached the container (Docker
            # Desktop file sharing, a remote engine) than no face in any image
            run_reason = (f"OpenFace wrote no CSV at all: no face in any image, or its output did not reach this "
                          f"machine; check that Docker may share {out_dir.parent.parent} with containers")
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
                reason = f"{Path(file).name}: OpenFace output unreadable ({one_line(exc)[:150]})"
                parts.append(failure_rows([(file, it.label)], run_reason or reason))
        return au_table.concat(parts)
