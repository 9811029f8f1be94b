"""Safe image loading and dataset folders (Kaggle layout or flat emotion-prefixed names)."""

from __future__ import annotations

import io
import os
import shutil
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .emotions import emotion_from_filename, normalize_emotion
from .errors import DatasetError, ImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# Decompression-bomb guard: larger images are refused before decoding (~ 8000 x 5000).
MAX_PIXELS = int(os.environ.get("FER_MAX_PIXELS", 40_000_000))
MAX_FILE_BYTES = int(os.environ.get("FER_MAX_FILE_BYTES", 50 * 1024 * 1024))



def load_image(source, name: str | None = None) -> np.ndarray:
    """Decode any supported input into an upright RGB uint8 array, or raise ImageError.

    Handles EXIF rotation, palette/RGBA/16-bit/gray modes and refuses decompression bombs.
    """
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "image")
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, label)
    if isinstance(source, Image.Image):
        return _pil_to_rgb(source, label)
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{label}: file not found")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ImageError(f"{label}: file is larger than {MAX_FILE_BYTES // 2**20} MB; resize it first")
        data = path.read_bytes()
    if not data:
        raise ImageError(f"{label}: file is empty")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{label}: file is larger than {MAX_FILE_BYTES // 2**20} MB; resize it first")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise ImageError(
                        f"{label}: image is {im.width}x{im.height} pixels, over the limit of "
                        f"{MAX_PIXELS:,}; resize it first")
                im.load()
                return _pil_to_rgb(im, label)
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{label}: not a readable image (use JPEG or PNG)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"{label}: image is corrupt or truncated ({exc.__class__.__name__}); re-export it") from None


def _pil_to_rgb(im: Image.Image, label: str) -> np.ndarray:
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        top = arr.max() if arr.max() > 0 else 1.0
        return _array_to_rgb((arr / top * 255).astype(np.uint8), label)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def _array_to_rgb(arr: np.ndarray, label: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.size == 0 or arr.ndim not in (2, 3):
        raise ImageError(f"{label}: not an image array (shape {arr.shape})")
    if arr.dtype != np.uint8:
        arr = np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    elif arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        alpha = arr[..., 3:4].astype(np.float32) / 255.0
        arr = (arr[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    elif arr.shape[2] != 3:
        raise ImageError(f"{label}: image has {arr.shape[2]} channels; use RGB or gray")
    return np.ascontiguousarray(arr)


@dataclass(frozen=True)
class LabeledImage:
    path: Path
    label: str | None

    @property
    def name(self) -> str:
        return self.path.name


def list_images(root: str | os.PathLike[str], classes: Sequence[str] | None = None) -> list[LabeledImage]:
    """Images of a dataset folder with their labels, sorted.

    Accepts the Kaggle layout ``root/<emotion>/*.jpg`` (aliases like ``anger`` allowed) and flat
    folders whose file names start with the emotion (``angry001.jpg``). Files whose emotion is not
    in ``classes`` are left out; unlabelled flat files get label None.
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: folder does not exist; set FER_DATA_DIR or pick another folder")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        raise DatasetError(f"{root}: cannot read folder ({exc.strerror})") from None
    items: list[LabeledImage] = []
    for entry in entries:
        if entry.is_dir():
            label = normalize_emotion(entry.name)
            if label is None:
                continue
            try:
                files = sorted(p for p in entry.iterdir() if _is_image_file(p))
            except OSError:
                continue
            items.extend(LabeledImage(p, label) for p in files)
        elif _is_image_file(entry):
            items.append(LabeledImage(entry, emotion_from_filename(entry.stem)))
    if classes is not None:
        wanted = set(classes)
        items = [it for it in items if it.label in wanted]
    return items


def _is_image_file(path: Path) -> bool:
    """An image by its name and a regular file (a named pipe or device would hang a reader)."""
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def relative_file(file: str | os.PathLike[str], root: str | os.PathLike[str] | None) -> str:
    """``file`` relative to the folder it was listed from, so written tables travel.

    Paths are compared as listed, not resolved: an emotion folder that is a symlink to
    elsewhere still gives ``happy/img.jpg``.
    """
    if root is None:
        return str(file)
    for a, b in ((Path(file), Path(root)), (Path(file).absolute(), Path(root).absolute())):
        try:
            return a.relative_to(b).as_posix()
        except ValueError:
            continue
    try:
        return Path(file).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(file)


def sample_per_class(items: Sequence[LabeledImage], per_class: int | None, seed: int = 0,
                     classes: Sequence[str] | None = None) -> list[LabeledImage]:
    """Up to ``per_class`` items of each label (of ``classes`` if given), drawn reproducibly with
    one seeded generator, kept in their listed order. All items when ``per_class`` is falsy."""
    if classes is not None:
        wanted = set(classes)
        items = [it for it in items if it.label in wanted]
    if not per_class:
        return list(items)
    rng = np.random.default_rng(seed)
    groups: dict[str | None, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(it.label, []).append(i)
    keep: list[int] = []
    for label in sorted(groups, key=lambda v: (v is None, v or "")):
        idx = groups[label]
        keep.extend(np.asarray(idx)[rng.choice(len(idx), size=min(per_class, len(idx)), replace=False)].tolist())
    return [items[i] for i in sorted(keep)]


def draw_test_set(source: str | os.PathLike[str], out: str | os.PathLike[str], per_class: int = 10,
                  classes: Sequence[str] | None = None, seed: int = 0) -> list[LabeledImage]:
    """Copy a reproducible sample of ``per_class`` images per emotion into ``out/<emotion>/``."""
    from .emotions import SIX_EMOTIONS

    classes = tuple(classes or SIX_EMOTIONS)
    items = list_images(source, classes)
    counts = class_counts(items)
    for emotion in classes:
        if counts.get(emotion, 0) < per_class:
            raise DatasetError(f"{source}: only {counts.get(emotion, 0)} {emotion} images, {per_class} needed")
    out = Path(out)
    chosen: list[LabeledImage] = []
    for it in sample_per_class(items, per_class, seed):
        dest = out / str(it.label) / it.path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(it.path, dest)
        chosen.append(LabeledImage(dest, it.label))
    return chosen


def class_counts(items: Iterable[LabeledImage]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for it in items:
        key = it.label or "unlabelled"
        counts[key] = counts.get(key, 0) + 1
    return counts


MAX_ZIP_FILES = 50_000
MAX_ZIP_BYTES = 1 << 30


def unpack_image_zip(data: bytes, dest: Path) -> Path:
    """Unpack the images of an uploaded zip into ``dest`` and return the dataset root inside it.

    Only image files are written, with names checked (no absolute paths, no ``..``), and the
    unpacked size is capped, so a hostile zip cannot write elsewhere or fill the disk. A single
    wrapping folder (``fer2013/…``) is stepped into.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise DatasetError("the upload is not a zip file; zip a folder with emotion subfolders") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()
                   and Path(m.filename).suffix.lower() in IMAGE_SUFFIXES
                   and not any(part.startswith(("__MACOSX", ".")) for part in Path(m.filename).parts)]
        if not members:
            raise DatasetError("the zip holds no images; zip a folder with <emotion>/*.jpg subfolders or emotion-prefixed files (angry001.jpg)")
        if len(members) > MAX_ZIP_FILES or sum(m.file_size for m in members) > MAX_ZIP_BYTES:
            raise DatasetError(f"the zip is too large to unpack (over {MAX_ZIP_FILES:,} images or 1 GB); "
                               "point the explorer at the folder instead")
        dest = dest.resolve()
        for m in members:
            target = (dest / m.filename).resolve()
            if dest not in target.parents:
                raise DatasetError(f"the zip contains an unsafe path {m.filename!r}; re-create it from a folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(m) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise DatasetError(f"the zip is damaged ({exc.__class__.__name__}); re-create it") from None
    root = dest
    while True:
        subdirs = [p for p in root.iterdir() if p.is_dir()]
        files = [p for p in root.iterdir() if p.is_file()]
        if len(subdirs) == 1 and not files and normalize_emotion(subdirs[0].name) is None:
            root = subdirs[0]
        else:
            return root
