"""Benchmark: build wall time vs. a plain OpenCV loop that only decodes every frame; worker memory on a
10-minute vs. a 1-minute video. Prints ratios measured in the same run (CLIP off).

Each round decodes with OpenCV, then builds (cold: the build starts its own cluster); the ratios of a
round share its load, and the medians over ``--repeat`` rounds are the figures (on a shared machine a
single wall-clock ratio swings by 2x). CPU seconds (this process and its reaped children: the workers)
are printed too: they move less with the load than wall time does.

    .venv/bin/python -m bench.pipeline [--videos 3] [--seconds 60] [--workers 2] [--repeat 3]   (from the repo root)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median as med

import av
import cv2
import skimage.data
from distributed import LocalCluster

from pipeline.config import BuildConfig, ClipConfig, ClusterConfig
from pipeline.demo.synthetic import Script, make_tutorial
from pipeline.run.driver import build
from pipeline.stages.decode import Decode
from pipeline.stages.probe import Probe
from pipeline.taxonomy import Taxonomy
from pipeline.work import Source, Work

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket"]


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have exited (a cold build's workers)."""
    return sum(
        r.ru_utime + r.ru_stime
        for r in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )


def timed(fn) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds, result) of fn()."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, cpu_seconds() - c0, out


def opencv_decode_all(paths: list[Path]) -> None:
    for p in paths:
        cap = cv2.VideoCapture(str(p))
        while cap.read()[0]:
            pass
        cap.release()


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


def reencode(src: Path, dst: Path, keyint: int) -> None:
    """The same video with a keyframe every ``keyint`` frames (streaming services use 2 s or so)."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format="mp4") as o:
        s_in = i.streams.video[0]
        s = o.add_stream("libx264", rate=s_in.average_rate)
        s.width, s.height, s.pix_fmt = s_in.codec_context.width, s_in.codec_context.height, "yuv420p"
        s.options = {"crf": "23", "preset": "veryfast", "x264-params": f"keyint={keyint}:min-keyint={keyint}"}
        for f in i.decode(s_in):
            for p in s.encode(f.reformat(format="yuv420p")):
                o.mux(p)
        for p in s.encode():
            o.mux(p)


def decode_stage(path: Path) -> tuple[float, int, int]:
    """(CPU seconds, frames decoded, frames kept) of the decode stage alone on one video."""
    cfg = BuildConfig(clip=ClipConfig(enabled=False))
    work = Probe()(
        Work(Source(uri=str(path), path=str(path), task=Taxonomy.load()["painting"], kind="video"))
    )
    _, cpu, _ = timed(lambda: Decode(cfg.analysis, cfg.cluster.decode_threads)(work))
    return cpu, work.probe["decoded_frames"], len(work.frames)


def worker_peak_mb(path: Path) -> float:
    """Peak RSS of a fresh process that runs one source through every stage."""
    code = (
        "import resource,sys;from pipeline.config import BuildConfig,ClipConfig;"
        "from pipeline.run.worker import run_source;from pipeline.stages.chain import build_stages;"
        "from pipeline.taxonomy import Taxonomy;from pipeline.work import Source;"
        "c=BuildConfig(clip=ClipConfig(enabled=False));t=Taxonomy.load();"
        f"r=run_source(Source(uri='x',path={str(path)!r},task=t['painting'],kind='video'),'0'*64,build_stages(c),c);"
        "print(r.status, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="rounds of decode + build; medians are reported")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        script = Script(intro=3, talk=5, process=args.seconds - 14, hold=3, outro=3, hand_bursts=8)
        paths = []
        for i in range(args.videos):
            p = d / f"v{i}.mp4"
            make_tutorial(
                p, getattr(skimage.data, PHOTOS[i % len(PHOTOS)])(), size=(1280, 720), script=script, seed=i
            )
            paths.append(p)
        manifest = d / "manifest.yaml"
        manifest.write_text(json.dumps({"sources": [{"path": p.name, "task": "painting"} for p in paths]}))
        cfg = BuildConfig(clip=ClipConfig(enabled=False), cluster=ClusterConfig(workers=args.workers))
        cold, warm, report = [], [], {}
        for r in range(args.repeat):
            dec_wall, dec_cpu, _ = timed(lambda: opencv_decode_all(paths))
            wall, cpu, res = timed(lambda: build(manifest, d / f"cold{r}", cfg, progress=False))
            report = res.report
            cold.append((dec_wall, dec_cpu, wall, cpu))
            print(
                f"round {r + 1}: OpenCV decode {dec_wall:.2f}s wall / {dec_cpu:.2f}s CPU; cold build "
                f"{wall:.2f}s / {cpu:.2f}s; ratios {wall / dec_wall:.2f} wall, {cpu / dec_cpu:.2f} CPU; "
                f"load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, dashboard_address=":0") as cluster:
            warm_cfg = cfg.model_copy(update={"cluster": ClusterConfig(scheduler=cluster.scheduler_address)})
            for r in range(args.repeat):
                dec_wall, _, _ = timed(lambda: opencv_decode_all(paths))
                wall, _, _ = timed(lambda: build(manifest, d / f"warm{r}", warm_cfg, progress=False))
                warm.append(wall / dec_wall)

        print(
            f"videos: {args.videos} x {args.seconds:.0f}s 1280x720 H.264; build ok {report['totals']['ok']}, "
            f"samples {report['totals']['samples']}; medians of {args.repeat} rounds:"
        )
        print(
            f"plain OpenCV full decode (one process): {med(c[0] for c in cold):.2f}s wall, "
            f"{med(c[1] for c in cold):.2f}s CPU"
        )
        print(
            f"build, CLIP off, {args.workers} workers, starting its LocalCluster: {med(c[2] for c in cold):.2f}s wall, "
            f"{med(c[3] for c in cold):.2f}s CPU; ratio build/decode = {med(c[2] / c[0] for c in cold):.2f} wall "
            f"(target <= 0.7, long-term 0.5), {med(c[3] / c[1] for c in cold):.2f} CPU"
        )
        print(f"build on an already running cluster: ratio = {med(warm):.2f} wall")
        print(f"stage seconds summed over workers (last cold round): {report['stage_seconds']}")
        one, ten = d / "one.mp4", d / "ten.mp4"
        make_tutorial(
            one,
            skimage.data.astronaut(),
            size=(1280, 720),
            script=Script(intro=3, talk=5, process=46, hold=3, outro=3),
            seed=9,
        )
        loop_video(one, ten, 10)
        m1, m10 = worker_peak_mb(one), worker_peak_mb(ten)
        print(
            f"worker peak RSS: 1-min video {m1:.0f} MiB, 10-min video {m10:.0f} MiB; "
            f"ratio = {m10 / m1:.2f} (target <= 1.3)"
        )
        # Long videos are sampled sparsely (analysis.max_frames): groups of pictures with no sampled frame
        # are not decoded. A 30-min video with 2-s keyframes against the 1-min one it repeats.
        short, long = d / "gop2s.mp4", d / "thirty.mp4"
        reencode(one, short, keyint=50)
        loop_video(short, long, 30)
        c1, n1, k1 = decode_stage(short)
        c30, n30, k30 = decode_stage(long)
        print(
            f"decode stage, 1280x720 with 2-s keyframes: 1-min video {c1:.2f}s CPU ({n1} frames decoded, {k1} kept); "
            f"30-min video {c30:.2f}s CPU ({n30} decoded of {30 * 1500}, {k30} kept); CPU per video minute "
            f"{c30 / 30:.3f}s vs {c1:.3f}s, ratio {c30 / 30 / c1:.2f}"
        )


if __name__ == "__main__":
    main()
