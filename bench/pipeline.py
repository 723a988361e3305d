"""Benchmark: build wall time vs. a plain OpenCV loop that only decodes every frame; worker memory on a
10-minute vs. a 1-minute video. Prints ratios measured in the same run (CLIP off).

    .venv/bin/python -m bench.pipeline [--videos 3] [--seconds 60] [--workers 2]   (from the repo root)
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import skimage.data
from distributed import LocalCluster

from pipeline.build import build
from pipeline.config import BuildConfig, ClipConfig, ClusterConfig
from pipeline.synthetic import Script, make_tutorial

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket"]


def opencv_decode_all(paths: list[Path]) -> float:
    t0 = time.perf_counter()
    for p in paths:
        cap = cv2.VideoCapture(str(p))
        while cap.read()[0]:
            pass
        cap.release()
    return time.perf_counter() - t0


def loop_video(src: Path, dst: Path, times: int) -> None:
    """A long video made by re-muxing a short one several times (no re-encode)."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format="mp4") as o:
        s_in = i.streams.video[0]
        s_out = o.add_stream_from_template(s_in)
        packets = [p for p in i.demux(s_in) if p.dts is not None]
        span = max(p.pts for p in packets) + packets[1].duration if len(packets) > 1 else 1
        span = int(s_in.duration or span)
        for k in range(times):
            for p in packets:
                p.pts += span if k else 0
                p.dts += span if k else 0
                p.stream = s_out
                o.mux(p)


def worker_peak_mb(path: Path) -> float:
    """Peak RSS of a fresh process that runs one source through every stage."""
    code = (
        "import resource,sys;from pipeline.config import BuildConfig,ClipConfig;"
        "from pipeline.result import run_source;from pipeline.stages.chain import build_stages;"
        "from pipeline.taxonomy import Taxonomy;from pipeline.work import Source;"
        "c=BuildConfig(clip=ClipConfig(enabled=False));t=Taxonomy.load();"
        f"r=run_source(Source(uri='x',path={str(path)!r},task=t['painting'],kind='video'),'0'*64,build_stages(c),c);"
        "print(r.status, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        script = Script(intro=3, talk=5, process=args.seconds - 14, hold=3, outro=3, hand_bursts=8)
        paths = []
        for i in range(args.videos):
            p = d / f"v{i}.mp4"
            make_tutorial(p, getattr(skimage.data, PHOTOS[i % len(PHOTOS)])(), size=(1280, 720), script=script, seed=i)
            paths.append(p)
        manifest = d / "manifest.yaml"
        manifest.write_text(json.dumps({"sources": [{"path": p.name, "task": "painting"} for p in paths]}))
        decode = opencv_decode_all(paths)
        cfg = BuildConfig(clip=ClipConfig(enabled=False), cluster=ClusterConfig(workers=args.workers))
        t0 = time.perf_counter()
        report = build(manifest, d / "cold", cfg, progress=False).report
        cold = time.perf_counter() - t0
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=":0") as cluster:
            warm_cfg = cfg.model_copy(update={"cluster": ClusterConfig(scheduler=cluster.scheduler_address)})
            t0 = time.perf_counter()
            build(manifest, d / "warm", warm_cfg, progress=False)
            warm = time.perf_counter() - t0
        print(f"videos: {args.videos} x {args.seconds:.0f}s 1280x720 H.264; build ok {report['totals']['ok']}, "
              f"samples {report['totals']['samples']}")
        print(f"plain OpenCV full decode (one process): {decode:.2f}s")
        print(f"build, CLIP off, {args.workers} workers, starting its LocalCluster: {cold:.2f}s; "
              f"ratio build/decode = {cold / decode:.2f} (target <= 1.0)")
        print(f"build on an already running cluster: {warm:.2f}s; ratio = {warm / decode:.2f}")
        print(f"stage seconds summed over workers: {report['stage_seconds']}")
        one, ten = d / "one.mp4", d / "ten.mp4"
        make_tutorial(one, skimage.data.astronaut(), size=(1280, 720),
                      script=Script(intro=3, talk=5, process=46, hold=3, outro=3), seed=9)
        loop_video(one, ten, 10)
        m1, m10 = worker_peak_mb(one), worker_peak_mb(ten)
        print(f"worker peak RSS: 1-min video {m1:.0f} MiB, 10-min video {m10:.0f} MiB; ratio = {m10 / m1:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
