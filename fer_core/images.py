"""Safe image loading and dataset folders (Kaggle layout or flat emotion-prefixed names)."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import shutil
import stat
import warnings
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from .config import datasets_dir
from .emotions import classes_given, emotion_from_filename, normalize_emotion, unmodelled_emotion
from .errors import DatasetError, ImageError, printable
from .safe_files import read_regular_file


def _pillow_decodes(feature: str) -> bool:
    """Whether the installed Pillow was built to decode this format (AVIF: Pillow 11.2+ with
    libavif); an older Pillow that does not know the name does not decode it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Unknown feature" from a Pillow that predates it
        return bool(features.check(feature))


# Formats read only where the installed Pillow decodes them; elsewhere they are listed as skipped.
_OPTIONAL_SUFFIXES = {".avif": ("avif", "AVIF is not supported")}
_DECODED = {suffix for suffix, (feature, _) in _OPTIONAL_SUFFIXES.items() if _pillow_decodes(feature)}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", *sorted(_DECODED))
# Image formats people keep beside their photos that this workbench cannot decode: listed as
# skipped (with what to do) rather than passed over without a word.
UNSUPPORTED_SUFFIXES = {".svg": "SVG is a vector drawing", ".svgz": "SVG is a vector drawing",
                        ".heic": "HEIC is not supported", ".heif": "HEIF is not supported",
                        ".jxl": "JPEG XL is not supported",
                        ".cr2": "camera raw files are not supported", ".nef": "camera raw files are not supported",
                        ".dng": "camera raw files are not supported", ".psd": "Photoshop files are not supported",
                        **{suffix: why for suffix, (_, why) in _OPTIONAL_SUFFIXES.items() if suffix not in _DECODED}}
# Videos are measured on their own (``measure.video``), never as one of a folder's images.
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".mov", ".avi", ".webm")
VIDEO_IN_FOLDER = "a video, not read with the images; extract measures videos, frame by frame"
# ... as tables written before 2026-12 say it (still a video passed over when read)
VIDEO_IN_FOLDER_BEFORE = "a video, not read with the images; extract it on its own"
# Video formats people record in that this workbench does not decode: said, not dropped unsaid.
OTHER_VIDEO_SUFFIXES: tuple[str, ...] = (".mkv", ".m4v", ".mts", ".m2ts", ".3gp", ".wmv", ".flv", ".mpg", ".mpeg")
OTHER_VIDEO = "a video of a format not read here; convert it to MP4 (MP4, MOV, AVI and WebM are read)"
# Decompression-bomb guard: larger images are refused before decoding (~ 8000 x 5000).
MAX_PIXELS = int(os.environ.get("FER_MAX_PIXELS", 40_000_000))
MAX_FILE_BYTES = int(os.environ.get("FER_MAX_FILE_BYTES", 50 * 1024 * 1024))
# MediaPipe aborts the whole process (an OpenCV assertion) on any image side >= 32,767 px, and a
# strip far longer than it is wide holds no face to measure: both are refused before decoding.
MAX_SIDE = 20_000
MAX_ASPECT = 12.0
# Photos are decoded at most this large on their long side (JPEG decodes scaled down directly), so
# a 40-megapixel upload costs tens of MB, not a gigabyte; face analysis shrinks them further.
MAX_DECODE_SIDE = 4096


def _limit(name: str, default: float) -> float:
    """A size limit, read at call time so a test or a user can move it (FER_MAX_SIDE, ...)."""
    try:
        return float(os.environ.get(f"FER_{name}", default))
    except ValueError:
        return default



def decode_settings() -> str:
    """The image limits moved from their defaults (``FER_MAX_DECODE_SIDE``, ``FER_MAX_SIDE``,
    ``FER_MAX_ASPECT``, ``FER_MAX_PIXELS``), as text; "" with the defaults. They decide what a file decodes to, or
    whether it is refused, so cached measurements are kept apart by them."""
    limits = (("MAX_DECODE_SIDE", MAX_DECODE_SIDE), ("MAX_SIDE", MAX_SIDE), ("MAX_ASPECT", MAX_ASPECT))
    moved = [f"{name}={_limit(name, default):g}" for name, default in limits if _limit(name, default) != default]
    if "FER_MAX_PIXELS" in os.environ:  # set at all changes the JPEG rule too (_pixel_limit)
        moved.append(f"MAX_PIXELS={MAX_PIXELS}")
    return ",".join(moved)


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
    elif not isinstance(source, (str, os.PathLike)):  # None, a list: no image a script meant to give
        raise ImageError(f"{type(source).__name__} is no image: give a path, bytes, a PIL image or an array")
    else:
        data = read_regular_file(source, MAX_FILE_BYTES, "give a JPEG or PNG image file", what="image file",
                                 error=ImageError, label=label)
    if not data:
        raise ImageError(f"{label}: file is empty")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{label}: file is larger than {MAX_FILE_BYTES // 2**20} MB; resize it first")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                # multi-page TIFF, animated GIF/WebP: the first page is the image, where Pillow opens them;
                # never ask for ``n_frames``: a GIF's is counted by walking every frame (millions in 50 MB)
                _check_size(im.width, im.height, label, _pixel_limit(im.format))
                decode_side = _draft(im)
                im.load()
                if max(im.size) > decode_side:
                    im = im.copy()
                    im.thumbnail((decode_side, decode_side), Image.Resampling.LANCZOS)
                return _pil_to_rgb(im, label)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard, before ``_check_size`` could read the size: still a size problem
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,}" if found else "too many"
        # the limit that holds for this file: ours where it is below Pillow's (every format but JPEG)
        fmt = "JPEG" if data[:3] == b"\xff\xd8\xff" else None  # how Pillow tells a JPEG (and MPO)
        limit = min(_pixel_limit(fmt), Image.MAX_IMAGE_PIXELS or MAX_PIXELS)
        raise ImageError(f"{label}: image has {size} pixels, over the limit of {limit:,}; resize it first") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not a readable image (use JPEG or PNG)") from None
    except Exception as exc:  # any decoder's failure on damaged bytes (TIFF: TypeError, ...)
        raise ImageError(f"{label}: image is corrupt or truncated ({exc.__class__.__name__}); re-export it") from None


def _pixel_limit(fmt: str | None) -> int:
    """How many pixels an image of Pillow's format ``fmt`` may have. A large JPEG is decoded at 1/2,
    1/4 or 1/8 of its size (``draft``), so one up to Pillow's own bomb limit (89 MP: a 48-64 MP
    phone photo) costs no more than a 40 MP image (MPO: a JPEG with more pictures after it, as
    phones write); other formats are decoded whole."""
    if fmt in ("JPEG", "MPO") and Image.MAX_IMAGE_PIXELS and "FER_MAX_PIXELS" not in os.environ:
        return max(MAX_PIXELS, int(Image.MAX_IMAGE_PIXELS))
    return MAX_PIXELS  # a limit the user set holds for every format


def _check_size(width: int, height: int, label: str, max_pixels: int | None = None) -> None:
    """Refuse, before decoding, images too large to decode safely or of a shape with no face."""
    max_side, max_aspect = _limit("MAX_SIDE", MAX_SIDE), _limit("MAX_ASPECT", MAX_ASPECT)
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    if width * height > max_pixels:
        raise ImageError(f"{label}: image is {width}x{height} pixels, over the limit of {max_pixels:,}; resize it first")
    if max(width, height) > max_side:
        raise ImageError(f"{label}: image is {width}x{height} pixels; sides over {max_side:,.0f} px are not "
                         "accepted, resize it first")
    if min(width, height) < 1 or max(width, height) / min(width, height) > max_aspect:
        raise ImageError(f"{label}: image is {width}x{height} pixels, more than {max_aspect:g} times longer "
                         "than wide; crop it around the face")


def _draft(im: Image.Image) -> int:
    """Ask a large JPEG's decoder for 1/2, 1/4 or 1/8 of its size, keeping at least half the side
    ``load_image`` keeps (other formats decode whole); that side, which the image is then cut to."""
    decode_side = int(_limit("MAX_DECODE_SIDE", MAX_DECODE_SIDE))
    if max(im.size) > decode_side:
        im.draft("RGB", _fit(im.size, decode_side // 2))
    return decode_side


def file_pixel_scale(path: str | os.PathLike[str]) -> float:
    """The file's pixels per pixel of the image ``load_image`` measures (1.0 up to
    ``MAX_DECODE_SIDE``), read from the header alone: what turns a face's box back into the
    file's own pixels. 1.0 where the header cannot be read (the image then failed anyway)."""
    try:
        with Image.open(path) as im:
            side = max(im.size)
            decode_side = _draft(im)  # sets the size the decoder would give, decoding nothing
            return side / min(max(im.size), decode_side)
    except Exception:  # any header Pillow cannot read
        return 1.0


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    scale = side / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _upright(im: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says. Pillow rewrites the EXIF block as it turns,
    and fails on a slightly malformed one (struct.error) whose orientation tag reads fine: then
    the tag alone is applied, and an unreadable tag leaves the image as it is."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # a damaged EXIF block must not cost the picture
        try:
            orientation = im.getexif().get(0x0112)
        except Exception:
            return im
        method = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                  4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
                  7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}.get(orientation)
        return im.transpose(method) if method is not None else im


def shown_size(source: bytes | str | os.PathLike[str]) -> tuple[int, int] | None:
    """(width, height) of an image file as it is shown (EXIF orientation applied), from its
    header: ``load_image`` decodes a large photo smaller (``MAX_DECODE_SIDE``; a JPEG at 1/2 to
    1/8), and boxes given back in the file's own pixels are scaled by it. None where the header
    cannot be read."""
    try:
        with Image.open(io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray)) else source) as im:
            width, height = im.size
            turned = im.getexif().get(0x0112) in (5, 6, 7, 8)  # a quarter turn: sides swap
    except Exception:  # any decoder's failure: the caller keeps the decoded size
        return None
    return (height, width) if turned else (width, height)


CROP_ASPECT = 1.25  # a picture this close to square may be a face crop (AffectNet's are square)


def looks_like_face_crop(path: str | os.PathLike[str]) -> bool:
    """Whether an image file looks like a face crop larger than FER2013's: square or nearly
    (``CROP_ASPECT``), ``SMALL_IMAGE_SIDE`` px or more. The search for faces in a photo misses
    some faces that fill the picture, which face-crop mode (``--crops``, Face crops) measures: what
    a "no face found" of such a picture is told. Reads the header only (an EXIF turn changes
    neither the larger side nor the aspect); False where it cannot be read."""
    try:
        with Image.open(path) as im:
            width, height = im.size
            if getattr(im, "is_animated", False):  # its first frame was measured: --crops is not the advice
                return False
    except Exception:  # any decoder's failure: not read, so nothing to advise
        return False
    return crop_shaped(width, height)


FIRST_FRAME_ONLY = ("an animated or multi-page image is read as its first frame only; save the frame to measure "
                    "as an image of its own")


def has_more_frames(source: str | os.PathLike[str] | bytes) -> bool:
    """Whether an image file (a path, or an upload's bytes) holds more frames or pages than the
    first, which alone is read (animated GIF and WebP, multi-page TIFF): its header and second
    frame's start, never every frame (``load_image``). False where it cannot be read."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as im:
            return bool(getattr(im, "is_animated", False))
    except Exception:
        return False


def crop_shaped(width: int, height: int) -> bool:
    """``looks_like_face_crop`` of a picture's size: square or nearly, ``SMALL_IMAGE_SIDE`` px or more."""
    from .pipeline import SMALL_IMAGE_SIDE

    return min(width, height) > 0 and max(width, height) >= SMALL_IMAGE_SIDE and \
        max(width, height) / min(width, height) <= CROP_ASPECT


def _pil_to_rgb(im: Image.Image, label: str) -> np.ndarray:
    im = _upright(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        # 16 bits per pixel: 0..65535 by the format, so a dim photo stays as dim as its 8-bit twin
        return _array_to_rgb(np.round(np.asarray(im, dtype=np.float64) / 257.0).astype(np.uint8), label)
    if im.mode in ("I", "F"):
        return _array_to_rgb(_scale_to_bytes(np.asarray(im, dtype=np.float64)), label)
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def _array_to_rgb(arr: np.ndarray, label: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.size == 0 or arr.ndim not in (2, 3):
        raise ImageError(f"{label}: not an image array (shape {arr.shape})")
    _check_size(arr.shape[1], arr.shape[0], label)
    if arr.dtype != np.uint8:
        arr = _scale_to_bytes(arr.astype(np.float64))
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


def _scale_to_bytes(arr: np.ndarray) -> np.ndarray:
    """Float or 32-bit pixels (16-bit files are scaled by their format, ``_pil_to_rgb``) to 0-255,
    by one stated rule: values within 0-1 are taken as fractions, values within 0-255 as they are,
    larger ones are scaled by their maximum, and images with negative values are stretched from
    their minimum to their maximum; NaN and infinities count as 0."""
    arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if lo < 0:
        arr = (arr - lo) / ((hi - lo) or 1.0) * 255.0
    elif hi <= 1.0:
        arr = arr * 255.0
    elif hi > 255:
        arr = arr / hi * 255.0
    return np.clip(np.round(arr), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class LabeledImage:
    path: Path
    label: str | None

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class ImageListing:
    """The images of a folder, and the files in it that look like images but cannot be read,
    each with the reason ("happy/x.svg: SVG is a vector drawing; ...")."""

    items: list[LabeledImage]
    skipped: list[SkippedFile]

    @property
    def skipped_lines(self) -> list[str]:
        return [f"{s.file}: {s.reason}" for s in self.skipped]


@dataclass(frozen=True)
class SkippedFile:
    file: str  # relative to the folder listed, printable
    label: str | None
    reason: str
    path: Path | None = field(default=None, compare=False, repr=False)  # where it is (a video is measured apart)


def list_images(root: str | os.PathLike[str], classes: Sequence[str] | None = None) -> list[LabeledImage]:
    """Images of a dataset folder with their labels, sorted (``scan_images`` also says which
    files were passed over and why)."""
    return scan_images(root, classes).items


def scan_images(root: str | os.PathLike[str], classes: Sequence[str] | None = None,
                every_folder: bool = False) -> ImageListing:
    """Images of a dataset folder with their labels, sorted, and the image-like files skipped.

    Accepts the Kaggle layout ``root/<emotion>/*.jpg`` (aliases like ``anger`` allowed) and flat
    folders whose file names start with the emotion (``angry001.jpg``). Files whose emotion is not
    in ``classes`` are left out; unlabelled flat files get label None. Only regular files are
    taken: a named pipe or a link to a device would hang a reader, a symlink loop has no end.
    Metadata files (``is_hidden_name``) are passed over unsaid; an image whose name starts with a
    dot is listed as skipped, said, as hidden (a file manager does not show it). The order is the sorted one whatever
    order the file system lists in, so a seed draws the same images from a copy on another disk.
    ``every_folder``: every image in the folder and in the folders under it, unlabelled, whatever
    the folders are named (a labels file of a study's own labels them, ``relabel``: its photos sit
    in a folder per participant or session).
    """
    root = Path(root)
    if not root.exists():
        try:
            resolved = root.resolve()
        except (RuntimeError, OSError):  # a link that leads back to itself has no end to resolve
            raise DatasetError(f"{root}: symbolic link loop; fix or remove the link") from None
        if resolved.is_relative_to(datasets_dir().resolve()):  # a default folder: the datasets are elsewhere
            raise DatasetError(f"{root}: folder does not exist; set FER_DATA_DIR or pick another folder")
        raise DatasetError(f"{root}: folder does not exist")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        raise DatasetError(f"{root}: cannot read folder ({exc.strerror})") from None
    items: list[LabeledImage] = []
    skipped: list[str] = []
    # read as --classes is: "Happy" is happy, "hapy" a one-line error, not an empty listing
    wanted = None if classes is None else set(classes_given(classes)) if len(classes) else set()

    def take(path: Path, label: str | None) -> None:
        if (wanted is not None and label not in wanted) or is_hidden_name(path.name):
            return
        reason = _skip_reason(path)
        if reason is None and path.name.startswith("."):
            reason = HIDDEN_IMAGE
        if reason is None:
            items.append(LabeledImage(path, label))
        elif reason:
            skipped.append(SkippedFile(printable(relative_file(path, root)), label, reason, path))

    def passed_over(folder: Path, reason: str, label: str | None) -> None:
        """A folder this layout does not read: said when it holds images, which would be lost unsaid
        (a hidden one, .git or .thumbnails, is no one's dataset)."""
        if not folder.name.startswith(".") and _images_inside(folder):
            if reason == NOT_EMOTION_FOLDER and not _images_inside(folder, frozenset(IMAGE_SUFFIXES)):
                reason = NOT_EMOTION_FOLDER_OF_VIDEOS  # a participant's videos: renaming is no advice
            skipped.append(SkippedFile(printable(relative_file(folder, root)) + "/", label, reason))

    if every_folder:
        def unreadable(exc: OSError) -> None:
            skipped.append(SkippedFile(printable(relative_file(exc.filename, root)) + "/", None,
                                       f"cannot read folder ({exc.strerror})"))

        # top down in name order; a linked folder is followed once (a link back up would have no end)
        visited: set[tuple[int, int]] = set()
        for folder, folders, files in os.walk(root, onerror=unreadable, followlinks=True):
            try:
                seen = os.stat(folder)
            except OSError:
                folders[:] = []
                continue
            if (seen.st_dev, seen.st_ino) in visited:
                folders[:] = []
                continue
            visited.add((seen.st_dev, seen.st_ino))
            folders[:] = sorted(f for f in folders if not is_hidden_name(f) and not f.startswith("."))
            for name in sorted(files):
                take(Path(folder) / name, None)
        return ImageListing(items, skipped)
    for entry in entries:
        if is_hidden_name(entry.name):
            continue
        if _is_folder(entry):
            label = normalize_emotion(entry.name)
            if label is None and entry.suffix.lower() in IMAGE_SUFFIXES:  # a folder named like an image is said
                take(entry, emotion_from_filename(entry.stem))
                continue
            if label is None:
                passed_over(entry, UNMODELLED_EMOTION_FOLDER if unmodelled_emotion(entry.name) else NOT_EMOTION_FOLDER,
                            None)
                continue
            try:
                files = sorted(entry.iterdir())
            except OSError as exc:
                skipped.append(SkippedFile(printable(entry.name) + "/", label, f"cannot read folder ({exc.strerror})"))
                continue
            for path in files:
                if (_is_folder(path) and path.suffix.lower() not in IMAGE_SUFFIXES and not is_hidden_name(path.name)
                        and (wanted is None or label in wanted)):
                    passed_over(path, NESTED_FOLDER, label)
                else:
                    take(path, label)
        else:
            take(entry, emotion_from_filename(entry.stem))
    return ImageListing(items, skipped)


NOT_EMOTION_FOLDER = ("a folder not named after an emotion, whose images are not read; rename it (angry, sad, ...) "
                      "or move them up")
NOT_EMOTION_FOLDER_OF_VIDEOS = ("a folder not named after an emotion, whose videos are not read; measure it on its own "
                                "(extract that folder --fps 10), or move each video into the folder of its emotion")
# CK+ and AffectNet label contempt; renaming that folder to another emotion would mislabel its faces.
UNMODELLED_EMOTION_FOLDER = ("an emotion no model of this workbench learns (they learn at most angry, disgust, fear, "
                             "happy, neutral, sad and surprise), whose images are not read")
NESTED_FOLDER = "a folder inside an emotion's folder, whose images are not read; move them up into the emotion's folder"


_MEDIA_SUFFIXES = frozenset(IMAGE_SUFFIXES + VIDEO_SUFFIXES + OTHER_VIDEO_SUFFIXES)


def _images_inside(folder: Path, suffixes: frozenset[str] = _MEDIA_SUFFIXES) -> bool:
    """Whether an image or video file (one of ``suffixes``) lies anywhere under ``folder`` (links
    to folders not followed): a folder of a participant's videos was passed over without a word."""
    for _dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if any(os.path.splitext(name)[1].lower() in suffixes for name in filenames if not is_hidden_name(name)):
            return True
    return False


def videos_inside(folder: str | os.PathLike[str]) -> bool:
    """Whether a video this workbench reads lies anywhere under ``folder``."""
    return _images_inside(Path(folder), frozenset(VIDEO_SUFFIXES))


HIDDEN_IMAGE = "a hidden file (its name starts with a dot); rename it to measure it"

# The reason an extraction's row gives (without the file's name) for a file read but not decoded as
# an image (``load_image``): empty, damaged, not an image, too large.
UNDECODED_REASON = re.compile(r"(file is empty|image is |image has |not a readable image|file is larger than"
                              r"|[\d.,]+ [KMGT]?B is larger than)")  # the last: "51 MB is larger than an image file can be"
# How the reason of a file that could not be listed or opened begins (gone, a link loop, a folder, a
# pipe): the file may be back, or readable, by the next run.
UNOPENED_REASONS = ("cannot read", "cannot be read", "file not found", "symbolic link loop", "a folder",
                    "not a regular file")
CONVERT_ADVICE = "convert it to PNG or JPEG"  # how the reason of a format not read ends
# ... and for any file it could not read as an image, those, the undecoded and the listing's other
# skips (hidden, a format not read): no face that was looked for and not found.
UNREAD_REASON = re.compile(UNDECODED_REASON.pattern + "|(" + "|".join(map(re.escape, (*UNOPENED_REASONS, "a hidden file")))
                           + ")|.*" + re.escape(CONVERT_ADVICE) + "$")


def is_hidden_name(name: str) -> bool:
    """The metadata file systems and macOS leave among photos, never a dataset's images: macOS
    writes a ``._name.jpg`` copy beside each file it puts on a network share or a FAT drive (listed
    as an image, it became a failure row, or a drawn test image that is none, on that disk only),
    ``.DS_Store`` files and ``__MACOSX`` folders in zips. Other dot files are a researcher's own:
    an image among them is said as skipped, not dropped unsaid."""
    return name.startswith(("._", "__MACOSX")) or name in (".DS_Store", ".Spotlight-V100", ".Trashes", ".fseventsd")


def _is_folder(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.stat().st_mode)
    except OSError:
        return False


def _skip_reason(path: Path) -> str | None:
    """None for a readable image file; "" for a file that is no image at all (not reported);
    else why this image-like file is passed over."""
    suffix = path.suffix.lower()
    if suffix in UNSUPPORTED_SUFFIXES:
        return f"{UNSUPPORTED_SUFFIXES[suffix]}; {CONVERT_ADVICE}"
    if suffix in VIDEO_SUFFIXES:
        return VIDEO_IN_FOLDER
    if suffix in OTHER_VIDEO_SUFFIXES:
        return OTHER_VIDEO
    if suffix not in IMAGE_SUFFIXES:
        return ""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop; fix or remove the link"
        return f"cannot read ({exc.strerror or 'broken link'})"
    if not stat.S_ISREG(mode):
        return "a folder" if stat.S_ISDIR(mode) else "not a regular file (a pipe, device or socket)"
    return None


# Digests of the files of training folders, by (path, size, modification time): FER2013's 28,709
# training images take about 2 s to hash, once per process. Each folder's files by size are kept
# while its folders' modification times stand (listing them: 0.03 s; stating every file: 0.18 s).
_DIGESTS: dict[tuple[str, int, int], bytes] = {}
_SIZES: dict[str, tuple[tuple, dict[int, list[tuple[str, int]]]]] = {}


def _digest(path: str, size: int, mtime_ns: int, keep: bool = True) -> bytes | None:
    """``keep``: remember it (a training folder's files, asked again by the next comparison); a
    test image's (an upload's temporary file) is not kept."""
    import hashlib

    key = (path, size, mtime_ns)
    if key in _DIGESTS:
        return _DIGESTS[key]
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).digest()
    except OSError:
        return None
    if keep:
        _DIGESTS[key] = digest
    return digest


def file_digest(path: str | os.PathLike[str]) -> bytes | None:
    """The SHA-256 of a file's bytes (kept by path, size and modification time), None when unreadable."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _digest(os.fspath(path), st.st_size, st.st_mtime_ns)


def copies_in(folder: str | os.PathLike[str], paths: Sequence[str | os.PathLike[str]]) -> list[bool]:
    """Which of ``paths`` are byte-for-byte copies of an image file anywhere in ``folder``.

    FER2013 repeats images across its splits (280 of val's 3,589 are files of train), so a network
    trained on train and scored on val is partly scored on what it learned. Only files of the same
    size are hashed; a folder that cannot be read has no copies. Its listing is kept while its
    folders' modification times stand: a training image overwritten in place, keeping its name,
    is read as it was until a file is added or removed there (or the process restarts)."""
    listing = []
    seen: set[str] = set()
    for dirpath, dirs, names in os.walk(folder, followlinks=True):  # emotion folders linked in, as listed
        real = os.path.realpath(dirpath)
        if real in seen:  # a link back up the tree: walked once
            dirs[:] = []
            continue
        seen.add(real)
        with contextlib.suppress(OSError):
            listing.append((dirpath, os.stat(dirpath).st_mtime_ns, names))
    stamp = tuple((d, m) for d, m, _ in listing)
    cached = _SIZES.get(os.fspath(folder))
    if cached is not None and cached[0] == stamp:
        by_size = cached[1]
    else:
        by_size = {}
        for dirpath, _mtime, names in listing:
            for name in names:
                if not name.lower().endswith(IMAGE_SUFFIXES):
                    continue
                full = os.path.join(dirpath, name)
                try:
                    st = os.stat(full)
                except OSError:
                    continue
                by_size.setdefault(st.st_size, []).append((full, st.st_mtime_ns))
        _SIZES[os.fspath(folder)] = (stamp, by_size)
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(False)
            continue
        same_size = by_size.get(st.st_size, [])
        mine = _digest(os.fspath(path), st.st_size, st.st_mtime_ns, keep=False) if same_size else None
        out.append(mine is not None and any(_digest(f, st.st_size, m) == mine for f, m in same_size))
    return out


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


def sample_as_drawn(items: Sequence[LabeledImage], classes: Sequence[str], per_class: int | None,
                    seed: int = 0) -> list[LabeledImage]:
    """``per_class`` images of each of ``classes`` as ``draw_test_set`` draws them from the same folder
    (the same seeded generator over the same emotions: its copy holds these files, so a command can
    reproduce the sample), and as many of every other label, drawn apart so that they do not change
    that draw (a fear folder drawn from the same generator first gave another set); in the listing's
    order. All items when ``per_class`` is falsy."""
    drawn = {id(it) for it in sample_per_class(items, per_class, seed=seed, classes=classes)
             + sample_per_class([it for it in items if it.label not in classes], per_class, seed=seed)}
    return [it for it in items if id(it) in drawn]


def draw_test_set(source: str | os.PathLike[str], out: str | os.PathLike[str], per_class: int = 10,
                  classes: Sequence[str] | None = None, seed: int = 0,
                  unlike: Sequence[str | os.PathLike[str]] = ()) -> list[LabeledImage]:
    """Copy a reproducible sample of ``per_class`` images per emotion into ``out/<emotion>/``;
    ``unlike``: folders (a training split) whose files' byte-for-byte copies are not drawn."""
    from .emotions import SIX_EMOTIONS

    classes = tuple(classes or SIX_EMOTIONS)
    items = list_images(source, classes)
    for folder in unlike:
        items = [it for it, copy in zip(items, copies_in(folder, [it.path for it in items])) if not copy]
    counts = class_counts(items)
    for emotion in classes:
        if counts.get(emotion, 0) < per_class:
            unlike_text = f" not copies of files in {', '.join(map(printable, map(str, unlike)))}" if unlike else ""
            raise DatasetError(f"{source}: only {counts.get(emotion, 0)} {emotion} images{unlike_text}, "
                               f"{per_class} needed")
    out = Path(out)
    chosen: list[LabeledImage] = []
    taken: set[Path] = set()
    for it in sample_per_class(items, per_class, seed):
        dest = _unused_name(out / str(it.label), it.path, taken)
        taken.add(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(it.path, dest)
        chosen.append(LabeledImage(dest, it.label))
    return chosen


def _unused_name(folder: Path, source: Path, taken: set[Path]) -> Path:
    """``folder/<source's name>``, unless an image drawn before took it (``happy/img0.png`` and
    ``happiness/img0.png``, or a loose ``happy001.jpg`` beside ``happy/happy001.jpg``): then the name
    after its source folder's, then numbered. A drawn image never replaces another."""
    for name in (source.name, f"{source.parent.name}_{source.name}"):
        if folder / name not in taken:
            return folder / name
    n = 2
    while (dest := folder / f"{source.parent.name}_{source.stem}_{n}{source.suffix}") in taken:
        n += 1
    return dest


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
    return unpack_zip(data, dest, (*IMAGE_SUFFIXES, *UNSUPPORTED_SUFFIXES),  # those listed as skipped, with why
                      "the zip holds no images; zip a folder with <emotion>/*.jpg subfolders or emotion-prefixed "
                      "files (angry001.jpg)",
                      f"the zip is too large to unpack (over {MAX_ZIP_FILES:,} images or 1 GB); point the explorer "
                      "at the folder instead")


_UTF8_FLAG = 0x800  # a zip member's name is UTF-8 (general purpose bit 11)


def zip_member_name(member: zipfile.ZipInfo) -> str:
    """A member's name as its zip's maker wrote it. Without the UTF-8 flag Python reads the bytes
    as code page 437, the format's old default; but Linux's ``zip`` writes UTF-8 without the flag,
    and Korean Windows CP949: a Korean lab's ``행복/`` folder arrived as ``φûëδ│╡/`` (an emotion
    folder refused) and ``😀`` as ``≡ƒÿÇ``. UTF-8 is tried first, then CP949 where every non-ASCII
    byte pair is a Hangul syllable, else code page 437 as before (a Western Windows zip)."""
    if member.flag_bits & _UTF8_FLAG:
        return member.filename
    try:
        raw = member.filename.encode("cp437")
    except UnicodeEncodeError:
        return member.filename
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if _korean_syllables_only(raw):
        return raw.decode("cp949")
    return member.filename


def _korean_syllables_only(raw: bytes) -> bool:
    """Whether every non-ASCII byte of a name pairs into KS X 1001's two-byte region (lead and
    trail 0xA1-0xFE: its Hangul syllables, jamo such as ㅋ, the middle dot, full-width digits), as
    Korean Windows writes ``행복``, with at least one Hangul syllable. CP949's extended range also
    decodes a Western name's accents before a letter (cp437 ``Schäfer`` read as ``Sch꼎er``)."""
    i, korean = 0, False
    while i < len(raw):
        if raw[i] < 0x80:
            i += 1
            continue
        if not (0xA1 <= raw[i] <= 0xFE and i + 1 < len(raw) and 0xA1 <= raw[i + 1] <= 0xFE):
            return False
        korean = korean or 0xB0 <= raw[i] <= 0xC8
        i += 2
    return korean


def unpack_zip(data: bytes, dest: Path, suffixes: Iterable[str], none_found: str, too_large: str) -> Path:
    """``unpack_image_zip`` for the files of any of ``suffixes`` (an OpenFace ``-out_dir``'s CSVs),
    with the messages for a zip without them and one too large."""
    wanted = {s.lower() for s in suffixes}
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise DatasetError("the upload is not a zip file; zip a folder with emotion subfolders") from None
    with archive:
        for m in archive.infolist():
            m.filename = zip_member_name(m)
        members = [m for m in archive.infolist() if not m.is_dir()
                   and Path(m.filename).suffix.lower() in wanted
                   # metadata (is_hidden_name) and any other dot path (``..`` climbs out) stay packed
                   and not any(part.startswith(".") or is_hidden_name(part) for part in Path(m.filename).parts)]
        if not members:
            raise DatasetError(none_found)
        if len(members) > MAX_ZIP_FILES or sum(m.file_size for m in members) > MAX_ZIP_BYTES:
            raise DatasetError(too_large)
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


def thumbnail(source, side: int = 96, name: str | None = None) -> np.ndarray:
    """An image scaled so its longest side is ``side`` (48 px FER crops are enlarged, crisply);
    ``name``: how an error names it (``load_image``)."""
    im = Image.fromarray(load_image(source, name=name))
    scale = side / max(im.size)
    method = Image.NEAREST if scale > 1 else Image.LANCZOS
    return np.asarray(im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), method))


def png_data_uri(rgb: np.ndarray) -> str:
    """An image as a ``data:image/png;base64,…`` address: inline in reports and table cells."""
    import base64
    import io

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# -- labels of one's own ---------------------------------------------------------------------------
MAX_LABELS_BYTES = 200 << 20  # a labels CSV: a file name and a label a row
LABELS_HINT = "give a CSV with a file column (names relative to the image folder, or bare names) and a label column"
# the first of these a labels CSV has names its images (any other: --file-column); a stimulus sheet
# often heads it Stimulus or Picture
FILE_COLUMNS = ("file", "filename", "file_name", "image", "path", "filepath", "file_path", "image_file", "image_name",
                "img", "stimulus", "stimuli", "stim", "picture", "photo")
BLANK_LABEL = "(blank)"


@dataclass
class LabelFile:
    """What a labels CSV (``--labels``) said of a folder's images: the labels a study's raters gave,
    scored instead of the folder's or the file names' emotions."""

    path: str
    column: str
    sha256: str
    labelled: int = 0
    no_row: int = 0  # images of the folder the file gives no row for: left out
    not_emotions: dict[str, int] = field(default_factory=dict)  # labels naming no emotion: left out, counted
    rows_without_image: list[str] = field(default_factory=list)  # rows naming no image of the folder
    # each image left out, with why ("P01/a.jpg: no row in sheet.csv"), for the left-out table
    left_out_lines: list[str] = field(default_factory=list, repr=False)
    # Cohen's kappa between every two of the sheet's columns of emotions (raters', the majority's),
    # on the images of the folder both label: the agreement a model's kappa is read against
    rater_agreement: list = field(default_factory=list)
    file_column: str = ""  # the column that names the images
    # per column asked for (``group_columns``: the poser's sex, age band), each image's value as written
    groups: dict[str, dict[Path, str]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        return {"file": self.path, "column": self.column, "file_column": self.file_column, "sha256": self.sha256,
                "labelled": self.labelled,
                "no_row": self.no_row, "not_emotions": dict(self.not_emotions),
                "rows_without_image": list(self.rows_without_image),
                "rater_agreement": [r.to_dict() for r in self.rater_agreement], "group_columns": list(self.groups)}

    def lines(self) -> list[str]:
        """Which labels were scored, then what was left out, one line each, for stderr."""
        out = [f"scored against {self.column} of {printable(self.path)}: {self.labelled:,} image(s) labelled"]
        if self.rater_agreement:
            shown = "; ".join(f"{printable(r.a)} - {printable(r.b)} "
                              f"{'undefined' if r.kappa is None else f'{r.kappa:.3f}'} (n {r.n:,})"
                              for r in self.rater_agreement[:10])
            more = f"; and {len(self.rater_agreement) - 10:,} more pairs (the JSON)" if len(self.rater_agreement) > 10 else ""
            out.append(f"the sheet's own agreement, Cohen's kappa: {shown}{more}")
        if self.not_emotions:
            out.append(f"left out {sum(self.not_emotions.values()):,} image(s) whose {self.column} names no emotion: "
                       + ", ".join(f"{label} {n:,}" for label, n in self.not_emotions.items()))
        if self.no_row:
            out.append(f"left out {self.no_row:,} image(s) of the folder that {printable(self.path)} gives no row")
        if self.rows_without_image:
            shown = ", ".join(printable(f) for f in self.rows_without_image[:3])
            more = f" and {len(self.rows_without_image) - 3:,} more" if len(self.rows_without_image) > 3 else ""
            out.append(f"{len(self.rows_without_image):,} row(s) of {printable(self.path)} name no image of the "
                       f"folder: {shown}{more}")
        return out


def by_name_key(item: LabeledImage, root: str | os.PathLike[str]) -> str:
    """An image's name relative to ``root`` with '/' between folders, as a labels file gives it."""
    return str(relative_file(item.path, root)).replace(os.sep, "/")


def _rater_agreement(header: list[str], rows: list[list[str]], file_at: int, image_of: Callable) -> list:
    """``LabelFile.rater_agreement``: the columns at least half of whose filled cells name an
    emotion are raters' (or the majority's), read for the folder's images only."""
    from .evaluation.metrics import rater_agreement

    of_images, seen = [], set()
    for row in rows:  # a row pasted twice counts once, as it labels once
        it = image_of(row[file_at].strip()) if file_at < len(row) and any(c.strip() for c in row) else None
        if it is not None and it.path not in seen:
            seen.add(it.path)
            of_images.append(row)
    columns: dict[str, list[str | None]] = {}
    for j, name in enumerate(header):
        if j == file_at or not name:
            continue
        cells = [row[j].strip() if j < len(row) else "" for row in of_images]
        emotions = [normalize_emotion(c) if c else None for c in cells]
        filled = sum(1 for c in cells if c)
        if filled and sum(e is not None for e in emotions) * 2 >= filled:
            columns[name] = emotions
    return rater_agreement(columns) if len(columns) > 1 else []


def csv_delimiter(header: str) -> str:
    """The cell separator of a labels CSV, from its header line: a spreadsheet saved in a locale
    whose decimal mark is the comma writes ';' (or tabs); the comma where none is there, or on a tie."""
    return max((",", ";", "\t"), key=header.count)


def relabel(items: Sequence[LabeledImage], labels: str | os.PathLike[str], root: str | os.PathLike[str],
            column: str | None = None, data: bytes | None = None,
            file_column: str | None = None, group_columns: Sequence[str] = ()) -> tuple[list[LabeledImage], LabelFile]:
    """The folder's images labelled by a CSV of one's own (``file``, and ``label``/``emotion`` or
    ``column``: a rater's, the majority's), so a study scores its raters' labels without renaming a
    file or making emotion folders. A row's file is the image's name relative to ``root`` or, where
    that is unique in the folder, its bare name. Images without a row, and rows whose label names
    no emotion (blank, contempt), are left out and counted; two rows for one image are refused.
    ``data``: the file's bytes where they came another way (an upload), ``labels`` naming it;
    ``file_column``: the column of file names where it is none of ``FILE_COLUMNS``;
    ``group_columns``: columns whose values each image's group is (``LabelFile.groups``)."""
    import csv
    import hashlib

    from .errors import AUTableError

    if data is None:
        data = read_regular_file(labels, MAX_LABELS_BYTES, LABELS_HINT, "labels file", AUTableError)
    elif len(data) > MAX_LABELS_BYTES:
        raise AUTableError(f"{printable(str(labels))}: larger than a labels file can be ({MAX_LABELS_BYTES >> 20} MB); "
                           f"{LABELS_HINT}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AUTableError(f"{printable(str(labels))}: not UTF-8 text; save it as UTF-8 (in Excel: Save As, "
                           f"CSV UTF-8) and {LABELS_HINT}") from None
    reader = csv.reader(io.StringIO(text), delimiter=csv_delimiter(text.partition("\n")[0]))
    try:
        rows = list(reader)
    except csv.Error as exc:  # a quote never closed runs to the end of the file
        raise AUTableError(f"{printable(str(labels))}: not a readable CSV near line {reader.line_num:,} ({exc}); "
                           f"check its quotes, and {LABELS_HINT}") from None
    header = [h.strip() for h in (rows[0] if rows else [])]
    lower = [h.lower() for h in header]

    def column_at(name: str) -> int | None:
        """The header's column ``name``: as written, else the one column it names whatever the case
        and spaces (the README's --label-column majority for a sheet's Majority)."""
        if name in header:
            return header.index(name)
        loose = [i for i, h in enumerate(lower) if h == name.strip().lower()]
        return loose[0] if len(loose) == 1 else None

    if column is not None:
        label_at = column_at(column)
    else:
        label_at = next((lower.index(c) for c in ("label", "emotion") if c in lower), None)
    if file_column is not None:
        file_at = column_at(file_column)
    else:
        file_at = next((lower.index(c) for c in FILE_COLUMNS if c in lower), None)
    lacking = ([f"{file_column!r} column" if file_column is not None else
                f"file column ({', '.join(FILE_COLUMNS[:5])}, stimulus, …; or name it: --file-column)"]
               if file_at is None else []) + (
        [] if label_at is not None else [f"{column!r} column"] if column is not None
        else ["label (or emotion) column, and no column of labels was named (--label-column)"])
    if not lacking and label_at == file_at:
        raise AUTableError(f"{printable(str(labels))}: {printable(header[file_at])} names the images; the labels "
                           f"are another column (its columns: {printable(', '.join(header))})")
    if lacking:
        has = ", ".join(header) or "none"
        raise AUTableError(f"{printable(str(labels))}: has no {' and no '.join(lacking)} (its columns: "
                           f"{printable(has)}); {LABELS_HINT}")
    by_name = {by_name_key(it, root): it for it in items}
    by_base: dict[str, list[LabeledImage]] = {}
    by_name_folded: dict[str, list[LabeledImage]] = {}  # a sheet typed by hand: P01/IMG1.JPG for P01/img1.jpg
    by_base_folded: dict[str, list[LabeledImage]] = {}
    by_stem_folded: dict[str, list[LabeledImage]] = {}  # a sheet naming stimuli without their extension
    for it in items:
        by_base.setdefault(it.path.name, []).append(it)
        by_base_folded.setdefault(it.path.name.casefold(), []).append(it)
        by_name_folded.setdefault(by_name_key(it, root).casefold(), []).append(it)
        for stem in {by_name_key(it, root).removesuffix(it.path.suffix).casefold(), it.path.stem.casefold()}:
            by_stem_folded.setdefault(stem, []).append(it)

    def image_of(name: str) -> LabeledImage | None:
        """The image a row names: its path relative to the folder, or one ending a path from
        elsewhere (C:/lab/stim/P01/a.jpg), as written and then whatever the case; a bare name
        where one image of the folder has it."""
        path = name.replace("\\", "/").removeprefix("./")
        parts = path.split("/")
        tails = ["/".join(parts[i:]) for i in range(len(parts))]  # the path, then its shorter endings
        for tail in tails:
            if tail in by_name:
                return by_name[tail]
        bare = (by_base.get(path, ()), by_base_folded.get(path.casefold(), ())) if len(parts) == 1 else ()
        stems = ((by_stem_folded.get(path.casefold(), ()),) if not Path(parts[-1]).suffix else ())
        for found in (*(by_name_folded.get(tail.casefold(), ()) for tail in tails), *bare, *stems):
            if len(found) == 1:
                return found[0]
        return None

    group_at = {}
    for name in group_columns:
        at = column_at(name)
        if at is None:
            raise AUTableError(f"{printable(str(labels))}: has no {name!r} column to group by (its columns: "
                               f"{printable(', '.join(header))})")
        if at in (file_at, label_at):
            raise AUTableError(f"{printable(str(labels))}: {printable(header[at])} "
                               f"{'names the images' if at == file_at else 'holds the labels'}; group by another column")
        group_at[header[at]] = at
    record = LabelFile(str(labels), header[label_at], hashlib.sha256(data).hexdigest(), file_column=header[file_at],
                       groups={name: {} for name in group_at})
    given: dict[Path, str] = {}
    for row in rows[1:]:
        if not any(cell.strip() for cell in row):
            continue
        name = row[file_at].strip() if file_at < len(row) else ""
        label = row[label_at].strip() if label_at < len(row) else ""
        it = image_of(name)
        if it is None:
            if len(by_base.get(name, ())) > 1:
                raise AUTableError(f"{printable(str(labels))}: {printable(name)} names {len(by_base[name])} images "
                                   "of the folder; give its path relative to the folder")
            record.rows_without_image.append(name)
            continue
        if it.path in given and given[it.path] != label and (
                normalize_emotion(given[it.path]) is None or normalize_emotion(given[it.path]) != normalize_emotion(label)):
            raise AUTableError(f"{printable(str(labels))}: {printable(name)} is given two rows, labelled "
                               f"{printable(given[it.path] or BLANK_LABEL)} and {printable(label or BLANK_LABEL)}; "
                               "give each image one")
        given[it.path] = label  # the same row twice (a copy pasted twice) labels it once
        for group, at in group_at.items():
            record.groups[group][it.path] = row[at].strip() if at < len(row) else ""
    record.rater_agreement = _rater_agreement(header, rows[1:], file_at, image_of)
    out = []
    for it in items:
        if it.path not in given:
            record.no_row += 1
            record.left_out_lines.append(f"{printable(by_name_key(it, root))}: no row in {printable(Path(labels).name)}")
            continue
        emotion = normalize_emotion(given[it.path]) if given[it.path] else None
        if emotion is None:
            key = given[it.path] or BLANK_LABEL
            record.not_emotions[key] = record.not_emotions.get(key, 0) + 1
            record.left_out_lines.append(f"{printable(by_name_key(it, root))}: {printable(record.column)} "
                                         f"{printable(key)}, which names no emotion")
            continue
        out.append(LabeledImage(it.path, emotion))
    record.labelled = len(out)
    return out, record
