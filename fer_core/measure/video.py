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
failure row carrying the chunk's start time; a frame without a face (or any error of one frame)
is a failure row with its ``time_s``. Packets are decoded one at a time, so a damaged stretch
costs its own frames: a row says which stretch has none, as does a row after the last frame of
a file cut short (compared with where the video stream should end, not the container's longest
stream), and after a frame that says it lasts far past the video's end (a damaged header: the
frames after it never come). Memory stays flat however long the video: one decoded frame at a
time per worker, and rows of numbers in the caller.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from .. import au_table
from ..errors import FerError, ImageError, one_line, printable
from ..images import MAX_DECODE_SIDE, VIDEO_IN_FOLDER, VIDEO_SUFFIXES, SkippedFile, _check_size, _fit, _limit
from .extract import MeasureCache, cache_version, measurement_of, measurements_of, rows_for_image
from .tasks import worker_settings
from .workers import TIMEOUT_ADVICE, WorkerFailure, shared_pool

VIDEO_TYPES: tuple[str, ...] = tuple(suffix[1:] for suffix in VIDEO_SUFFIXES)
DEFAULT_FPS = 10.0
MAX_FPS = 60.0
# Faces in a video fill much of the frame; 720p keeps them large and measures 1080p in half the time.
VIDEO_MAX_SIDE = min(1280, MAX_DECODE_SIDE)
# A chunk is at most this many sampled frames (and at most CHUNK_MAX_S seconds): what a crash can
# cost, and the unit of progress, cancel and parallel workers.
CHUNK_FRAMES = 120
CHUNK_MAX_S = 60.0
MAX_VIDEO_BYTES = int(os.environ.get("FER_MAX_VIDEO_BYTES", 4 << 30))
# Longest video measured (FER_MAX_VIDEO_HOURS): a damaged header can claim centuries (one byte of an
# AVI's rate field), which would be planned as hundreds of millions of chunks before a frame is read.
MAX_VIDEO_HOURS = 24.0
# Packets in a row that fail to decode before a chunk gives up on the rest of itself: a damaged
# stretch is skipped, a file of garbage is not read to its end packet by packet.
MAX_BAD_PACKETS = 50
# A file whose last packet (of any stream) ends this much before the end its header gives was cut off.
CUT_SLACK_S = 0.5
# Frames decoded after a failed packet within which the frames it cost show up as a hole in the
# frame times (decoder threads and B-frame reordering delay them); none by then: the decoder hid it.
FRAMES_AFTER_ERROR = 100
SOURCE = au_table.VIDEO_SOURCE
# How rows of frames that never came say so (``frame_rows`` tells them from sampled frames).
GAP_MARK = "; no frames from "
SKIPPED_MARK = " (frames from "
VIDEO_TIMEOUT_ADVICE = "measure fewer frames per second or cut the video"
_EPS = 1e-6
_ATTACHED_PIC = 0x0400  # AV_DISPOSITION_ATTACHED_PIC: an audio file's cover art, not a video

Progress = Callable[[int, int], None]
ShouldStop = Callable[[], bool]


class VideoError(FerError):
    """A video that cannot be read (not a video, no video stream, corrupt, too large)."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds, read from its container before decoding."""

    duration_s: float  # the video stream's length (not the container's: audio may run longer)
    fps: float  # the stream's average frame rate (0 when unknown)
    width: int
    height: int
    codec: str
    stream_duration_s: float | None = None  # the video stream's own length, when its header gives one
    start_s: float = 0.0  # the time of its first frame (a cut from a longer recording starts later)
    expected_end_s: float | None = None  # where it should end: its header's end, else its last packet's
    pixel_aspect: float = 1.0  # how much wider than high its pixels are shown (``_pixel_aspect``)

    @property
    def box_scale(self) -> float:
        """The shown frame's pixels per measured pixel (frames are measured at most
        ``VIDEO_MAX_SIDE`` on their long side), which puts a face's box in the frame as shown."""
        side = max(max(1, round(self.width * self.pixel_aspect)), self.height)
        return side / VIDEO_MAX_SIDE if side > VIDEO_MAX_SIDE else 1.0


class ChunkTask(NamedTuple):
    """A worker's part of a video (picklable: it crosses to the worker process)."""

    path: str
    start: float
    end: float | None  # None: to the end of the video
    fps: float
    expected_end: float | None  # where the video should end, to notice frames that never came
    label: str  # the name the person knows the file by (not a temporary path)


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
        # a file named as one of the videos it takes is damaged or cut short (an MP4 cut off before
        # the index at its end), not of the wrong kind
        advice = "it is damaged or cut short; re-save or copy it again" if is_video(path) else \
            "use MP4, MOV, AVI or WebM"
        raise VideoError(f"{label}: not a readable video ({_detail(exc)}); {advice}") from None
    try:
        _video_stream(container, label)
    except VideoError:
        container.close()
        raise
    return container


def _detail(exc: Exception) -> str:
    """Why FFmpeg failed, in short and without the file's path: the label names the file, and in
    Try it the path is a temporary one the person never gave."""
    reason = getattr(exc, "strerror", None)
    return one_line(f"{type(exc).__name__}: {reason}" if reason else exc, 80)


def _video_stream(container, label: str):
    """The first video stream that is a video: an audio file's cover art is a one-picture
    "video" stream (attached picture) that would be measured as a long still video."""
    streams = [s for s in container.streams.video if not int(getattr(s, "disposition", 0) or 0) & _ATTACHED_PIC]
    if not streams:
        raise VideoError(f"{label}: holds no video stream, only sound or pictures; choose a file with video in it")
    decodable = [s for s in streams if s.codec_context is not None]
    if not decodable:  # FFmpeg has no decoder for it: PyAV gives the stream no codec context
        raise VideoError(f"{label}: its video codec is not supported; convert it to MP4 (H.264)")
    return decodable[0]


def _check_frame(width: int, height: int, label: str) -> None:
    """A photo's size limits (``images``), applied to each frame."""
    try:
        _check_size(width, height, label)
    except ImageError as exc:
        raise VideoError(str(exc).replace(": image is", ": frames are", 1)) from None


def _check_length(info: VideoInfo, label: str) -> None:
    """Refuse, before planning chunks, a video longer than ``MAX_VIDEO_HOURS`` (as its header says)."""
    limit = _limit("MAX_VIDEO_HOURS", MAX_VIDEO_HOURS)
    if not info.duration_s / 3600 <= limit:  # NaN too
        raise VideoError(f"{label}: the video says it lasts {info.duration_s / 3600:,.1f} hours, over the limit "
                         f"of {limit:g} hours; cut the video first (or re-save it: its header may be damaged)")


def check_fps(fps: float | None) -> None:
    """A sampling rate a table can be measured at (None: every frame, for ``frame_at``)."""
    if fps is not None and not (0 < fps <= MAX_FPS):
        raise VideoError(f"--fps must be above 0 and at most {MAX_FPS:g}")


def _slack(stream) -> float:
    """How far before a point of the sampling grid a frame still counts as at it: WebM stores
    times in whole milliseconds (a 30 fps frame at 0.033 s, not 1/30 s), so half a step of the
    stream's time base, at most 1 ms."""
    base = float(stream.time_base) if stream.time_base else 0.0
    return min(0.5 * base + _EPS, 1e-3) if base else 1e-3


def _header_span(stream) -> tuple[float | None, float | None]:
    """(first time, length) of the video stream as its header gives them; None where it does not."""
    base = stream.time_base
    start = float(stream.start_time * base) if stream.start_time is not None and base else None
    own = float(stream.duration * base) if stream.duration and base else None
    return start, own


def _tagged_length(stream) -> float | None:
    """The length a Matroska/WebM muxer writes in the video track's ``DURATION`` tag
    ("00:00:08.000000000"); the container's length is its longest track's (often the audio)."""
    parts = (stream.metadata or {}).get("DURATION", "").split(":")
    if len(parts) != 3:
        return None
    try:
        length = float(parts[0]) * 3600 + float(parts[1]) * 60 + float(parts[2])
    except ValueError:
        return None
    return length if length > 0 else None


def _scan(container, stream) -> tuple[float | None, float, float]:
    """(first time, end) of the video stream's packets and the end of the file's last packet of
    any stream, read without decoding: for containers (WebM) whose video stream has no length
    of its own, where the container's is that of its longest stream (often the audio)."""
    import av

    first, video_end, file_end = None, 0.0, 0.0
    try:
        for packet in container.demux():
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None or not packet.time_base:
                continue
            begins = float(ts * packet.time_base)
            ends = float((ts + (packet.duration or 0)) * packet.time_base)
            file_end = max(file_end, ends)
            if packet.stream.index == stream.index:
                video_end = max(video_end, ends)
                first = begins if first is None else min(first, begins)
    except av.FFmpegError:  # damaged further on: what was read stands, decoding will say the rest
        pass
    return first, video_end, file_end


def probe_video(path: str | os.PathLike[str], label: str | None = None) -> VideoInfo:
    """Duration, frame rate, size and codec; raises ``VideoError`` in one line. Where the video
    stream does not say how long it is, its packets are read (not decoded) to find out."""
    import av

    label = label or printable(os.fsdecode(path))
    container = _open(path, label)
    try:
        stream = _video_stream(container, label)
        width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
        _check_frame(width or 1, height or 1, label)
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        start, own = _header_span(stream)
        if own is not None:
            start = start or 0.0
            end = expected = start + own
            # An AVI cut short (a copy stopped midway) loses its index, and FFmpeg then gives the
            # length of the frames it finds; its header still counts them all (100 at 25 fps: 4 s)
            counted = stream.frames / fps if stream.frames and fps else 0.0
            if counted > own + max(1.0, 2 / fps):
                expected = start + counted
        else:
            first, end, file_end = _scan(container, stream)
            start = start if start is not None else (first or 0.0)
            tagged = _tagged_length(stream)
            if tagged is not None:  # a WebM's video track says its own length: cut off before it
                expected = start + tagged if end < start + tagged - CUT_SLACK_S else end
            else:
                header = container.duration / 1_000_000 if container.duration else None
                # the whole file (audio too) ends before its header says: cut off, not a short video track
                expected = header if header is not None and file_end < header - CUT_SLACK_S else end
        start = max(0.0, start)
        return VideoInfo(max(0.0, end - start), fps, width, height, stream.codec_context.name or "", own,
                         start, expected, _pixel_aspect(stream))
    except av.FFmpegError as exc:
        raise VideoError(f"{label}: video is corrupt ({_detail(exc)})") from None
    finally:
        container.close()


def _seek(container, stream, start_s: float, label: str) -> None:
    import av

    try:
        container.seek(int(start_s / stream.time_base), stream=stream, backward=True)
    except av.FFmpegError as exc:  # the file may be whole: it cannot be entered midway
        raise VideoError(f"{label}: cannot seek in this video ({_detail(exc)})") from None


def sampled_frames(path: str | os.PathLike[str], fps: float | None = DEFAULT_FPS, start_s: float = 0.0,
                   end_s: float | None = None, max_side: int = VIDEO_MAX_SIDE,
                   label: str | None = None, seen: dict | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """(time in seconds, RGB uint8 frame) of the frames sampled at ``fps`` between ``start_s``
    and ``end_s``, decoded one at a time. A frame is taken when its presentation time reaches the
    next point of the grid k / fps; so sampling does not depend on where a chunk starts. Times
    are rounded to the millisecond and kept distinct (a later frame is never an earlier time).
    ``fps`` None: every frame.

    Packets are decoded one by one: a packet that fails to decode is skipped (up to
    ``MAX_BAD_PACKETS`` in a row), so a damaged stretch costs its own frames, not the rest.
    ``seen`` (a dict) gets ``"until"``, where the last frame decoded ends (sampled or not),
    ``"reached_end"``, whether a frame reached ``end_s``, ``"next_t"``, the next time to sample,
    ``"damaged"``, (from, to, why) of each stretch lost to packets that failed, ``"error"``,
    why the packets after the last frame decoded failed (frames lost up to the end), and
    ``"too_long"``, why the last frame decoded cannot be as long as it says.

    A frame that says it runs on past the stream's end (its header's) by more than
    ``_too_long_slack`` is not believed: an MP4 whose timescale is damaged gives its first frame
    512 s in a 2 s video, and its demuxer drops the 49 frames after it. It is taken to last one
    frame of the header's (length / frame count), so the frames missing after it are said."""
    import av

    label = label or printable(os.fsdecode(path))
    check_fps(fps)
    seen = {} if seen is None else seen
    container = _open(path, label)
    try:
        stream = _video_stream(container, label)
        stream.thread_type = "AUTO"
        slack = _slack(stream)
        widen = _pixel_aspect(stream)
        if start_s > 0:
            _seek(container, stream, start_s, label)
        next_t = math.ceil(start_s * fps - _EPS) / fps if fps else start_s
        seen["next_t"] = next_t
        fallback_t = 0.0
        step = 1 / float(stream.average_rate or fps or 25)  # a frame's length when it does not say
        first, own = _header_span(stream)
        header_end = (first or 0.0) + own if own is not None else None
        header_step = own / stream.frames if own and stream.frames else step
        bad, error, since_error, last_end, last_time = 0, None, 0, None, None
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                bad, error, since_error = bad + 1, f"video is corrupt ({_detail(exc)})", 0
                if bad >= MAX_BAD_PACKETS:
                    raise VideoError(f"{label}: {error}") from None
                continue
            for frame in frames:
                bad = 0
                t = float(frame.time) if frame.time is not None else fallback_t
                fallback_t = t + step
                if error is not None:
                    # the frames of a failed packet are missed where they would have come out, which
                    # decoder threads and frame reordering put some frames after the failure
                    if (t > start_s + slack) if last_end is None else (t - last_end > 0.5 * step):
                        seen.setdefault("damaged", []).append((start_s if last_end is None else last_end, t, error))
                        error = None
                    else:
                        since_error += 1
                        error = error if since_error < FRAMES_AFTER_ERROR else None  # concealed: nothing missing
                if end_s is not None and t >= end_s - slack:
                    seen["reached_end"] = True
                    return
                lasts = float(frame.duration * stream.time_base) if frame.duration and stream.time_base else 0.0
                lasts = lasts or step
                if header_end is not None and t < header_end < t + lasts - _too_long_slack(header_step):
                    seen["too_long"] = (f"a frame at {t:.2f} s says it lasts {lasts:,.2f} s, past the video's end at "
                                        f"{header_end:.2f} s (its header may be damaged; re-save it)")
                    lasts = header_step
                else:
                    seen.pop("too_long", None)  # a frame came after it: it was not the last
                last_end = seen["until"] = t + lasts
                if t < next_t - slack:
                    continue
                if fps:
                    next_t = seen["next_t"] = (math.floor((t + slack) * fps + _EPS) + 1) / fps
                _check_frame(frame.width, frame.height, f"{label} at {t:.2f} s")
                w, h = (max(1, round(frame.width * widen)), frame.height)  # as shown: square pixels
                if max(w, h) > max_side:
                    w, h = _fit((w, h), max_side)
                at = round(t, 3)
                if last_time is not None and at <= last_time:  # two frames within a millisecond
                    at = round(last_time + 0.001, 3)
                last_time = at
                yield at, _upright(frame.to_ndarray(format="rgb24", width=w, height=h), frame)
        if error is not None:
            seen["error"] = error
    except av.FFmpegError as exc:
        raise VideoError(f"{label}: video is corrupt ({_detail(exc)})") from None
    finally:
        container.close()


def _too_long_slack(header_step: float) -> float:
    """How far past the stream's end a last frame may say it lasts: an edit list may end the
    video within its last frame (a slideshow's lasts seconds), never many frames past it."""
    return max(CUT_SLACK_S, 2 * header_step)


def _pixel_aspect(stream) -> float:
    """How much wider than high the stream's pixels are (its sample aspect ratio; 1 unknown). A
    camcorder stores 1280 x 720 video as 960 x 720 with pixels 4:3 wide, which players widen: read
    as stored, its faces were squeezed and their AUs off by up to 2 (AU26 1.4 -> 3.6)."""
    for ratio in (stream.sample_aspect_ratio, stream.codec_context.sample_aspect_ratio):
        if ratio and ratio.numerator > 0 and ratio.denominator > 0:
            return float(ratio)
    return 1.0


def _upright(rgb: np.ndarray, frame) -> np.ndarray:
    """A frame as it is shown: phones store portrait video sideways with a display rotation
    (degrees counter-clockwise), which players apply and photos get from EXIF."""
    turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def shown_frame_size(path: str | os.PathLike[str], frame: np.ndarray, label: str | None = None) -> tuple[int, int]:
    """(width, height) of the video's frames as shown, which ``frame`` (``frame_at``'s) was scaled
    down from where the video is over ``VIDEO_MAX_SIDE``: boxes given in it match the AU table's."""
    scale = probe_video(path, label).box_scale
    return round(frame.shape[1] * scale), round(frame.shape[0] * scale)


def frame_at(path: str | os.PathLike[str], time_s: float, max_side: int = VIDEO_MAX_SIDE,
             label: str | None = None) -> tuple[float, np.ndarray]:
    """The first frame at or after ``time_s`` (the one a table row of that time was measured on)."""
    for t, rgb in sampled_frames(path, None, max(0.0, time_s - 1e-3), None, max_side, label=label):
        return t, rgb
    raise VideoError(f"no frame at {time_s:.2f} s; the video is shorter")


def chunks_of(duration_s: float, fps: float, start_s: float = 0.0) -> list[tuple[float, float | None]]:
    """(start, end) of each chunk of a video whose frames run from ``start_s`` for ``duration_s``;
    chunks begin on the sampling grid (k / fps), and the last one runs to the end (end None)."""
    per = max(1, math.floor(min(CHUNK_FRAMES, CHUNK_MAX_S * fps) + _EPS))  # sampled frames a chunk
    first = max(0, math.floor(start_s * fps + _EPS))
    n = max(1, math.ceil(((start_s + duration_s) * fps - first) / per - _EPS))
    return [((first + i * per) / fps, (first + (i + 1) * per) / fps if i < n - 1 else None) for i in range(n)]


# -- the worker side -------------------------------------------------------------------------------
_analyzer = None


def _init_worker() -> None:
    global _analyzer
    from .landmarker import keep_mediapipe_offline, shared_analyzer

    keep_mediapipe_offline()  # a worker measures faces and fetches nothing
    _analyzer = shared_analyzer()


def _measure_chunk(task: ChunkTask) -> list[tuple[float, list[dict] | str]]:
    """Worker task: (time, measurements as cached or the reason the frame failed) of each frame
    of one chunk, in time order, tracked by a landmarker of its own (timestamps restart with each
    chunk), and a row for each stretch of it whose frames never came. A frame that fails in any
    way is a row of its own: the chunk's other frames are kept."""
    tracker = _analyzer.video_landmarker()
    out: list[tuple[float, list[dict] | str]] = []
    seen: dict = {}
    broke = None
    last_ms = -1
    try:
        for t, rgb in sampled_frames(task.path, task.fps, task.start, task.end, label=task.label, seen=seen):
            last_ms = max(round(t * 1000), last_ms + 1)  # MediaPipe's VIDEO mode: strictly increasing
            try:
                faces = _analyzer.detect_video_frame(tracker, rgb, last_ms)
                out.append((t, [measurement_of(f).to_cache() for f in faces]))
            except FerError as exc:
                out.append((t, one_line(exc)))
            except Exception as exc:  # MediaPipe's own errors: this frame's row, a fresh tracker after it
                out.append((t, one_line(exc)))
                tracker, stale = None, tracker
                stale.close()
                tracker = _analyzer.video_landmarker()
    except VideoError as exc:  # decoding broke off: one row where it did, saying what is missing
        broke = _unlabelled(one_line(exc), task.label)
    finally:
        if tracker is not None:
            tracker.close()
    return sorted(out + _gap_rows(task, [t for t, _ in out], seen, broke), key=lambda row: row[0])


def _unlabelled(text: str, label: str) -> str:
    """A reason without the file's name in front: the row's ``file`` names it."""
    return text[len(label) + 2:] if text.startswith(f"{label}: ") else text


def _gap_rows(task: ChunkTask, sampled: list[float], seen: dict, broke: str | None) -> list[tuple[float, str]]:
    """Rows for the stretches of a chunk whose frames did not come: damaged packets skipped
    (where a whole sampling step went missing), and frames missing after the last one decoded
    (decoding broke off, the file is cut short, it stopped quietly before the chunk's end, or
    its last frame says it lasts far past the video's end)."""
    fps, start, end = task.fps, task.start, task.end
    rows = []
    for a, b, why in seen.get("damaged", []):
        a, b = max(a, start), b if end is None else min(b, end)
        if b - a > 1 / fps:
            rows.append((round(a, 3), f"{why}{GAP_MARK}{a:.2f} s to {b:.2f} s"))
    limit = end if end is not None else task.expected_end
    until = seen.get("until", start)
    why = broke
    too_long = seen.get("too_long")  # no slack: its header says frames follow that never came
    if why is None and not seen.get("reached_end") and limit is not None and (
            too_long or limit - until > max(2 / fps, 1.0)):
        why = (seen.get("error") or too_long or (f"the video ends at {until:.2f} s of its {limit:.2f} s (cut short?)"
                                                 if end is None else "frames are missing"))
    next_t = seen.get("next_t", start)
    if why is not None and (limit is None or next_t < limit - 1e-3):  # a sampling point was lost
        at = round((sampled[-1] + next_t) / 2 if sampled else start, 3)  # between sampled frames
        rows.append((at, f"{why}{GAP_MARK}{at:.2f} s to " + (f"{end:.2f} s" if end is not None else "the end")))
    return rows


# -- the caller's side -----------------------------------------------------------------------------
def rows_for_frame(file: str, time_s: float, measured, label: str | None = None, box_scale: float = 1.0,
                   ) -> list[dict]:
    """Table rows of one frame: ``rows_for_image`` with its time and the video source, boxes in
    the frame's pixels as shown (``VideoInfo.box_scale``)."""
    return [{**r, "time_s": time_s, "source": SOURCE}
            for r in rows_for_image(file, label, measured, pixel_scale=box_scale)]


def frame_rows(table: pd.DataFrame) -> pd.Series:
    """Which rows are of sampled frames (a face, or the frame's own failure), not of a stretch of
    the video that was never decoded (no frame there to show or count)."""
    reasons = table["reason"].fillna("").astype(str)
    return ~(reasons.str.contains(GAP_MARK, regex=False) | reasons.str.contains(SKIPPED_MARK, regex=False))


def video_key(path: str | os.PathLike[str], fps: float) -> str:
    """The measurement cache's name of a video sampled at ``fps``: its bytes (read in blocks: a
    video may be gigabytes), the measuring code's version and settings."""
    from .tasks import file_digest

    return f"{cache_version()}:video:{fps:g}:{file_digest(path)}"


def extract_video(path: str | os.PathLike[str], fps: float = DEFAULT_FPS, workers: int = 1,
                  name: str | None = None, label: str | None = None, progress: Progress | None = None,
                  should_stop: ShouldStop | None = None, use_cache: bool = True) -> pd.DataFrame:
    """AU table of a video: a row per sampled frame and face (``time_s``), ordered by time; a
    frame without a face, and every frame of a chunk whose worker crashed, as failure rows.
    ``name`` is the ``file`` of every row (default: the path), and names the file in reasons.
    Cancelling returns the chunks finished so far. Each chunk's frames are cached as it is
    measured (by the video's bytes, the rate and the chunk): a rerun is instant, and a run cut off
    (Ctrl-C, a lost session) goes on where it stopped; a crashed chunk is tried again. With
    ``use_cache=False`` the cache is neither read nor written, as for images."""
    plan = _VideoPlan.of(path, fps, printable(name or os.fsdecode(path)), label, use_cache)
    _measure_plans([plan], fps, workers, use_cache, progress, should_stop)
    return plan.table()


def extract_videos(videos: Sequence[SkippedFile], fps: float = DEFAULT_FPS, workers: int = 1,
                   progress: Progress | None = None, should_stop: ShouldStop | None = None,
                   use_cache: bool = True, reading: Progress | None = None) -> pd.DataFrame:
    """The videos among a folder's images (``scan_images`` lists them apart), each measured as
    ``extract_video`` measures one, in one table: a video's rows are named by its path in the
    folder (two folders' ``session.mp4`` stay apart) and labelled by its emotion folder. A video
    that cannot be read is one failure row saying why, and the others go on. The chunks of all
    the videos share the workers, so a folder of short clips (a chunk each) keeps every worker
    busy; ``progress`` counts them. ``reading`` counts the videos read first (each is hashed
    whole for the cache: gigabytes of video take a while before the first chunk)."""
    check_fps(fps or 0.0)  # the option's fault, not each video's
    planned: list[tuple[SkippedFile, _VideoPlan]] = []
    tables: dict[str, pd.DataFrame] = {}

    def failure(video: SkippedFile, exc: FerError) -> pd.DataFrame:
        reason = one_line(exc).removeprefix(f"{video.file}: ")
        return au_table.from_rows(rows_for_frame(video.file, np.nan, reason, video.label))

    for done, video in enumerate(videos):
        if reading:
            reading(done, len(videos))
        if should_stop and should_stop():
            return au_table.concat([])
        if video.path is None:
            raise ValueError(f"{video.file}: a listed video has its path (scan_images)")
        try:
            planned.append((video, _VideoPlan.of(video.path, fps, video.file, video.label, use_cache)))
        except FerError as exc:  # this video's reason, then the next one
            tables[video.file] = failure(video, exc)
    if reading:
        reading(len(videos), len(videos))
    _measure_plans([plan for _, plan in planned], fps, workers, use_cache, progress, should_stop)
    for video, plan in planned:
        try:
            tables[video.file] = plan.table()
        except FerError as exc:  # not one frame decoded
            tables[video.file] = failure(video, exc)
    return au_table.concat([tables[v.file] for v in videos])


@dataclass
class _VideoPlan:
    """One video's chunks, their cache keys, and the rows measured so far."""

    path: str
    file: str
    label: str | None
    chunks: list[tuple[float, float | None]]
    keys: list[str]
    expected_end_s: float | None
    parts: list[pd.DataFrame]
    done: int = 0  # chunks finished: cached, measured or crashed
    box_scale: float = 1.0  # VideoInfo.box_scale

    @classmethod
    def of(cls, path: str | os.PathLike[str], fps: float, file: str, label: str | None, use_cache: bool) -> _VideoPlan:
        info = probe_video(path, file)
        check_fps(fps or 0.0)  # every frame (None) is for frame_at, not for a table
        _check_length(info, file)
        chunks = chunks_of(info.duration_s, fps, info.start_s)
        base = video_key(path, fps) if use_cache else ""  # the whole file read once, not once a chunk
        keys = [f"{base}:{s:.3f}:" + ("end" if e is None else f"{e:.3f}") for s, e in chunks]
        return cls(os.fspath(path), file, label, chunks, keys, info.expected_end_s, [], box_scale=info.box_scale)

    def task(self, chunk: int, fps: float) -> ChunkTask:
        return ChunkTask(self.path, *self.chunks[chunk], fps, self.expected_end_s, self.file)

    def add(self, result) -> None:
        """A chunk's frames, as measured or cached."""
        self.parts.append(au_table.from_rows(
            [row for t, measured in result
             for row in rows_for_frame(self.file, t, measurements_of(measured), self.label, self.box_scale)]))
        self.done += 1

    def add_failure(self, chunk: int, failure: WorkerFailure) -> None:
        """A chunk whose worker crashed or ran out of time: one row for its stretch (not cached:
        the next run tries it again)."""
        start, end = self.chunks[chunk]
        until = f"{end:.1f} s" if end is not None else "the end"
        why = str(failure).replace(TIMEOUT_ADVICE, VIDEO_TIMEOUT_ADVICE)
        self.parts.append(au_table.from_rows(
            rows_for_frame(self.file, round(start, 3), f"{why}{SKIPPED_MARK}{start:.1f} s to {until})", self.label)))
        self.done += 1

    def table(self) -> pd.DataFrame:
        table = au_table.concat(self.parts)
        if table.empty and self.done == len(self.chunks):  # not one frame, nor a stretch said missing
            raise VideoError(f"{self.file}: no frame of it could be decoded; the video is empty or damaged, re-save it")
        return table.sort_values(["time_s", "face"], kind="stable").reset_index(drop=True)


def _measure_plans(plans: Sequence[_VideoPlan], fps: float, workers: int, use_cache: bool,
                   progress: Progress | None, should_stop: ShouldStop | None) -> None:
    """Every chunk of ``plans``: cached ones read, the others measured in one batch of the video
    workers (each cached as it ends); cancelling keeps the chunks finished so far."""
    cache = MeasureCache() if use_cache else None
    try:
        cached = cache.get_many([key for plan in plans for key in plan.keys]) if cache is not None else {}
        todo: list[tuple[_VideoPlan, int]] = []
        for plan in plans:
            for chunk, key in enumerate(plan.keys):
                if key in cached:
                    plan.add(cached[key])
                else:
                    todo.append((plan, chunk))
        total = sum(len(plan.chunks) for plan in plans)
        done = total - len(todo)
        if progress:
            progress(done, total)
        if not todo:
            return
        pool = shared_pool("video", max(1, workers), _measure_chunk, _init_worker, settings=worker_settings(),
                           crash_message="the face detector crashed on this part of the video")
        with pool.held():
            results = pool.imap_unordered([plan.task(chunk, fps) for plan, chunk in todo])
            try:
                for index, result in results:
                    plan, chunk = todo[index]
                    if isinstance(result, WorkerFailure):
                        plan.add_failure(chunk, result)
                    else:
                        plan.add(result)
                        if cache is not None:
                            cache.put_many({plan.keys[chunk]: result})
                    done += 1
                    if progress:
                        progress(done, total)
                    if should_stop and should_stop():
                        break
            finally:
                results.close()
    finally:
        if cache is not None:
            cache.close()


def videos_in(skipped: Sequence[SkippedFile]) -> list[SkippedFile]:
    """The videos a folder's listing passed over among its images."""
    return [s for s in skipped if s.reason == VIDEO_IN_FOLDER]


def videos_apart(skipped: Sequence[SkippedFile], measured: bool) -> tuple[list[SkippedFile], list[SkippedFile]]:
    """(the videos to measure, the files still passed over) of a folder's listing: with
    ``measured``, its videos are measured (``extract_videos``) and no longer passed over."""
    if not measured:
        return [], list(skipped)
    return videos_in(skipped), [s for s in skipped if s.reason != VIDEO_IN_FOLDER]


def is_video(name: str | os.PathLike[str]) -> bool:
    return Path(os.fsdecode(name)).suffix.lower().lstrip(".") in VIDEO_TYPES


def emotion_over_time(table: pd.DataFrame, predictor) -> pd.DataFrame:
    """Per sampled frame: ``time_s`` and the AU model's probability of each emotion (its class
    names as columns) for the frame's first face; empty where no face was measured. A stretch of
    the video never decoded has no row (it looked like a frame without a face)."""
    from ..pipeline import predict_table

    if getattr(predictor, "inputs", "") != "aus":
        raise FerError(f"{predictor.name}: reads pixels, not AUs; pick an AU model for the emotion over time")
    frames = table[table["face"] == 0]
    frames = frames[frame_rows(frames)].reset_index(drop=True)  # a stretch never decoded is no frame
    answers = predict_table(frames, predictor, explain=False)
    out = pd.DataFrame({c: answers[f"p_{c}"].to_numpy() for c in predictor.classes})
    out.insert(0, "time_s", frames["time_s"].to_numpy())
    return out
