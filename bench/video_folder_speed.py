"""A folder of short video clips (a dataset of clips, a chunk each): sampled frames measured per
second by ``extract_videos`` (every clip's chunks in one batch of the workers) against measuring
the clips one after another with ``extract_video`` (how ``extract FOLDER`` would do it clip by
clip: one worker busy per clip).

Run: python bench/video_folder_speed.py [--clips 8] [--seconds 3] [--fps 10] [--workers 2]
The clips (the face writer of tests/test_video.py, 320x240, 25 frames/s) are written once to
--folder. Nothing is cached: each way measures every frame.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fer_core.images import scan_images  # noqa: E402
from fer_core.measure import video  # noqa: E402
from fer_core.measure.workers import close_workers  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--folder", default="/tmp/fer_bench_clips")
    args = parser.parse_args()
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    from test_video import write_video

    for i in range(args.clips):
        path = folder / f"clip{i:03d}.mp4"
        if not path.is_file():
            write_video(path, args.seconds, rate=25, size=(320, 240))
    clips = [v for v in video.videos_in(scan_images(folder).skipped)][:args.clips]
    video.extract_videos(clips[:1], fps=args.fps, workers=args.workers, use_cache=False)  # workers started
    for way in ("one clip after another", "all clips' chunks in one batch"):
        start = time.perf_counter()
        if way.startswith("one"):
            tables = [video.extract_video(c.path, fps=args.fps, workers=args.workers, name=c.file, use_cache=False)
                      for c in clips]
            frames = sum(int(t["time_s"].nunique()) for t in tables)
        else:
            table = video.extract_videos(clips, fps=args.fps, workers=args.workers, use_cache=False)
            frames = int(table.groupby("file")["time_s"].nunique().sum())
        seconds = time.perf_counter() - start
        print(json.dumps({"way": way, "clips": len(clips), "workers": args.workers, "frames": frames,
                          "seconds": round(seconds, 1), "frames_per_s": round(frames / seconds, 1)}), flush=True)
    close_workers()


if __name__ == "__main__":
    main()
