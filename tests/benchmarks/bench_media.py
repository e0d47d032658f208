"""Speed of offline analysis of a 640x480 video with sound (issue 26: >= 10x real time on the 2-core machine).

Makes a talking-face test video (the sample video's frames, 30 fps H.264, with its AAC speech track, looped to
``--seconds``), then analyses it offline like ``affectlite analyze`` (frames at ``--fps`` of media time, every
audio chunk, nothing dropped) and prints JSON: media seconds, wall seconds, x real time, CPU seconds, counts,
drops. Run it on a quiet machine and say how busy it was (load average is printed).

    python3 tests/benchmarks/bench_media.py --seconds 60 --fps 10 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_video(seconds: float, dest: Path) -> Path:
    from affectlite.samples import sample_video

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        sys.exit("needs ffmpeg")
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", "-1", "-i",
                    str(sample_video()), "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-g", "60",
                    "-c:a", "aac", "-ac", "1", "-ar", "16000", str(dest)], check=True)
    return dest


def analyse(video: Path, fps: float, threads: int | None) -> dict[str, object]:
    from affectlite import EmotionPipeline, PipelineOptions
    from affectlite.media import probe

    info = probe(video)
    ov: dict[str, object] = {"camera.backend": "media", "camera.device": str(video), "camera.fps": fps,
                             "camera.realtime": False, "audio.backend": "media", "audio.device": str(video),
                             "audio.realtime": False}
    if threads:
        ov.update({"face.num_threads": threads})
    n = {"results": 0}

    def on_result(_r: object) -> None:
        n["results"] += 1

    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    with EmotionPipeline(PipelineOptions().replace(**ov), on_result=on_result) as pipe:
        pipe.wait()
        st = pipe.stats()
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return {"media_s": round(info.duration_s, 2), "size": f"{info.width}x{info.height}", "file_fps": info.fps,
            "analysed_fps": fps, "wall_s": round(wall, 2), "x_realtime": round(info.duration_s / wall, 1),
            "cpu_s": round(cpu, 2), "cpu_per_media_s": round(cpu / info.duration_s, 3), "counts": st.counts,
            "drops": st.drops, "results": n["results"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of the test video")
    ap.add_argument("--fps", type=float, default=10.0, help="frames analysed per second of media (analyze: 10)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="face interpreter threads (default: the option's)")
    ap.add_argument("--video", type=Path, default=None, help="use this video instead of making one")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-media-") as tmp:
        video = a.video or make_video(a.seconds, Path(tmp) / "talk.mp4")
        runs = [analyse(video, a.fps, a.threads) for _ in range(a.repeat)]
    best = max(runs, key=lambda r: float(str(r["x_realtime"])))
    print(json.dumps({"machine": {"cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2)},
                      "runs": runs, "best_x_realtime": best["x_realtime"],
                      "median_x_realtime": sorted(float(str(r["x_realtime"])) for r in runs)[len(runs) // 2]},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
