"""Video extraction: frames/s and peak memory on a 10-minute synthetic video of a real face.

Run: python bench/video_speed.py [--minutes 10] [--size 320x240] [--fps 2 10] [--workers 1]
The video (scikit-image's astronaut face drifting and changing size on a plain background, H.264,
25 frames/s; the writer of tests/test_video.py) is written once to --video. Reported per run:
decoding alone (frames/s), then ``extract_video`` at each --fps: sampled frames measured per
second of wall time, faces found, and the peak resident memory of the caller and of the
measuring worker processes (the kernel's VmHWM, read before they are closed).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fer_core.measure import video  # noqa: E402


def _kb(pid: int | str, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split(field + ":")[1].split()[0])


def _peak_recorder(peaks: dict[int, int]):
    """A progress callback that records each live worker's peak memory (kB) by its pid."""

    def progress(done: int, total: int) -> None:
        for child in multiprocessing.active_children():
            try:
                peaks[child.pid] = max(peaks.get(child.pid, 0), _kb(child.pid, "VmHWM"))
            except (OSError, IndexError):
                pass

    return progress


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--fps", type=float, nargs="+", default=[2.0, 10.0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    parser.add_argument("--video", default="/tmp/fer_bench_video.mp4")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    path = Path(args.video)
    if path.is_file():  # an earlier run's video serves only if it is the one asked for
        info = video.probe_video(path)
        if abs(info.duration_s - args.minutes * 60) > 1 or (info.width, info.height) != size:
            print(f"{path} is {info.duration_s:.0f} s at {info.width}x{info.height}, not the one asked for: "
                  "writing it again", flush=True)
            path.unlink()
    if not path.is_file():
        from test_video import write_video

        start = time.perf_counter()
        part = path.with_name(path.stem + ".part.mp4")  # a run stopped while writing leaves no short video
        write_video(part, args.minutes * 60, rate=25, size=size)
        part.rename(path)
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB) in {time.perf_counter() - start:.0f} s", flush=True)
    info = video.probe_video(path)
    print(f"video: {info.duration_s:.0f} s, {info.width}x{info.height}, {info.fps:g} fps, {info.codec}", flush=True)
    start = time.perf_counter()
    decoded = sum(1 for _ in video.sampled_frames(path, None))
    seconds = time.perf_counter() - start
    print(f"decode only: {decoded} frames in {seconds:.1f} s = {decoded / seconds:.0f} frames/s; "
          f"caller peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB", flush=True)
    for workers in args.workers:
        for fps in args.fps:
            peaks: dict[int, int] = {}
            start = time.perf_counter()
            table = video.extract_video(path, fps=fps, workers=workers, progress=_peak_recorder(peaks))
            seconds = time.perf_counter() - start
            frames = int(table["time_s"].nunique())
            result = {"fps": fps, "workers": workers, "frames": frames, "seconds": round(seconds, 1),
                      "frames_per_s": round(frames / seconds, 2),
                      "faces_found": round(float(table[table["face"] == 0]["success"].mean()), 3),
                      "caller_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                      "worker_peak_mb": round(max(peaks.values(), default=0) / 1024)}
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
