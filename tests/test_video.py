"""Videos: real video files written by the test with PyAV (frames of a real face photo, moving and
scaled), measured by the real MediaPipe route; sampling by time, failure rows, the CLI, the
time_s column through the AU table's reader and usable-rows rule, and flat memory on a long video."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

av = pytest.importorskip("av", reason="PyAV is not installed (pip install -r requirements.txt)")

from fer_core import au_table  # noqa: E402
from fer_core.measure import video  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WRITER = textwrap.dedent('''
    import av, numpy as np
    from PIL import Image

    def write_video(path, seconds, rate=25, size=(320, 240), codec="libx264", face_until=None, sideways=False,
                    faststart=False, wide_pixels=None):
        """A face photo (scikit-image's astronaut, cropped to the face) drifting and breathing in
        size on a plain background; from ``face_until`` seconds on, the background alone.
        ``sideways``: stored turned a quarter counter-clockwise with a display rotation that turns
        it back, as phones store portrait video. ``faststart``: the index first, as for streaming.
        ``wide_pixels`` (a Fraction): stored that much narrower, with pixels that much wider than
        high, as camcorders store HD video."""
        from skimage import data

        face = Image.fromarray(data.astronaut()[10:250, 130:370])
        with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as out:
            stream = out.add_stream(codec, rate=rate)
            stream.width, stream.height = size[::-1] if sideways else size
            if wide_pixels:
                stream.width = round(size[0] / wide_pixels)
                stream.codec_context.sample_aspect_ratio = wide_pixels
            stream.pix_fmt = "yuv420p"
            if sideways:
                stream.set_display_rotation(-90)
            for i in range(int(round(seconds * rate))):
                canvas = Image.new("RGB", size, (40, 60, 80))
                if face_until is None or i / rate < face_until:
                    side = int(size[1] * (0.8 + 0.1 * np.sin(i / 10)))
                    x = int((size[0] - side) / 2 + 0.06 * size[0] * np.sin(i / 7))
                    canvas.paste(face.resize((side, side)), (x, (size[1] - side) // 2))
                if sideways:
                    canvas = canvas.rotate(90, expand=True)
                if wide_pixels:
                    canvas = canvas.resize((stream.width, stream.height), Image.BICUBIC)
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(canvas), format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        return path
''')
namespace: dict = {}
exec(WRITER, namespace)  # the same writer runs in the memory test's subprocess
write_video = namespace["write_video"]


@pytest.fixture(scope="module")
def face_video(tmp_path_factory) -> Path:
    """4 s at 25 fps, H.264; the face until 3 s, then no face."""
    return write_video(tmp_path_factory.mktemp("video") / "face.mp4", 4, face_until=3.0)


def test_frames_are_sampled_by_time(face_video):
    info = video.probe_video(face_video)
    assert info.codec == "h264" and (info.width, info.height) == (320, 240)
    assert info.duration_s == pytest.approx(4.0, abs=0.1) and info.fps == pytest.approx(25)
    every = [t for t, _ in video.sampled_frames(face_video, 25)]
    assert len(every) == 100 and every == sorted(every)
    times = [t for t, rgb in video.sampled_frames(face_video, 2)]
    # one frame per half second: the first frame at or after each grid point k / 2
    assert times == pytest.approx([0.0, 0.52, 1.0, 1.52, 2.0, 2.52, 3.0, 3.52], abs=1e-6)
    tenth = [t for t, _ in video.sampled_frames(face_video, 10)]
    assert len(tenth) == 40 and np.all(np.diff(tenth) > 0.07)
    # a chunk starting mid-video (seeking) samples the same frames as one pass
    parts = [t for a, b in ((0, 1.7), (1.7, 2.9), (2.9, None)) for t, _ in video.sampled_frames(face_video, 10, a, b)]
    assert parts == tenth


def test_frames_are_limited_like_photos(face_video, monkeypatch):
    _, rgb = next(video.sampled_frames(face_video, 1, max_side=160))
    assert rgb.shape == (120, 160, 3) and rgb.dtype == np.uint8
    monkeypatch.setenv("FER_MAX_ASPECT", "1.2")
    with pytest.raises(video.VideoError, match="frames are 320x240 pixels, more than 1.2 times longer"):
        video.probe_video(face_video)


def test_video_rows_time_and_no_face_failures(face_video):
    table = video.extract_video(face_video, fps=2, name="face.mp4")
    assert list(table.columns) == list(au_table.TABLE_COLUMNS)
    assert table["time_s"].tolist() == pytest.approx([0.0, 0.52, 1.0, 1.52, 2.0, 2.52, 3.0, 3.52], abs=1e-6)
    with_face = table[table["time_s"] < 3]
    assert (with_face["success"] == 1).all() and (with_face["confidence"] > 0.8).all()
    assert np.isfinite(with_face[list(au_table.AU_COLUMNS)].to_numpy()).all()
    no_face = table[table["time_s"] >= 3]
    assert (no_face["success"] == 0).all() and set(no_face["reason"]) == {"no face found"}
    assert set(table["file"]) == {"face.mp4"} and set(table["source"]) == {video.SOURCE}
    # every frame is a picture of its own for the usable-rows rule (the file is the same)
    assert len(au_table.usable(table)) == 6
    # the tracked face's AUs agree with the same frame measured as a photo
    from fer_core.measure.extract import measure_image

    t, rgb = video.frame_at(face_video, 1.0)
    assert t == pytest.approx(1.0)
    photo = measure_image(rgb)[0].au_vector()
    tracked = with_face[with_face["time_s"] == t][list(au_table.AU_COLUMNS)].to_numpy()[0]
    assert np.abs(photo - tracked).max() < 0.5


def test_a_crash_costs_one_chunk(tmp_path, monkeypatch):
    """The worker measuring the second chunk is killed (SIGKILL, as a native abort would end it):
    that chunk becomes one failure row with its time range, the first and third are measured."""
    import os
    import signal
    import threading

    from fer_core.measure import workers

    path = write_video(tmp_path / "crash.mp4", 12, rate=10)
    monkeypatch.setattr(video, "CHUNK_FRAMES", 40)  # chunks of 4 s at 10 fps: 0-4, 4-8, 8-12 s

    def reading(pid: int) -> bool:
        """Whether process ``pid`` has the video open (it is decoding it)."""
        try:
            return any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            return False

    finished = threading.Event()

    def kill() -> None:
        """Kill the worker given the second chunk (task 1) once it reads the video. Found by its task,
        with no timer: a timer of 0.3 s and 2 s to find a reader missed a worker that a loaded
        machine started late, and the whole video was measured."""
        pool = workers._pools[("video", 1)]
        while not finished.is_set():
            holder = next((w for w in list(pool._workers) if w.job is not None and w.job[0] == 1), None)
            if holder is not None and reading(holder.process.pid):
                os.kill(holder.process.pid, signal.SIGKILL)
                return
            finished.wait(0.01)

    def kill_second_chunk(done: int, total: int) -> None:
        if done == 1:  # the first chunk is in; the worker is given the second next
            threading.Thread(target=kill, daemon=True).start()

    try:
        table = video.extract_video(path, fps=10, progress=kill_second_chunk)
    finally:
        finished.set()
    crashed = table[table["reason"].str.contains("crashed")]
    assert len(crashed) == 1 and crashed["time_s"].iloc[0] == pytest.approx(4.0)
    assert crashed["reason"].iloc[0] == ("the face detector crashed on this part of the video (signal 9); "
                                         "it was skipped (frames from 4.0 s to 8.0 s)")
    measured = table[table["success"] == 1]["time_s"]
    assert len(measured[measured < 4]) == 40 and len(measured[measured >= 8]) == 40


def test_a_video_cut_off_goes_on_where_it_stopped_and_a_rerun_measures_nothing(tmp_path, monkeypatch):
    """A video was measured whole on every run: Ctrl-C 58 s into a minute's video kept nothing, and
    the README's "a rerun is instant" did not hold for videos. Each chunk is now cached as it ends."""
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    path = write_video(tmp_path / "resume.mp4", 12, rate=10)
    monkeypatch.setattr(video, "CHUNK_FRAMES", 40)  # three chunks: 0-4, 4-8, 8-12 s
    stopped = video.extract_video(path, fps=10, should_stop=lambda: True)  # as Cancel after the first chunk
    assert stopped["time_s"].max() < 4
    seen: list[tuple[int, int]] = []
    table = video.extract_video(path, fps=10, progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (1, 3) and seen[-1] == (3, 3)  # the first chunk came from the cache
    assert len(table) == 120 and table["success"].all()  # every sampled frame, once

    def no_measuring(*args, **kwargs):
        raise AssertionError("a cached video was measured again")

    real_key = video.video_key

    hashed = []
    monkeypatch.setattr(video, "video_key", lambda *args: hashed.append(args) or real_key(*args))
    monkeypatch.setattr(video, "shared_pool", no_measuring)
    pd.testing.assert_frame_equal(video.extract_video(path, fps=10), table)
    assert len(hashed) == 1  # the file is read once, not once a chunk (300 times for an hour at 10 fps)


def test_decoding_that_breaks_off_mid_chunk_is_one_row_where_it_broke(face_video, monkeypatch):
    """The frames decoded before a damaged stretch are kept; the failure row sits after the last of
    them (not at the chunk's start, on a frame already measured) and says which stretch is missing."""
    real = video.sampled_frames

    def breaks_after_three(path, fps, start, end, **kw):
        for k, frame in enumerate(real(path, fps, start, end, **kw)):
            if k == 3:
                raise video.VideoError("damaged video data")
            yield frame

    monkeypatch.setattr(video, "sampled_frames", breaks_after_three)
    video._init_worker()
    out = video._measure_chunk(video.ChunkTask(str(face_video), 0.0, 2.0, 5.0, 4.0, "face.mp4"))
    times = [t for t, _ in out]
    assert len(out) == 4 and times == sorted(times) and len(set(times)) == 4
    assert all(isinstance(m, list) for _, m in out[:3])
    at, reason = out[3]
    assert times[2] < at < times[2] + 1 / 5
    assert reason == f"damaged video data; no frames from {at:.2f} s to 2.00 s"


def test_decoding_that_breaks_off_after_a_chunks_last_frame_loses_nothing(face_video, monkeypatch):
    """Every sampling point of the chunk got its frame before decoding broke off: no row of frames
    missing (it said "no frames from 2.10 s to 2.00 s" at fps 5 with its end past the chunk's),
    and a row's time is rounded to the millisecond as frames' are."""
    real = video.sampled_frames

    def breaks_at_the_end(path, fps, start, end, **kw):
        yield from real(path, fps, start, end, **kw)
        raise video.VideoError("face.mp4: damaged video data")

    monkeypatch.setattr(video, "sampled_frames", breaks_at_the_end)
    video._init_worker()
    out = video._measure_chunk(video.ChunkTask(str(face_video), 0.0, 2.0, 10.0, 4.0, "face.mp4"))
    assert len(out) == 20 and all(isinstance(m, list) for _, m in out)
    out = video._measure_chunk(video.ChunkTask(str(face_video), 1.2, None, 10.0, None, "face.mp4"))  # end unknown
    at, reason = out[-1]
    assert reason == f"damaged video data; no frames from {at:.2f} s to the end", "no file name: the row names it"
    assert at == round(at, 3) and out[-2][0] < at < 4.0


def test_a_video_of_wide_pixels_is_measured_as_shown(tmp_path):
    """Stored 240 x 240 with pixels 4:3 wide, a 320 x 240 video was measured squeezed: AUs off by
    up to 2 from the same video stored with square pixels."""
    import fractions

    square = write_video(tmp_path / "square.mp4", 1, rate=10)
    wide = write_video(tmp_path / "wide.mp4", 1, rate=10, wide_pixels=fractions.Fraction(4, 3))
    (_, a), (_, b) = video.frame_at(square, 0.5), video.frame_at(wide, 0.5)
    assert a.shape == b.shape == (240, 320, 3)
    aus = [video.extract_video(p, fps=2)[list(au_table.AU_COLUMNS)].to_numpy() for p in (square, wide)]
    assert np.nanmax(np.abs(aus[0] - aus[1])) < 0.5


def test_a_videos_face_boxes_are_in_its_frames_own_pixels(tmp_path):
    """Each row gives its face's box. A video over 1,280 px is measured scaled down, and its boxes
    are given in its own frame's pixels: 1,600 x 1,200 here, five times the 320 x 240 one's."""
    small = write_video(tmp_path / "small.mp4", 1, rate=4)
    large = write_video(tmp_path / "large.mp4", 1, rate=4, size=(1600, 1200))
    small_boxes, large_boxes = (video.extract_video(p, fps=2).sort_values("time_s")[list(au_table.BOX_COLUMNS)]
                                .to_numpy() for p in (small, large))
    assert small_boxes.shape == (2, 4) and not np.isnan(small_boxes).any()
    assert np.allclose(large_boxes, small_boxes * 5, atol=0.05 * small_boxes[:, 2:3] * 5)
    # Try it's frame panel: its downloads gave the box in the 1,280 px frame it analysed
    from fer_core.pipeline import analyze_photo, photo_to_dict

    _, rgb = video.frame_at(large, 0.0)
    assert rgb.shape[:2] == (960, 1280) and video.shown_frame_size(large, rgb) == (1600, 1200)
    shown = photo_to_dict(analyze_photo(rgb, "frame", None, original_size=video.shown_frame_size(large, rgb)), "", "")
    box = shown["faces"][0]["box"]
    assert (shown["width"], shown["height"]) == (1600, 1200) and shown["scaled_for_analysis"]
    assert np.allclose(box, large_boxes[0], atol=0.05 * large_boxes[0, 2])


def test_a_landmarker_a_script_names_between_two_videos_is_the_one_the_workers_load(tmp_path, monkeypatch):
    """The video workers kept what they started with: a script that named another landmarker
    (FER_LANDMARKER_MODEL) after a first video had the next measured by the old one, and cached
    under the new one's key. Here the new one is no landmarker, so the run must refuse it."""
    from fer_core.errors import FerError

    clip = write_video(tmp_path / "clip.mp4", 1, rate=4)
    assert video.extract_video(clip, fps=2, use_cache=False)["success"].eq(1).all()
    (tmp_path / "other.task").write_bytes(b"not a landmarker")
    monkeypatch.setenv("FER_LANDMARKER_MODEL", str(tmp_path / "other.task"))
    with pytest.raises(FerError, match="not a MediaPipe .task bundle"):
        video.extract_video(clip, fps=2, use_cache=False)


def test_a_phone_video_stored_sideways_is_measured_upright(tmp_path):
    """Phones store portrait video turned, with a display rotation players apply: frames come out
    as shown, so the face is measured upright (it was measured, and shown, on its side)."""
    upright = write_video(tmp_path / "upright.mp4", 1, rate=10)
    sideways = write_video(tmp_path / "sideways.mp4", 1, rate=10, sideways=True)
    (_, a), (_, b) = video.frame_at(upright, 0.5), video.frame_at(sideways, 0.5)
    assert a.shape == b.shape == (240, 320, 3)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 8  # the same picture, up to compression
    aus = [video.extract_video(p, fps=2)[list(au_table.AU_COLUMNS)].to_numpy() for p in (upright, sideways)]
    assert np.nanmax(np.abs(aus[0] - aus[1])) < 0.5


def test_a_cut_off_video_says_where_its_frames_end(tmp_path):
    """A file cut short (a copy stopped early) decodes quietly up to the cut: the table now ends
    with a row saying the video ends early, not silently short."""
    whole = write_video(tmp_path / "whole.mp4", 6, rate=10, faststart=True)
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    table = video.extract_video(cut, fps=2)
    last = table.iloc[-1]
    assert last["success"] == 0 and "no frames from" in last["reason"] and last["time_s"] < 5
    assert not (video.extract_video(whole, fps=2)["reason"].str.contains("no frames from")).any()


def test_an_avi_cut_short_says_where_its_frames_end(tmp_path):
    """An AVI cut short loses its index, and FFmpeg then gives the length of the frames it finds:
    it was measured as a whole, shorter video. Its header still counts every frame."""
    whole = write_video(tmp_path / "whole.avi", 4, rate=25, codec="mpeg4")
    data = whole.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    last = video.extract_video(cut, fps=2).iloc[-1]
    assert last["success"] == 0 and " of its 4.00 s (cut short?)" in last["reason"], last["reason"]
    assert not video.extract_video(whole, fps=2)["reason"].str.contains("no frames from").any()


def test_a_slideshow_video_is_not_taken_for_a_cut_off_one(tmp_path):
    """A frame every 2 s: the last one lasts to the end, so no frames are missing."""
    import fractions

    path = tmp_path / "slides.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fractions.Fraction(1, 2))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(4):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 40, np.uint8),
                                                                   format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    for fps in (2.0, 10.0):
        assert not video.extract_video(path, fps=fps)["reason"].str.contains("no frames from").any()


def test_a_video_extract_leaves_no_ray_record_beside_its_output(face_video, tmp_path):
    from fer_core.cli import main
    from fer_core.measure.ray_engine import record_path

    out = tmp_path / "au.csv"
    record_path(out).write_text("{}")
    assert main(["extract", str(face_video), "--out", str(out), "--workers", "1"]) == 0
    assert not record_path(out).exists()


def test_cli_extract_video_writes_time_s(face_video, tmp_path):
    out = tmp_path / "au.csv"
    done = subprocess.run([sys.executable, "-m", "fer_core", "extract", str(face_video), "--fps", "1", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "4 frames at 1 fps, 3 faces" in done.stderr and "1 x no face found" in done.stderr
    # its speed, as a folder's extraction says it (a reviewer sizing a long batch found none)
    assert re.search(r"\ntook [\d.]+ s for 4 frames \([\d.]+ frames/s\); cached ones are not measured again",
                     done.stderr), done.stderr
    back = au_table.read(out)
    assert back["time_s"].tolist() == pytest.approx([0.0, 1.0, 2.0, 3.0], abs=1e-6)
    assert back["success"].tolist() == [1, 1, 1, 0]
    # tables of images keep an empty time_s, and read back the same
    images = au_table.from_rows([{"file": "a.jpg", "face": 0, "success": 1, **dict.fromkeys(au_table.AU_COLUMNS, 1.0)}])
    au_table.write(images, tmp_path / "img.csv")
    assert au_table.read(tmp_path / "img.csv")["time_s"].isna().all()


def test_cli_extract_video_says_when_it_took_every_frame(tmp_path, capsys):
    """--fps 60 on a 5 fps clip said "5 frames at 60 fps", a rate the clip does not have."""
    from fer_core.cli import main

    path = write_video(tmp_path / "slow.mp4", 1, rate=5)
    assert main(["extract", str(path), "--fps", "60", "--out", str(tmp_path / "au.csv"), "--workers", "1"]) == 0
    assert "5 frames at 60 fps (the video has 5 fps on average: at most every frame)" in capsys.readouterr().err
    # a wrong path is said as typed, folder included (it said "clip.mp4: not a file")
    assert main(["extract", str(tmp_path / "nosuch" / "clip.mp4"), "--out", str(tmp_path / "y.csv")]) == 2
    assert f"{tmp_path / 'nosuch' / 'clip.mp4'}: not a file" in capsys.readouterr().err
    for option in (["--classes", "happy"], ["--crops"], ["--engine", "ray"]):  # --classes was ignored unsaid
        assert main(["extract", str(path), "--out", str(tmp_path / "x.csv"), *option]) == 2
        assert "are for folders of images, not a video" in capsys.readouterr().err


@pytest.mark.parametrize("name, codec", [("clip.webm", "libvpx"), ("clip.avi", "mpeg4"), ("clip.mov", "mpeg4")])
def test_other_containers(tmp_path, name, codec):
    path = write_video(tmp_path / name, 2, rate=10, codec=codec)
    assert video.is_video(path)
    times = [t for t, _ in video.sampled_frames(path, 2)]
    assert times == pytest.approx([0.0, 0.5, 1.0, 1.5], abs=0.02)
    assert video.probe_video(path).duration_s == pytest.approx(2.0, abs=0.15)


def test_bad_videos_are_one_line_errors(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 20)
    empty = tmp_path / "empty.mov"
    empty.write_bytes(b"")
    for path, message in ((fake, "not a readable video"), (empty, "file is empty")):
        done = subprocess.run([sys.executable, "-m", "fer_core", "extract", str(path), "--out", str(tmp_path / "x.csv")],
                              capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert done.returncode == 2 and message in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    with pytest.raises(video.VideoError, match="--fps must be above 0"):
        list(video.sampled_frames(fake, 0))


# -- damaged, unusual and cut-off files: real files built here --------------------------------------
def write_frames(path: Path, times: list[float], rate: int = 10, size: tuple[int, int] = (160, 120),
                 codec: str = "libx264", audio_s: float | None = None, faststart: bool = False,
                 noise: bool = False) -> Path:
    """A video whose frames are at ``times`` (seconds; a stream can start late or have two frames
    within a millisecond): flat grey, or random noise (``noise``: every frame a large packet), a
    keyframe each ``rate`` frames; ``audio_s`` seconds of silent audio beside it."""
    import fractions

    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as out:
        stream = out.add_stream(codec, rate=rate, options={"g": str(rate)})
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        stream.codec_context.time_base = fractions.Fraction(1, 90000)
        audio = None
        if audio_s:
            audio = out.add_stream("libopus" if path.suffix == ".webm" else "aac", rate=48000, layout="mono")
        for t in times:
            rgb = (rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8) if noise
                   else np.full((size[1], size[0], 3), 90, np.uint8))
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = round(t * 90000), fractions.Fraction(1, 90000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if audio is not None:
            step = audio.codec_context.frame_size or 960
            fmt = "fltp" if "fltp" in [f.name for f in audio.codec.audio_formats] else "flt"
            for k in range(0, int(audio_s * 48000), step):
                silence = av.AudioFrame.from_ndarray(np.zeros((1, step), np.float32), format=fmt, layout="mono")
                silence.sample_rate, silence.pts = 48000, k
                for packet in audio.encode(silence):
                    out.mux(packet)
            for packet in audio.encode():
                out.mux(packet)
    return path


def garble_keyframe(path: Path, at_s: float) -> Path:
    """The keyframe packet nearest ``at_s`` overwritten with noise, as a damaged disk or a broken
    copy leaves it (its first bytes kept)."""
    with av.open(str(path)) as container:
        packets = [(float(p.pts * p.time_base), p.pos, p.size) for p in container.demux(container.streams.video[0])
                   if p.size and p.is_keyframe]
    _, pos, size = min(packets, key=lambda p: abs(p[0] - at_s))
    data = bytearray(path.read_bytes())
    data[pos + 20: pos + size] = np.random.default_rng(1).integers(0, 256, size - 20, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def cut(path: Path, share: float, name: str) -> Path:
    """The first ``share`` of a file's bytes, as a copy stopped early leaves it."""
    data = path.read_bytes()
    out = path.with_name(name)
    out.write_bytes(data[: int(len(data) * share)])
    return out


def gaps(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of stretches without frames (by their words, as a reader of the table finds them)."""
    return table[table["reason"].str.contains(r"; no frames from | \(frames from ", regex=True)]


def test_a_webm_is_as_long_as_its_video_not_its_audio(tmp_path):
    """WebM gives its video stream no length; the container's is its longest stream's. 3 s of
    video beside 13 s of audio was a 13 s video: Try it's 5-minute limit measured the audio, and
    a second chunk of "frames are missing" rows followed the real frames. A WebM cut off short
    (its header says 6 s, its packets stop early) now says so, where it had no length to compare."""
    clip = write_frames(tmp_path / "talk.webm", [i / 10 for i in range(30)], codec="libvpx", audio_s=13)
    info = video.probe_video(clip)
    assert info.duration_s == pytest.approx(3.0, abs=0.05) and info.expected_end_s == pytest.approx(3.0, abs=0.05)
    table = video.extract_video(clip, fps=10)
    assert len(table) == 30 and gaps(table).empty, gaps(table)["reason"].tolist()
    whole = write_frames(tmp_path / "whole.webm", [i / 10 for i in range(60)], codec="libvpx", audio_s=6)
    table = video.extract_video(cut(whole, 0.6, "cut.webm"), fps=2)
    (reason,) = gaps(table)["reason"]
    assert reason.startswith("the video ends at ") and " of its 6.00 s (cut short?); no frames from " in reason
    assert table["time_s"].iloc[-1] < 4 and gaps(video.extract_video(whole, fps=2)).empty
    # cut short beside a longer audio track: measured against the video's own length (its track's
    # DURATION tag), not the audio's ("ends at 3.5 s of its 8.01 s" for 6 s of video)
    longer = write_frames(tmp_path / "longer.webm", [i / 10 for i in range(60)], codec="libvpx", audio_s=8)
    (reason,) = gaps(video.extract_video(cut(longer, 0.6, "cut_longer.webm"), fps=2))["reason"]
    assert " of its 6.00 s (cut short?)" in reason, reason


def test_an_audio_file_with_cover_art_is_not_a_video(tmp_path):
    """An M4A/MP4 song carries its cover as a one-picture "video" stream (an attached picture):
    it was measured as a 2 s still video, its chunks past the first failing to seek with "video
    is corrupt". Now it holds no video; a seek that fails says so, not "corrupt"."""
    song = tmp_path / "song.mp4"
    with av.open(str(song), "w") as out:
        audio = out.add_stream("aac", rate=48000, layout="mono")
        cover = out.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 64, 48, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        for packet in cover.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 128, np.uint8), format="rgb24")):
            out.mux(packet)
        for packet in cover.encode():
            out.mux(packet)
        step = audio.codec_context.frame_size
        for k in range(0, 48000 * 2, step):
            silence = av.AudioFrame.from_ndarray(np.zeros((1, step), np.float32), format="fltp", layout="mono")
            silence.sample_rate, silence.pts = 48000, k
            for packet in audio.encode(silence):
                out.mux(packet)
        for packet in audio.encode():
            out.mux(packet)
    with pytest.raises(video.VideoError, match="^song.mp4: holds no video stream, only sound or pictures; choose a file"):
        video.probe_video(song, "song.mp4")
    with av.open(str(song)) as container, pytest.raises(video.VideoError) as caught:
        video._seek(container, container.streams.video[0], 1.0, "song.mp4")
    assert str(caught.value).startswith("song.mp4: cannot seek in this video (")


def test_a_damaged_keyframe_costs_its_own_stretch_not_the_rest(tmp_path):
    """A keyframe at 4 s overwritten: decoding stopped there and the rest of the chunk (here the
    whole video) was one row. Packets that fail are skipped, the frames after them measured, and
    one row names the stretch really lost."""
    clip = garble_keyframe(write_frames(tmp_path / "damaged.mp4", [i / 10 for i in range(80)], noise=True,
                                        faststart=True), 4.0)
    table = video.extract_video(clip, fps=5)
    (row,) = gaps(table).itertuples()
    assert row.reason.startswith("video is corrupt (") and 3 <= row.time_s < 4.5
    lost_until = float(row.reason.split(" s to ")[1].split(" s")[0])
    assert lost_until < 5, row.reason
    frames = table.loc[video.frame_rows(table), "time_s"]
    assert frames.max() >= 7.6 and len(frames) >= 40 - 1 - round((lost_until - row.time_s) * 5)
    assert set(table.loc[video.frame_rows(table), "reason"]) == {"no face found"}


def test_frames_a_millisecond_apart_and_a_frame_that_fails_are_rows_of_their_own(tmp_path, monkeypatch):
    """Two frames 0.5 ms apart both sampled: MediaPipe's VIDEO mode refused the second's equal
    timestamp, which cost the whole chunk (one row); and any other error of one frame did too.
    Each frame now has its row, at a time of its own."""
    clip = write_frames(tmp_path / "close.mp4", [0.0, 0.05, 0.1996, 0.2001, 0.3, 0.4, 0.5, 0.6])
    table = video.extract_video(clip, fps=10)
    assert table["time_s"].tolist() == pytest.approx([0.0, 0.2, 0.201, 0.3, 0.4, 0.5, 0.6])
    assert set(table["reason"]) == {"no face found"}, set(table["reason"])
    video._init_worker()
    real = video._analyzer.detect_video_frame
    calls = []

    def fails_once(tracker, rgb, ms):
        calls.append(ms)
        if len(calls) == 3:
            raise RuntimeError("CalculatorGraph::Run() failed: unexpected tensor shape")
        return real(tracker, rgb, ms)

    monkeypatch.setattr(video._analyzer, "detect_video_frame", fails_once)
    out = video._measure_chunk(video.ChunkTask(str(clip), 0.0, None, 10.0, 0.7, "close.mp4"))
    assert [m for _, m in out] == [[], [], "RuntimeError: CalculatorGraph::Run() failed: unexpected tensor shape",
                                   [], [], [], []]
    assert calls == sorted(set(calls))


def test_a_cut_video_whose_times_start_late_says_it_was_cut(tmp_path):
    """A clip taken from a longer recording starts at 3 s: cut short, it was compared with its
    length (6 s), not with where it should end (9 s), and never said so."""
    whole = write_frames(tmp_path / "late.mp4", [3 + i / 10 for i in range(60)], noise=True, faststart=True)
    table = video.extract_video(cut(whole, 0.5, "late_cut.mp4"), fps=2)
    (reason,) = gaps(table)["reason"]
    assert "(cut short?)" in reason and " of its 9.00 s" in reason
    assert table["time_s"].iloc[0] == pytest.approx(3.0)
    info = video.probe_video(whole)
    assert info.start_s == pytest.approx(3.0) and info.expected_end_s == pytest.approx(9.0, abs=0.01)


def patch_box(path: Path, box: bytes, offset: int, value: int, name: str) -> Path:
    """A copy of an MP4 with 4 bytes of its first ``box`` (``mdhd``: the video track's header)
    at ``offset`` past the box's name overwritten, as one damaged run of bytes leaves it."""
    data = bytearray(path.read_bytes())
    at = data.index(box) + 4 + offset
    data[at:at + 4] = value.to_bytes(4, "big")
    out = path.with_name(name)
    out.write_bytes(bytes(data))
    return out


def test_a_frame_that_says_it_outlasts_the_video_does_not_hide_the_frames_after_it(tmp_path):
    """An MP4 whose track timescale is damaged (1 where 90,000 was written) decodes 1 of its 50
    frames: the first says it lasts an hour of a 2 s video and the demuxer drops the rest. The
    table was that one frame, without a word; a row now says the frames after it are missing, in
    a chunk as at the end. The video whole, or ended early by its edit list, has no such row."""
    whole = write_frames(tmp_path / "whole.mp4", [i / 25 for i in range(50)], rate=25)
    version = whole.read_bytes()[whole.read_bytes().index(b"mdhd") + 4]
    damaged = patch_box(whole, b"mdhd", 4 + (16 if version == 1 else 8), 1, "damaged.mp4")  # the timescale
    with av.open(str(damaged)) as container:
        assert container.streams.video[0].frames == 50
    table = video.extract_video(damaged, fps=10)
    assert video.frame_rows(table).sum() == 1
    (reason,) = gaps(table)["reason"]
    assert reason == ("a frame at 0.00 s says it lasts 3,600.00 s, past the video's end at 2.00 s (its header may be "
                      "damaged; re-save it); no frames from 0.05 s to the end")
    seen: dict = {}
    sampled = [t for t, _ in video.sampled_frames(damaged, 10, 0.0, 1.2, seen=seen)]
    (row,) = video._gap_rows(video.ChunkTask(str(damaged), 0.0, 1.2, 10, 2.0, "damaged.mp4"), sampled, seen, None)
    assert row[1].endswith("(its header may be damaged; re-save it); no frames from 0.05 s to 1.20 s")
    assert gaps(video.extract_video(whole, fps=10)).empty
    trimmed = patch_box(whole, b"elst", 8, 1000, "trimmed.mp4")  # its edit list shows the first 1 s (of 1000)
    info = video.probe_video(trimmed)
    assert info.duration_s == pytest.approx(1.0) and info.expected_end_s == pytest.approx(1.0)
    table = video.extract_video(trimmed, fps=10)
    assert gaps(table).empty and video.frame_rows(table).sum() == 10


def test_a_video_codec_without_a_decoder_is_one_line(tmp_path):
    clip = write_video(tmp_path / "odd.avi", 1, rate=10, codec="mpeg4", size=(64, 48))
    clip.write_bytes(clip.read_bytes().replace(b"FMP4", b"ZQZQ"))  # a codec tag FFmpeg has no decoder for
    with pytest.raises(video.VideoError, match=r"^odd.avi: its video codec is not supported; convert it to MP4"):
        video.probe_video(clip, "odd.avi")


def test_a_header_that_claims_days_is_refused_before_any_chunk_is_planned(tmp_path, monkeypatch):
    """One byte of an AVI's frame-rate field (found by fuzzing) made 2 s of frames last 233 years:
    ``extract`` planned 600 million chunks, a hang and an out-of-memory kill before one frame was
    read. A video over ``MAX_VIDEO_HOURS`` is now one line, and no worker is started for it."""
    import struct

    clip = write_video(tmp_path / "odd.avi", 2, rate=25, codec="mpeg4", size=(64, 48))
    data = bytearray(clip.read_bytes())
    scale = data.index(b"strh") + 8 + 20  # AVISTREAMHEADER.dwScale: a frame lasts dwScale / dwRate s
    data[scale:scale + 4] = struct.pack("<I", 100_000)  # 50 frames of 4,000 s each: 55.6 hours
    clip.write_bytes(bytes(data))
    assert video.probe_video(clip).duration_s == pytest.approx(200_000, rel=0.01)

    def no_pool(*args, **kwargs):
        raise AssertionError("a worker pool was started for a video that is refused")

    monkeypatch.setattr(video, "shared_pool", no_pool)
    with pytest.raises(video.VideoError, match=r"^odd.avi: the video says it lasts 55.6 hours, over the limit of 24 "
                                               r"hours; cut the video first \(or re-save it: its header may be damaged\)$"):
        video.extract_video(clip, fps=10, name="odd.avi")
    monkeypatch.setenv("FER_MAX_VIDEO_HOURS", "0.0001")  # a limit one sets holds for any video
    with pytest.raises(video.VideoError, match="over the limit of 0.0001 hours"):
        video.extract_video(write_video(tmp_path / "short.mp4", 1, size=(64, 48)), fps=10)
    from fer_core.i18n import message, using_language

    with using_language("ko"):
        assert message("odd.avi: the video says it lasts 55.6 hours, over the limit of 24 hours; cut the video "
                       "first (or re-save it: its header may be damaged)").startswith("odd.avi: 동영상 길이가 55.6시간")


def test_a_video_that_opens_but_gives_no_frame_is_one_line_not_an_empty_table(tmp_path):
    """A one-frame WebM cut in its frame (found by fuzzing) opened and probed fine, then gave an
    empty table: no row said the file was unusable ("0 frames" in the CLI, nothing in Try it)."""
    clip = write_video(tmp_path / "one.webm", 0.1, rate=10, codec="libvpx", size=(64, 48))
    whole = clip.read_bytes()
    clip.write_bytes(whole[:len(whole) // 2])
    assert video.probe_video(clip).duration_s == pytest.approx(0.1, abs=0.01)
    with pytest.raises(video.VideoError, match=r"^one.webm: no frame of it could be decoded; the video is empty or "
                                               r"damaged, re-save it$"):
        video.extract_video(clip, fps=10, name="one.webm")
    from fer_core.i18n import message, using_language

    with using_language("ko"):
        assert message("one.webm: no frame of it could be decoded; the video is empty or damaged, re-save it") \
            == "one.webm: 프레임을 하나도 읽을 수 없습니다. 동영상이 비어 있거나 손상되었으니 다시 저장하세요"


def test_a_refused_video_is_named_as_given_and_ffmpeg_says_why_without_the_path(tmp_path):
    """FFmpeg's errors end in the file's path: Try it's refusal of a damaged upload read
    "clip.mp4: not a readable video (InvalidDataError: [Errno 1094995529] Invalid data found when
    processing input: '/tmp/fer-video-…"; cut at 80 characters, the reason itself was lost."""
    temp = tmp_path / "fer-video-x1y2.mp4"
    temp.write_bytes(b"not a video\n" * 100)
    with pytest.raises(video.VideoError) as caught:
        video.probe_video(temp, "clip.mp4")
    assert str(caught.value) == ("clip.mp4: not a readable video (InvalidDataError: Invalid data found when processing "
                                 "input); it is damaged or cut short; re-save or copy it again")


def test_an_mp4_cut_before_its_index_is_called_cut_short_not_the_wrong_kind(tmp_path):
    """An MP4 cut off before the index at its end was told "use MP4, MOV, AVI or WebM": it is one."""
    whole = write_frames(tmp_path / "clip.mp4", [i / 10 for i in range(30)])  # the index (moov) last
    with pytest.raises(video.VideoError, match=r"^half\.mp4: not a readable video \(.*\); it is damaged or cut "
                                               r"short; re-save or copy it again$"):
        video.probe_video(cut(whole, 0.5, "half.mp4"), "half.mp4")
    other = tmp_path / "clip.bin"
    other.write_bytes(b"not a video\n" * 100)
    with pytest.raises(video.VideoError, match="use MP4, MOV, AVI or WebM$"):
        video.probe_video(other)


def test_reasons_name_the_file_the_person_gave_not_a_temporary_one(tmp_path):
    """Try it measures a temporary copy: a damaged upload's row said
    "/tmp/fer-video-…mp4: video is corrupt …"; it now names no path (the row's file is the name)."""
    temp = garble_keyframe(write_frames(tmp_path / "fer-video-x1y2.mp4", [i / 10 for i in range(20)],
                                        faststart=True), 0.0)
    table = video.extract_video(temp, fps=5, name="clip.mp4")
    (reason,) = gaps(table)["reason"]
    assert reason.startswith("video is corrupt (") and "fer-video" not in reason
    assert set(table["file"]) == {"clip.mp4"}


def test_a_webm_at_its_own_frame_rate_keeps_every_frame(tmp_path):
    """WebM stores times in whole milliseconds (frame 1 of 30 fps at 0.033 s, before 1/30 s):
    --fps 30 kept 40 of its 60 frames."""
    clip = write_frames(tmp_path / "r30.webm", [i / 30 for i in range(60)], rate=30, size=(64, 48), codec="libvpx")
    times = [t for t, _ in video.sampled_frames(clip, 30)]
    assert len(times) == 60
    assert len([t for t, _ in video.sampled_frames(clip, 15)]) == 30


def test_a_chunk_that_runs_out_of_time_says_what_to_do_for_a_video(face_video, monkeypatch):
    """The pool's timeout advice is for an image ("try a smaller image"); a video's chunk says
    to measure fewer frames per second or cut the video, in both languages."""
    from fer_core.i18n import message, using_language

    real_pool = video.shared_pool

    def pool_with_a_short_timeout(*args, **options):
        """The pool extract_video asks for, made with its own options: made here first, it kept the
        test's (the crash message of any input) for every later video in this process."""
        pool = real_pool(*args, **options)
        monkeypatch.setattr(pool, "timeout_s", 0.05)
        return pool

    monkeypatch.setattr(video, "shared_pool", pool_with_a_short_timeout)
    table = video.extract_video(face_video, fps=25)
    (reason,) = table["reason"]
    assert reason == ("took over 0.05 s and was stopped; measure fewer frames per second or cut the video "
                      "(frames from 0.0 s to the end)")
    with using_language("ko"):
        assert english_left([message(reason)]) == []


def test_video_messages_read_in_korean(face_video, tmp_path):
    """Every line a video can end in, as fer_core writes it, in Korean: refusals of a file, of
    --fps and of a frame size, rows of missing frames, chunks skipped, a frame asked past the end."""
    from fer_core.i18n import message, using_language

    lines = []
    for call in (lambda: video.probe_video(tmp_path, "clip.mp4"), lambda: video.check_fps(0),
                 lambda: video.frame_at(face_video, 99.0)):
        with pytest.raises(video.VideoError) as caught:
            call()
        lines.append(str(caught.value))
    for limit, value in (("FER_MAX_ASPECT", "1.2"), ("FER_MAX_SIDE", "300")):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(limit, value)
            with pytest.raises(video.VideoError) as caught:
                video.probe_video(face_video, "clip.mp4")
            lines.append(str(caught.value))
    lines += [
        "clip.mp4: file is larger than 4 GB; cut the video first",
        "clip.mp4: its video codec is not supported; convert it to MP4 (H.264)",
        "clip.mp4: cannot seek in this video (x)",
        "the video ends at 2.30 s of its 6.00 s (cut short?); no frames from 2.25 s to the end",
        "frames are missing; no frames from 2.97 s to 12.00 s",
        "a frame at 0.00 s says it lasts 3,600.00 s, past the video's end at 2.00 s (its header may be damaged; "
        "re-save it); no frames from 0.05 s to the end",
        "a frame at 0.00 s says it lasts 512.00 s, past the video's end at 2.00 s (its header may be damaged; "
        "re-save it); no frames from 0.05 s to 1.20 s",
        "video is corrupt (x); no frames from 9.75 s to 12.00 s",
        "video is corrupt (x); no frames from 9.75 s to the end",
        "the face detector crashed on this part of the video (signal 9); it was skipped (frames from 4.0 s to 8.0 s)",
        "took over 300 s and was stopped; try a smaller image",
    ]
    with using_language("ko"):
        korean = [message(line) for line in lines]
    assert english_left(korean, ("clip.mp4", "MP4", "MOV", "AVI", "WebM", "H.264")) == [], list(zip(lines, korean))
    assert korean[2] == "99.00초에 프레임이 없습니다. 동영상이 그보다 짧습니다"


def test_extract_counts_frames_not_rows_and_names_the_video_formats_it_reads(tmp_path, capsys):
    """The CLI's "N frames" counted the row of a cut-off video's missing frames as a frame; a video
    of another format (MKV) was only "not a folder"."""
    from fer_core.cli import main

    whole = write_frames(tmp_path / "whole.mp4", [i / 10 for i in range(60)], noise=True, faststart=True)
    clip = cut(whole, 0.6, "cut.mp4")
    # a video without a face: the table is written, and the status says nothing was measured (2)
    assert main(["extract", str(clip), "--fps", "2", "--out", str(tmp_path / "au.csv"), "--workers", "1"]) == 2
    table = au_table.read(tmp_path / "au.csv")
    frames = len(table) - len(gaps(table))
    assert len(gaps(table)) == 1 and frames >= 5
    err = capsys.readouterr().err
    assert f"{frames} frames at 2 fps, 0 faces" in err and f"; {frames} frames without a face or unreadable; " \
        "1 stretch of the video without frames" in err
    assert err.strip().splitlines()[-1] == f"error: no face was measured; {tmp_path / 'au.csv'} says why for each file"
    (tmp_path / "folder").mkdir()  # in a folder, the summary counts the stretch too
    (tmp_path / "folder" / "cut.mp4").write_bytes(clip.read_bytes())
    assert main(["extract", str(tmp_path / "folder"), "--fps", "2", "--out", str(tmp_path / "f.csv"), "--workers", "1"]) == 2
    assert (f"1 video: {frames} frames at 2 fps, 0 faces -> {tmp_path / 'f.csv'}; {frames} frames of videos without a "
            "face; 1 stretch of videos without frames") in capsys.readouterr().err
    mkv = tmp_path / "clip.mkv"
    mkv.write_bytes(whole.read_bytes())
    assert main(["extract", str(mkv), "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {mkv}: not a folder of images or a video this reads") and "MP4, MOV, AVI or WebM" in err


def test_a_folder_of_videos_is_extracted_in_one_command(tmp_path, capsys):
    """A researcher's folder of sessions, happy/session.mp4 and sad/session.mp4 beside a photo: one
    command measures every video frame by frame into one table, each row named by the video's
    path in the folder (the two session.mp4 stay apart) and labelled by its emotion folder; a
    damaged video is one row saying why, and the rest is kept. They had been passed over ("extract
    each on its own"). A rerun reads the videos from the cache."""
    from PIL import Image

    from fer_core.cli import main

    folder = tmp_path / "sessions"
    for emotion, seconds in (("happy", 2), ("sad", 1)):
        (folder / emotion).mkdir(parents=True)
        write_video(folder / emotion / "session.mp4", seconds, rate=10, size=(160, 120))
    (folder / "sad" / "broken.mp4").write_bytes(b"\0" * 64)
    from skimage import data

    Image.fromarray(data.astronaut()[10:250, 130:370]).save(folder / "happy" / "still.jpg")
    out = tmp_path / "au.csv"
    assert main(["extract", str(folder), "--fps", "2", "--out", str(out), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert err.splitlines()[0] == (f"1 image, 1 face; 3 videos: 6 frames at 2 fps, 6 faces -> {out}; 0 without a face "
                                   "or unreadable; 0 frames of videos without a face; 1 video unreadable")
    assert "sad/broken.mp4: not a readable video" in err
    table = au_table.read(out)
    clips = table[table["time_s"].notna()]
    assert clips.groupby("file")["time_s"].apply(list).to_dict() == {
        "happy/session.mp4": pytest.approx([0.0, 0.5, 1.0, 1.5]), "sad/session.mp4": pytest.approx([0.0, 0.5])}
    assert clips.groupby("file")["label"].unique().map(list).to_dict() == {"happy/session.mp4": ["happy"],
                                                                           "sad/session.mp4": ["sad"]}
    broken = table[table["file"] == "sad/broken.mp4"]
    assert broken[["label", "success"]].values.tolist() == [["sad", 0]] and broken["time_s"].isna().all()
    assert table.loc[table["file"] == "happy/still.jpg", "success"].tolist() == [1]

    def measured_again(*args, **kwargs):
        raise AssertionError("a cached video was measured again")

    with pytest.MonkeyPatch.context() as patch:  # the rerun measures nothing: every chunk is cached
        patch.setattr(video, "shared_pool", measured_again)
        assert main(["extract", str(folder), "--fps", "2", "--out", str(tmp_path / "again.csv"), "--workers", "1"]) == 0
    assert au_table.read(tmp_path / "again.csv").equals(table)
    # scoring the frames says they are not independent faces
    assert main(["evaluate", "--au-table", str(out)]) == 0
    said = capsys.readouterr()
    assert "note: 6 of the rows scored are frames of 2 videos: a video's frames are near copies" in said.err
    # each video once; the unreadable one left out, as evaluate --images leaves out an unreadable image
    assert "\nper video (the emotion of its frames' highest mean probability): n 2, accuracy " in said.out
    assert "left out 1 row: unreadable (not an image or a video, damaged, empty, too large, or of a format not read)" in said.err
    # a rate no video can be measured at is refused before anything is measured, not each video's failure
    assert main(["extract", str(folder), "--fps", "0", "--out", str(tmp_path / "zero.csv"), "--workers", "1"]) == 2
    assert capsys.readouterr().err.strip() == "error: --fps must be above 0 and at most 60"
    assert not (tmp_path / "zero.csv").exists()
    # --fps on a folder of images alone, or with an option that passes videos over, is said
    assert main(["extract", str(folder / "happy"), "--fps", "2", "--crops", "--out", str(tmp_path / "x.csv")]) == 2
    assert "with --crops a folder's videos are passed over" in capsys.readouterr().err
    (tmp_path / "photos" / "misc").mkdir(parents=True)  # a folder of photos is not named as holding videos
    Image.fromarray(data.astronaut()).save(tmp_path / "photos" / "a.jpg")
    Image.fromarray(data.astronaut()).save(tmp_path / "photos" / "misc" / "b.jpg")
    assert main(["extract", str(tmp_path / "photos"), "--fps", "2", "--out", str(tmp_path / "x.csv")]) == 2
    assert "--fps is for videos (MP4, MOV, AVI or WebM), and this folder holds none" in capsys.readouterr().err
    # a folder per participant is no emotion's: --fps says to extract each, an MKV is counted as a video
    (tmp_path / "participants" / "p01").mkdir(parents=True)
    (folder / "happy" / "session.mp4").rename(tmp_path / "participants" / "p01" / "session.mp4")
    (tmp_path / "participants" / "p02.mkv").write_bytes(b"\0" * 64)
    assert main(["extract", str(tmp_path / "participants"), "--fps", "2", "--out", str(tmp_path / "x.csv")]) == 2
    assert ("and none is read here: p01/ is not named after an emotion or lies too deep; extract it on its own "
            f"(extract {tmp_path / 'participants' / 'p01'} --fps 2)") in capsys.readouterr().err
    assert main(["extract", str(tmp_path / "participants"), "--out", str(tmp_path / "x.csv")]) == 2  # nothing measured
    assert capsys.readouterr().err.splitlines()[0] == (
        f"0 images, 0 faces -> {tmp_path / 'x.csv'}; 0 without a face or unreadable; 1 folder passed over; "
        "1 video of another format passed over (convert to MP4)")


def test_a_folder_of_short_clips_keeps_both_workers_busy(tmp_path):
    """A dataset of short clips (a chunk each) was measured one clip after another, one worker
    idle: the chunks of all the folder's videos now share the workers in one batch."""
    from fer_core.images import scan_images
    from fer_core.measure import workers

    for name in ("a.mp4", "b.mp4"):
        write_video(tmp_path / name, 1, rate=10, size=(160, 120))
    workers.close_workers()  # no worker left from another test
    said = []  # the videos are read (hashed whole) first: that is said too, before the first chunk
    table = video.extract_videos(video.videos_in(scan_images(tmp_path).skipped), fps=2, workers=2, use_cache=False,
                                 reading=lambda done, total: said.append(("read", done, total)),
                                 progress=lambda done, total: said.append(("chunks", done, total)))
    assert said == [("read", 0, 2), ("read", 1, 2), ("read", 2, 2), ("chunks", 0, 2), ("chunks", 1, 2), ("chunks", 2, 2)]
    assert table.groupby("file")["time_s"].apply(list).to_dict() == {"a.mp4": [0.0, 0.5], "b.mp4": [0.0, 0.5]}
    assert table["success"].all()
    assert len(workers.shared_pool("video", 2, video._measure_chunk)._workers) == 2


MEMORY_PROBE = WRITER + textwrap.dedent('''
    import json, resource, sys
    from fer_core.measure import video

    path = write_video(sys.argv[1], 600, rate=10, size=(160, 120), face_until=0)  # 10 minutes, no face
    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    frames, at_start = 0, None
    for t, rgb in video.sampled_frames(path, 10):
        frames += 1
        if frames == 300:
            at_start = peak_mb()
    decoded = peak_mb()

    def worker_mb(field):  # the measuring worker process, as the kernel counts it
        import multiprocessing
        (child,) = multiprocessing.active_children()
        status = open(f"/proc/{child.pid}/status").read()
        return int(status.split(field + ":")[1].split()[0]) / 1024

    rss = {}
    table = video.extract_video(path, fps=0.5, progress=lambda done, total: rss.setdefault(done, worker_mb("VmRSS"))
                                if done else None)
    print(json.dumps({"frames": frames, "at_start": at_start, "decoded": decoded, "rows": len(table),
                      "last": float(table["time_s"].max()), "chunks": len(rss), "worker_first": rss[1],
                      "worker_last": rss[max(rss)], "worker_peak": worker_mb("VmHWM"), "parent": peak_mb()}))
''')


def test_memory_stays_flat_on_a_ten_minute_video(tmp_path):
    """6,000 frames of 160x120 are 345 MB as a list; streamed, the decoder's peak grows by less
    than 25 MB from frame 300 to frame 6,000 (measured: 0; the bound leaves room for codec
    buffers). The measuring worker (MediaPipe's models, ~320 MB at start) gets a fresh tracker per
    chunk: its memory from the first of the ten chunks to the last grows by less than 50 MB
    (measured: 15 MB; MediaPipe's allocations settle after some 20 trackers, ~40 MB, then stay
    flat), and its peak stays under 600 MB."""
    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(tmp_path / "long.mp4")], capture_output=True,
                          text=True, cwd=ROOT, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    m = json.loads(done.stdout.strip().splitlines()[-1])
    assert m["frames"] == 6000
    assert m["decoded"] - m["at_start"] < 25, m
    assert m["rows"] == 300 and m["last"] == pytest.approx(598.0, abs=0.2)
    assert m["chunks"] == 10 and m["worker_last"] - m["worker_first"] < 50, m
    assert m["worker_peak"] < 600, m


# -- Try it's video tab ---------------------------------------------------------------------------
from apptest_helpers import charts, english_left, page_texts, run_app, texts  # noqa: E402
from apptest_helpers import plotly_values as _values  # noqa: E402
from conftest import BUNDLED_AU_MODEL  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402
from test_try_it import TRY_IT, download, served  # noqa: E402, F401 (served: the fixture)

T = 240  # the first video starts the measuring worker (MediaPipe)


@pytest.fixture
def uploads_dir(tmp_path, monkeypatch) -> Path:
    """Where the page keeps the uploaded video (a temporary file), so a test can look and none is left."""
    import tempfile

    folder = tmp_path / "uploads"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _upload_video(at: AppTest, path: Path) -> AppTest:
    at.file_uploader(key="try_video").set_value((path.name, path.read_bytes(), "video/mp4"))
    return run_app(at, T)


def test_try_it_video_lines_frame_and_downloads(models_dir, face_video, served, uploads_dir):  # noqa: F811
    at = run_app(AppTest.from_file(TRY_IT), T)
    assert "Upload a video to see its AUs and emotions over time." in texts(at.info)
    _upload_video(at, face_video)
    assert "8 frames sampled at 2 per second, a face measured in 6 of them." in texts(at.caption)
    lines = {c["layout"]["title"]["text"]: c for c in charts(at) if c["data"][0].get("mode") == "lines+markers"}
    emotions = lines[f"Emotion probabilities over time ({BUNDLED_AU_MODEL})"]
    assert [tr["name"] for tr in emotions["data"]] == ["angry", "disgust", "happy", "neutral", "sad", "surprise"]
    assert all(len(_values(tr["x"])) == 8 for tr in emotions["data"]) and emotions["layout"]["xaxis"]["title"]["text"] == "time (s)"
    aus = lines["AU intensities over time (first face of each frame)"]
    assert [tr["name"] for tr in aus["data"]] == ["AU06 cheek raiser", "AU12 lip corner puller", "AU04 brow lowerer",
                                                  "AU01 inner brow raiser"]
    # the chosen frame is explained like a photo: the first sampled frame, then the one the slider picks
    assert "## face.mp4 at 0.00 s" in texts(at.markdown)
    assert any(m.startswith("#### Predicted: ") for m in texts(at.markdown))
    before = [c.proto.spec for c in at.get("plotly_chart")]
    at.select_slider(key="try_video_time").set_value(1.52)
    run_app(at, T)
    assert "## face.mp4 at 1.52 s" in texts(at.markdown) and "## face.mp4 at 0.00 s" not in texts(at.markdown)
    # the charts are the same figures at another time: Streamlit names a chart by its figure, and a
    # line marking the time made each click's chart a new one, so the next click was dropped
    assert [c.proto.spec for c in at.get("plotly_chart")][:2] == before[:2]
    # a click on a chart picks the nearest sampled frame, once: the slider moved later wins
    at.session_state["try_video_emotions"] = {"selection": {"points": [{"x": 2.1, "y": 0.5}], "point_indices": [4],
                                                            "box": [], "lasso": []}}
    run_app(at, T)
    assert "## face.mp4 at 2.00 s" in texts(at.markdown)
    at.select_slider(key="try_video_time").set_value(0.52)
    run_app(at, T)
    assert "## face.mp4 at 0.52 s" in texts(at.markdown)
    # the downloads parse back: the AU table in the CLI's format, the emotions per frame
    _, raw = download(at, served, "try_video_csv")
    table = au_table.read(io.BytesIO(raw))
    assert table["time_s"].tolist() == pytest.approx([0.0, 0.52, 1.0, 1.52, 2.0, 2.52, 3.0, 3.52], abs=1e-6)
    assert table["success"].tolist() == [1] * 6 + [0] * 2
    _, raw = download(at, served, "try_video_emotions_csv")
    probs = pd.read_csv(io.BytesIO(raw))
    # predict --au-table's table of the same rows: page and CLI results line up, column for column
    from fer_core.emotions import SIX_EMOTIONS
    from fer_core.pipeline import predict_table
    from fer_core.predictors.registry import load_predictor

    cli = predict_table(table, load_predictor(BUNDLED_AU_MODEL))
    assert list(probs.columns) == list(cli.columns) and probs["time_s"].tolist() == pytest.approx(cli["time_s"].tolist())
    assert probs["emotion"].fillna("").tolist() == cli["emotion"].fillna("").tolist()
    sums = probs[[f"p_{e}" for e in SIX_EMOTIONS]].sum(axis=1, min_count=1)
    assert sums[:6].to_numpy() == pytest.approx(1.0, abs=1e-3) and sums[6:].isna().all()
    # the upload is one temporary file, replaced (not added to) by the next video
    assert len(list(uploads_dir.iterdir())) == 1
    _upload_video(at, write_video(uploads_dir.parent / "other.mp4", 1, rate=10))
    assert len(list(uploads_dir.iterdir())) == 1 and "## other.mp4 at 0.00 s" in texts(at.markdown)


def test_try_it_video_too_long_and_not_a_video(models_dir, tmp_path, uploads_dir):
    long = write_video(tmp_path / "long.mp4", 301, rate=1, size=(64, 48), face_until=0)
    at = run_app(AppTest.from_file(TRY_IT), T)
    _upload_video(at, long)
    assert texts(at.error) == ["long.mp4: the video is 301 s long; Try it takes videos of up to 5 minutes (cut it, or "
                               "measure it with python -m fer_core extract)."]
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"\x00\x00\x00\x18ftypmp42 but nothing after")
    _upload_video(at, fake)
    assert len(at.error) == 1 and at.error[0].value.startswith("fake.mp4: not a readable video")
    assert not list(uploads_dir.iterdir()), "a refused video leaves no temporary file"


def test_try_it_video_in_korean(models_dir, face_video, uploads_dir):
    at = AppTest.from_file(TRY_IT)
    at.query_params["lang"] = "ko"
    run_app(at, T)
    assert [tab.label for tab in at.tabs] == ["사진", "동영상"]
    _upload_video(at, face_video)
    assert "초당 2장씩 8개 프레임을 추출했고, 그중 6개에서 얼굴을 측정했습니다." in texts(at.caption)
    titles = [c["layout"]["title"]["text"] for c in charts(at)]
    assert f"시간에 따른 감정 확률 ({BUNDLED_AU_MODEL})" in titles
    assert english_left(page_texts(at) + titles, (BUNDLED_AU_MODEL, "face.mp4")) == []


def test_try_it_offers_only_frames_it_decoded_to_explain(models_dir, tmp_path, uploads_dir):
    """A cut-off video's row of missing frames sits at a time after its last frame (2.75 s of a
    video whose frames end at 3.4 s, sampled to 2.5 s): the slider offered it, and choosing it
    ended in "no frame at 2.75 s; the video is shorter", in English on the Korean page, where the
    frame's panel was. The slider offers the frames that were decoded, and counts only those."""
    whole = write_video(tmp_path / "whole.mp4", 6, rate=10, faststart=True)
    clip = cut(whole, 0.6, "cut.mp4")
    at = AppTest.from_file(TRY_IT)
    at.query_params["lang"] = "ko"
    run_app(at, T)
    _upload_video(at, clip)
    (_, table), = at.session_state["try_video_tables"].values()
    (gap,) = gaps(table)["time_s"]
    frames = sorted(set(table["time_s"]) - {gap})
    slider = at.select_slider(key="try_video_time")
    assert slider.options == [f"{v:.2f}초" for v in frames] and f"{gap:.2f}초" not in slider.options  # Korean (was "s")
    assert f"초당 2장씩 {len(frames)}개 프레임을 추출했고" in " ".join(texts(at.caption))
    # where its frames end is said, as the command line says it (the page said nothing)
    assert texts(at.warning) == ["cut.mp4: 동영상이 6.00초 가운데 2.30초에서 끝납니다 (잘린 파일일까요?). "
                                 "2.25초부터 끝까지 프레임이 없습니다"]
    # nor is the missing stretch a row of the emotions download, where it read as a frame without a face
    from fer_core.predictors.registry import load_predictor

    assert sorted(video.emotion_over_time(table, load_predictor(BUNDLED_AU_MODEL))["time_s"]) == frames
    slider.set_value(frames[-1])
    run_app(at, T)
    assert f"## cut.mp4, {frames[-1]:.2f}초" in texts(at.markdown) and not at.error


def test_try_it_keeps_two_videos_of_one_name_apart_and_says_why_a_video_is_unreadable(models_dir, tmp_path,
                                                                                       uploads_dir):
    """Phones name videos alike (IMG_0001.MOV): the frame shown belonged to the first video of the
    name. A video whose frames cannot be decoded says so, not "no face found"."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_video(tmp_path / "a" / "clip.mp4", 1, rate=10)
    second = write_video(tmp_path / "b" / "clip.mp4", 1, rate=10, size=(256, 256))
    at = run_app(AppTest.from_file(TRY_IT), T)
    _upload_video(at, first)
    assert any(c.startswith("The charts follow the largest face of each frame, here face 1: with several people") for c in texts(at.caption))
    _upload_video(at, second)
    shown = [r.image.shape[:2] for r, _ in at.session_state["try_video_frames"].values()]
    assert (256, 256) in shown, "the second clip.mp4's frame is analysed, not the first's"
    whole = write_video(tmp_path / "whole.mp4", 4, rate=10, faststart=True).read_bytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(whole[: len(whole) // 12])
    _upload_video(at, broken)
    assert [e for e in texts(at.error) if e.startswith("broken.mp4: ") and "no frames from" in e]
    assert not any("no face found" in w for w in texts(at.warning))


def test_the_face_a_video_tracks_is_found_among_the_faces_of_its_still():
    from fer_core.pipeline import FaceResult, nearest_face
    from fer_core.predictors.base import FaceInput

    def face(level: float) -> FaceResult:
        aus = np.full(len(au_table.AU_COLUMNS), level)
        return FaceResult((0, 0, 10, 10), 0.9, dict(zip(au_table.AU_COLUMNS, aus)), FaceInput(aus=aus))

    tracked = np.full(len(au_table.AU_COLUMNS), 2.0)
    tracked[3] = np.nan  # a masked or missing AU does not decide
    assert nearest_face([face(0.5), face(2.1), face(4.0)], tracked) == 1


def test_try_it_video_renamed_removed_and_forgotten(models_dir, face_video, uploads_dir, downloads):
    """The same video uploaded under another name is named so everywhere (its table and frame
    were kept under the first name); the frame's files are named after the video and the time;
    removing the upload, or the session ending, removes the temporary file."""
    import gc

    at = run_app(AppTest.from_file(TRY_IT), T)
    _upload_video(at, face_video)
    renamed = uploads_dir.parent / "participant_B.mp4"
    renamed.write_bytes(face_video.read_bytes())
    _upload_video(at, renamed)
    assert "## participant_B.mp4 at 0.00 s" in texts(at.markdown)
    table = au_table.read(io.BytesIO(downloads["participant_B_au.csv"]))
    assert set(table["file"]) == {"participant_B.mp4"}
    assert {"participant_B_0.00s_faces.csv", "participant_B_0.00s_faces.json"} <= set(downloads)
    assert len(list(uploads_dir.iterdir())) == 1
    at.file_uploader(key="try_video").set_value(None)
    run_app(at, T)
    assert not list(uploads_dir.iterdir()), "the removed upload's file is removed"
    _upload_video(at, face_video)
    assert len(list(uploads_dir.iterdir())) == 1
    del at
    gc.collect()
    assert not list(uploads_dir.iterdir()), "a session's video goes with the session"


def test_au_model_page_measures_a_folders_videos_and_trains_on_whole_videos(models_dir, tmp_path):
    """The dashboard's folder extraction passed videos over (only the command line measured them):
    the AU model page now measures them too, at the rate chosen, its summary counting the videos'
    frames apart from the images, and a model trained on the table holds out whole videos."""
    from PIL import Image
    from skimage import data

    folder = tmp_path / "sessions"
    for emotion in ("happy", "sad"):
        (folder / emotion).mkdir(parents=True)
        for i in range(3):
            write_video(folder / emotion / f"c{i}.mp4", 1, rate=10, size=(160, 120))
    Image.fromarray(data.astronaut()[10:250, 130:370]).save(folder / "happy" / "still.jpg")
    (folder / "sad" / "broken.mp4").write_bytes(b"not a video")
    at = run_app(AppTest.from_file(str(ROOT / "pages" / "2_AU_model.py")), T)
    at.radio(key="au_source").set_value("Extract AUs from an image folder (embedded MediaPipe or OpenFace in Docker)")
    run_app(at, T)
    at.text_input(key="au_folder").set_value(str(folder))
    at.number_input(key="au_per").set_value(0)
    at.select_slider(key="au_video_fps").set_value(5)
    at.button(key="au_extract").click()
    run_app(at, T)
    said = texts(at.success)
    assert any("1 faces measured in 1 of 1 images. Videos (7): 30 frames at 5 fps, 30 faces measured. Unreadable "
               "videos: 1." in s for s in said), said
    # the one that failed is listed apart from the images, its reason in the page's language
    assert [e.label for e in at.expander if "without a measured face" in e.label] == [
        "1 video frame(s) or video(s) without a measured face"]
    table = next(v["table"] for k, v in at.session_state["au_tables"].items() if k.endswith("|5|False"))
    assert sorted(table.loc[table["time_s"].notna(), "file"].unique()) == [f"{e}/c{i}.mp4" for e in ("happy", "sad")
                                                                          for i in range(3)]
    # the explorer, which lists the folder's images and passes its videos over, gets the images' rows
    assert at.session_state["au_tables"][str(folder)]["table"]["file"].tolist() == ["happy/still.jpg"]
    from fer_core import i18n
    from ui.common import translated_reason

    broken = table.loc[table["file"] == "sad/broken.mp4", "reason"].iloc[0]
    with i18n.using_language("ko"):
        assert translated_reason("sad/broken.mp4", broken).startswith("읽을 수 있는 동영상이 아닙니다")
    at.multiselect(key="au_classes").set_value(["happy", "sad"])
    at.button(key="au_train_button").click()
    run_app(at, T)
    assert any(c.startswith("Whole videos were held out: ") for c in texts(at.caption)), texts(at.caption)


def test_a_video_passed_over_in_a_folder_says_extract_measures_it_and_old_tables_still_read_so():
    """The reason said "extract it on its own" where `extract FOLDER` measures a folder's videos too;
    tables written with the old words still count such a row as a video passed over, not a face missed."""
    import pandas as pd

    from fer_core import au_table
    from fer_core.images import VIDEO_IN_FOLDER, VIDEO_IN_FOLDER_BEFORE

    assert "extract measures videos" in VIDEO_IN_FOLDER
    rows = pd.DataFrame({"reason": [VIDEO_IN_FOLDER_BEFORE, VIDEO_IN_FOLDER, "no face found"]})
    assert au_table.passed_over_videos(rows).tolist() == [True, True, False]
    from fer_core import i18n

    with i18n.using_language("ko"):  # both read in Korean, the old words too
        assert [i18n.reason(f"clip.mp4: {r}") for r in (VIDEO_IN_FOLDER_BEFORE, VIDEO_IN_FOLDER)] == [
            "clip.mp4: 동영상이라 이미지와 함께 읽지 않습니다. 따로 추출하세요",
            "clip.mp4: 동영상이라 이미지와 함께 읽지 않습니다. 동영상은 extract가 프레임마다 측정합니다"]


def test_a_second_extract_of_a_video_into_the_same_output_is_refused_while_the_first_runs(face_video, tmp_path,
                                                                                         capsys, monkeypatch):
    """Two extract VIDEO runs into one --out both said they wrote it, and the second's table replaced
    the first's without a word (a code review): the output's lock is held from before measuring."""
    from fer_core.cli import main
    from fer_core.measure import video as video_module

    out = tmp_path / "au.csv"
    measure, second = video_module.extract_video, []

    def measuring_while_another_starts(*args, **kwargs):
        if not second:
            second.append(main(["extract", str(face_video), "--fps", "2", "--out", str(out)]))
            second.append(capsys.readouterr().err)
        return measure(*args, **kwargs)

    monkeypatch.setattr(video_module, "extract_video", measuring_while_another_starts)
    assert main(["extract", str(face_video), "--fps", "2", "--out", str(out), "--workers", "1"]) == 0
    assert second[0] == 2 and f"another run is writing {out}; wait for it or choose another --out" in second[1]
    assert out.exists()
