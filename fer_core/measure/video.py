"""Videos -> AU table: one row per sampled frame and face, with the frame's time (``time_s``).

Frames are decoded with PyAV as a stream (never a list of frames) and sampled at ``fps`` by their
presentation time, not their index, so a variable-frame-rate phone video is sampled evenly. Each
sampled frame is limited like a photo (``images`` size limits; measured at most
``VIDEO_MAX_SIDE`` px on its long side) and measured by the one face -> AU route
(``FaceAnalyzer``, ``measure.extract.measurement_of``), with MediaPipe's landmarker in its VIDEO
running mode so faces are tracked from frame to frame.

The video is cut into chunks of at most ``CHUNK_FRAMES`` sampled frames; each chunk is decoded
and measured in a crash-isolated worker process (``workers.shared_pool``) with a fresh tracker
(timestamps must increase). A native crash or a timeout costs that chunk's frames, reported as a
failure row carrying the chunk's start time; a frame without a face is a failure row with its
``time_s``. Memory stays flat however long the video: one decoded frame at a time per worker,
and rows of numbers in the caller.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import au_table
from ..errors import FerError, ImageError, one_line, printable
from ..images import MAX_DECODE_SIDE, _check_size, _fit
from .extract import measurement_of, measurements_of, rows_for_image
from .workers import WorkerFailure, shared_pool

VIDEO_TYPES: tuple[str, ...] = ("mp4", "mov", "avi", "webm")
DEFAULT_FPS = 10.0
MAX_FPS = 60.0
# Faces in a video fill much of the frame; 720p keeps them large and measures 1080p in half the time.
VIDEO_MAX_SIDE = min(1280, MAX_DECODE_SIDE)
# A chunk is at most this many sampled frames (and at most CHUNK_MAX_S seconds): what a crash can
# cost, and the unit of progress, cancel and parallel workers.
CHUNK_FRAMES = 120
CHUNK_MAX_S = 60.0
MAX_VIDEO_BYTES = int(os.environ.get("FER_MAX_VIDEO_BYTES", 4 << 30))
SOURCE = "mediapipe-video"
_EPS = 1e-6

Progress = Callable[[int, int], None]
ShouldStop = Callable[[], bool]


class VideoError(FerError):
    """A video that cannot be read (not a video, no video stream, corrupt, too large)."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds, read from its container before decoding."""

    duration_s: float
    fps: float  # the stream's average frame rate (0 when unknown)
    width: int
    height: int
    codec: str
    stream_duration_s: float | None = None  # the video stream's own length, when its header gives one


def _open(path: str | os.PathLike[str], label: str):
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{label}: not a file; give a video file (MP4, MOV, AVI or WebM)")
    if path.stat().st_size > MAX_VIDEO_BYTES:
        raise VideoError(f"{label}: file is larger than {MAX_VIDEO_BYTES >> 30} GB; cut the video first")
    if path.stat().st_size == 0:
        raise VideoError(f"{label}: file is empty")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise VideoError(f"{label}: not a readable video ({one_line(exc, 80)}); use MP4, MOV, AVI or WebM") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{label}: holds no video stream; use MP4, MOV, AVI or WebM")
    return container


def _check_frame(width: int, height: int, label: str) -> None:
    """A photo's size limits (``images``), applied to each frame."""
    try:
        _check_size(width, height, label)
    except ImageError as exc:
        raise VideoError(str(exc).replace(": image is", ": frames are", 1)) from None


def _check_fps(fps: float | None) -> None:
    if fps is not None and not (0 < fps <= MAX_FPS):
        raise VideoError(f"--fps must be above 0 and at most {MAX_FPS:g}")


def probe_video(path: str | os.PathLike[str], label: str | None = None) -> VideoInfo:
    """Duration, frame rate, size and codec; raises ``VideoError`` in one line. Where the
    container does not say how long the video is, its packets are read (not decoded) to find out."""
    import av

    label = label or printable(os.fsdecode(path))
    container = _open(path, label)
    try:
        stream = container.streams.video[0]
        width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
        _check_frame(width or 1, height or 1, label)
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        own = float(stream.duration * stream.time_base) if stream.duration is not None and stream.time_base else None
        if own is not None:
            duration = own
        elif container.duration:
            duration = container.duration / 1_000_000
        else:
            duration = 0.0
            for packet in container.demux(stream):
                if packet.pts is not None and packet.time_base:
                    duration = max(duration, float((packet.pts + (packet.duration or 0)) * packet.time_base))
        return VideoInfo(duration, fps, width, height, stream.codec_context.name or "", own)
    except av.FFmpegError as exc:
        raise VideoError(f"{label}: video is corrupt ({one_line(exc, 80)})") from None
    finally:
        container.close()


def sampled_frames(path: str | os.PathLike[str], fps: float | None = DEFAULT_FPS, start_s: float = 0.0,
                   end_s: float | None = None, max_side: int = VIDEO_MAX_SIDE,
                   label: str | None = None, seen: dict | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """(time in seconds, RGB uint8 frame) of the frames sampled at ``fps`` between ``start_s``
    and ``end_s``, decoded one at a time. A frame is taken when its presentation time reaches the
    next point of the grid k / fps; so sampling does not depend on where a chunk starts.
    ``fps`` None: every frame. ``seen`` (a dict) gets ``"until"``, where the last frame decoded
    ends (sampled or not), and ``"reached_end"``, whether a frame reached ``end_s``."""
    import av

    label = label or printable(os.fsdecode(path))
    _check_fps(fps)
    container = _open(path, label)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if start_s > 0:
            container.seek(int(start_s / stream.time_base), stream=stream, backward=True)
        next_t = math.ceil(start_s * fps - _EPS) / fps if fps else start_s
        fallback_t = 0.0
        step = 1 / float(stream.average_rate or fps or 25)  # a frame's length when it does not say
        for frame in container.decode(stream):
            t = float(frame.time) if frame.time is not None else fallback_t
            fallback_t = t + step
            if end_s is not None and t >= end_s - _EPS:
                if seen is not None:
                    seen["reached_end"] = True
                break
            if seen is not None:
                lasts = float(frame.duration * stream.time_base) if frame.duration and stream.time_base else 0.0
                seen["until"] = t + (lasts or step)
            if t < next_t - _EPS:
                continue
            if fps:
                next_t = (math.floor(t * fps + _EPS) + 1) / fps
            _check_frame(frame.width, frame.height, f"{label} at {t:.2f} s")
            w, h = (frame.width, frame.height)
            if max(w, h) > max_side:
                w, h = _fit((w, h), max_side)
            yield round(t, 3), _upright(frame.to_ndarray(format="rgb24", width=w, height=h), frame)
    except av.FFmpegError as exc:
        raise VideoError(f"{label}: video is corrupt ({one_line(exc, 80)})") from None
    finally:
        container.close()


def _upright(rgb: np.ndarray, frame) -> np.ndarray:
    """A frame as it is shown: phones store portrait video sideways with a display rotation
    (degrees counter-clockwise), which players apply and photos get from EXIF."""
    turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def frame_at(path: str | os.PathLike[str], time_s: float, max_side: int = VIDEO_MAX_SIDE) -> tuple[float, np.ndarray]:
    """The first frame at or after ``time_s`` (the one a table row of that time was measured on)."""
    for t, rgb in sampled_frames(path, None, max(0.0, time_s - 1e-3), None, max_side):
        return t, rgb
    raise VideoError(f"no frame at {time_s:.2f} s; the video is shorter")


def chunks_of(duration_s: float, fps: float) -> list[tuple[float, float | None]]:
    """(start, end) of each chunk; the last one runs to the end of the video (end None)."""
    length = max(1.0 / fps, min(CHUNK_MAX_S, CHUNK_FRAMES / fps))
    n = max(1, math.ceil(duration_s / length - _EPS))
    return [(i * length, (i + 1) * length if i < n - 1 else None) for i in range(n)]


# -- the worker side -------------------------------------------------------------------------------
_analyzer = None


def _init_worker() -> None:
    global _analyzer
    from .landmarker import shared_analyzer

    _analyzer = shared_analyzer()


def _measure_chunk(arg: tuple[str, float, float | None, float, float | None]) -> list[tuple[float, list[dict] | str]]:
    """Worker task: (time, measurements as cached or the reason the frame failed) of each frame
    of one chunk, tracked by a landmarker of its own (timestamps restart with each chunk).
    ``length``: the video stream's own length from its header (None when it gives none), to
    notice frames that never came."""
    path, start, end, fps, length = arg
    tracker = _analyzer.video_landmarker()
    out: list[tuple[float, list[dict] | str]] = []
    seen: dict = {}
    try:
        for t, rgb in sampled_frames(path, fps, start, end, seen=seen):
            try:
                faces = _analyzer.detect_video_frame(tracker, rgb, round(t * 1000))
                out.append((t, [measurement_of(f).to_cache() for f in faces]))
            except FerError as exc:
                out.append((t, one_line(exc)))
    except VideoError as exc:  # decoding broke off: one row where it did, saying what is missing
        out.append(_gap_row(out, start, end, fps, one_line(exc)))
    else:  # the decoder may also stop quietly at a cut-off file: frames missing, no error
        until = seen.get("until", start)
        expected = end if end is not None else length  # a chunk that reached its end is whole
        if not seen.get("reached_end") and expected is not None and expected - until > max(2 / fps, 1.0):
            why = (f"the video ends at {until:.2f} s of its {length:.2f} s (cut short?)" if end is None
                   else "frames are missing")
            out.append(_gap_row(out, start, end, fps, why))
    finally:
        tracker.close()
    return out


def _gap_row(out: list, start: float, end: float | None, fps: float, why: str) -> tuple[float, str]:
    """The row for the frames a chunk did not get, after the last one it measured."""
    at = out[-1][0] + 0.5 / fps if out else start  # between sampled frames: no frame's time
    until = f"{end:.2f} s" if end is not None else "the end"
    return at, f"{why}; no frames from {at:.2f} s to {until}"


# -- the caller's side -----------------------------------------------------------------------------
def rows_for_frame(file: str, time_s: float, measured, label: str | None = None) -> list[dict]:
    """Table rows of one frame: ``rows_for_image`` with its time and the video source."""
    return [{**r, "time_s": time_s, "source": SOURCE} for r in rows_for_image(file, label, measured)]


def extract_video(path: str | os.PathLike[str], fps: float = DEFAULT_FPS, workers: int = 1,
                  name: str | None = None, label: str | None = None, progress: Progress | None = None,
                  should_stop: ShouldStop | None = None) -> pd.DataFrame:
    """AU table of a video: a row per sampled frame and face (``time_s``), ordered by time; a
    frame without a face, and every frame of a chunk whose worker crashed, as failure rows.
    ``name`` is the ``file`` of every row (default: the path). Cancelling returns the chunks
    finished so far."""
    file = printable(name or os.fsdecode(path))
    info = probe_video(path, file)
    _check_fps(fps or 0.0)  # every frame (None) is for frame_at, not for a table
    chunks = chunks_of(info.duration_s, fps)
    pool = shared_pool("video", max(1, workers), _measure_chunk, _init_worker,
                       crash_message="the face detector crashed on this part of the video")
    parts: list[pd.DataFrame] = []
    done = 0
    if progress:
        progress(0, len(chunks))
    with pool.lock:
        results = pool.imap_unordered([(os.fspath(path), s, e, fps, info.stream_duration_s) for s, e in chunks])
        try:
            for index, result in results:
                rows: list[dict] = []
                if isinstance(result, WorkerFailure):
                    start, end = chunks[index]
                    until = f"{end:.1f} s" if end is not None else "the end"
                    rows = rows_for_frame(file, round(start, 3), f"{result} (frames from {start:.1f} s to {until})",
                                          label)
                else:
                    for t, measured in result:
                        rows.extend(rows_for_frame(file, t, measurements_of(measured), label))
                parts.append(au_table.from_rows(rows))
                done += 1
                if progress:
                    progress(done, len(chunks))
                if should_stop and should_stop():
                    break
        finally:
            results.close()
    table = au_table.concat(parts)
    return table.sort_values(["time_s", "face"], kind="stable").reset_index(drop=True)


def is_video(name: str | os.PathLike[str]) -> bool:
    return Path(os.fsdecode(name)).suffix.lower().lstrip(".") in VIDEO_TYPES


def emotion_over_time(table: pd.DataFrame, predictor) -> pd.DataFrame:
    """Per sampled frame: ``time_s`` and the AU model's probability of each emotion (its class
    names as columns) for the frame's first face; empty where no face was measured."""
    from ..predictors.base import FaceInput

    if getattr(predictor, "inputs", "") != "aus":
        raise FerError(f"{predictor.name}: reads pixels, not AUs; pick an AU model for the emotion over time")
    frames = table[table["face"] == 0].reset_index(drop=True)
    measured = (frames["success"] == 1).to_numpy()
    proba = np.full((len(frames), len(predictor.classes)), np.nan)
    aus = frames.loc[measured, list(au_table.AU_COLUMNS)].to_numpy(dtype=float)
    if len(aus):
        proba[measured] = np.asarray(predictor.predict_proba([FaceInput(aus=v) for v in aus]), dtype=float)
    out = pd.DataFrame(proba, columns=list(predictor.classes))
    out.insert(0, "time_s", frames["time_s"].to_numpy())
    return out
