"""Videos: real video files written by the test with PyAV (frames of a real face photo, moving and
scaled), measured by the real MediaPipe route; sampling by time, failure rows, the CLI, the
time_s column through the AU table's reader and usable-rows rule, and flat memory on a long video."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av", reason="PyAV is not installed (pip install -r requirements.txt)")

from fer_core import au_table  # noqa: E402
from fer_core.measure import video  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WRITER = textwrap.dedent('''
    import av, numpy as np
    from PIL import Image

    def write_video(path, seconds, rate=25, size=(320, 240), codec="libx264", face_until=None):
        """A face photo (scikit-image's astronaut, cropped to the face) drifting and breathing in
        size on a plain background; from ``face_until`` seconds on, the background alone."""
        from skimage import data

        face = Image.fromarray(data.astronaut()[10:250, 130:370])
        with av.open(str(path), "w") as out:
            stream = out.add_stream(codec, rate=rate)
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
            for i in range(int(round(seconds * rate))):
                canvas = Image.new("RGB", size, (40, 60, 80))
                if face_until is None or i / rate < face_until:
                    side = int(size[1] * (0.8 + 0.1 * np.sin(i / 10)))
                    x = int((size[0] - side) / 2 + 0.06 * size[0] * np.sin(i / 7))
                    canvas.paste(face.resize((side, side)), (x, (size[1] - side) // 2))
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


def test_cli_extract_video_writes_time_s(face_video, tmp_path):
    out = tmp_path / "au.csv"
    done = subprocess.run([sys.executable, "-m", "fer_core", "extract", str(face_video), "--fps", "1", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "4 frames at 1 fps, 3 faces" in done.stderr and "1 x no face found" in done.stderr
    back = au_table.read(out)
    assert back["time_s"].tolist() == pytest.approx([0.0, 1.0, 2.0, 3.0], abs=1e-6)
    assert back["success"].tolist() == [1, 1, 1, 0]
    # tables of images keep an empty time_s, and read back the same
    images = au_table.from_rows([{"file": "a.jpg", "face": 0, "success": 1, **dict.fromkeys(au_table.AU_COLUMNS, 1.0)}])
    au_table.write(images, tmp_path / "img.csv")
    assert au_table.read(tmp_path / "img.csv")["time_s"].isna().all()


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
