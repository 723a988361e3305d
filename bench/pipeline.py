"""Benchmark: build time vs. a plain OpenCV loop that only decodes every frame, measured as users run it;
worker memory on a 10-minute vs. a 1-minute video. Prints ratios measured in the same run.

Filmed footage (``--part filmed``, issue 27): three 70-s 1280x720 tutorials as phones and editors export
them (testkit/filmed.py: shake, texture, grain, a hand; libx264 CRF 19, High, B-frames, keyframes every
6 s), made once and kept in ``--footage``. Each round decodes them with OpenCV, runs the whole command
(``makeanything build`` in a subprocess, default config: no CLIP weights here) and builds in-process with
CLIP off. Then: a one-item build with the default config, CPU per video over ``--many`` videos (the three
and copies re-muxed under other titles: distinct files that decode alike), the
decode / analysis CPU per stage (in-process, one thread) and the start-up costs (interpreter imports,
cluster start) apart. Synthetic footage (``--part synthetic``, issue 14): the generator's clean videos.

Each round decodes with OpenCV, then builds (cold: the build starts its own cluster); the ratios of a
round share its load, and the medians over ``--repeat`` rounds are the figures (on a shared machine a
single wall-clock ratio swings by 2x). CPU seconds (this process and its reaped children: the workers)
are printed too: they move less with the load than wall time does.

    .venv/bin/python -m bench.pipeline [--part all|filmed|synthetic] [--repeat 3] [--many 10]
        [--footage DIR] [--videos 3] [--seconds 60] [--workers 2]            (from the repo root)
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from statistics import median as med

import av
import cv2
import skimage.data
from distributed import LocalCluster

from pipeline.config import BuildConfig, ClipConfig, ClusterConfig
from pipeline.demo.synthetic import Script, make_tutorial
from pipeline.run.cluster import dask_client
from pipeline.run.driver import build
from pipeline.stages.chain import build_stages
from pipeline.stages.decode import Decode
from pipeline.stages.probe import Probe
from pipeline.taxonomy import Taxonomy
from pipeline.work import Source, Work
from testkit.filmed import make_filmed

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket"]
REPO = Path(__file__).resolve().parents[1]
FOOTAGE = Path(tempfile.gettempdir()) / "makeanything-bench-filmed-v1"  # made once: ~1 min of CPU a video


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


def _film(job: tuple[Path, int]) -> None:
    path, i = job
    make_filmed(path, getattr(skimage.data, PHOTOS[i % len(PHOTOS)])(), seed=i)


def filmed_footage(folder: Path, n: int) -> list[Path]:
    """``n`` filmed tutorials (testkit/filmed.py) in ``folder``, made there once and kept for later runs."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"filmed{i}.mp4" for i in range(n)]
    missing = [(p, i) for i, p in enumerate(paths) if not p.exists()]
    if missing:
        print(f"making {len(missing)} filmed tutorial(s) in {folder} (once) ...", flush=True)
        with ProcessPoolExecutor(min(2, len(missing))) as pool:
            list(pool.map(_film, missing))
    return paths


def relabelled(src: Path, dst: Path, label: str) -> Path:
    """``src`` re-muxed (no re-encode) with ``label`` as its title: another file (its own content hash, so
    not a duplicate to the build) that decodes to the same frames at the same cost."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format="mp4") as o:
        o.metadata["title"] = label
        s_in = i.streams.video[0]
        s_out = o.add_stream_from_template(s_in)
        for p in i.demux(s_in):
            if p.dts is not None:
                p.stream = s_out
                o.mux(p)
    return dst


def mbit_per_s(path: Path) -> float:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return c.size * 8 / float(s.duration * s.time_base) / 1e6


def manifest_of(paths: list[Path], dst: Path) -> Path:
    dst.write_text(json.dumps({"sources": [{"path": str(p), "task": "painting"} for p in paths]}))
    return dst


def command(manifest: Path, out: Path) -> tuple[float, float, dict]:
    """(wall, CPU incl. its workers, report) of ``makeanything build`` run from a shell, default config."""
    argv = [sys.executable, "-m", "makeanything.cli", "build", str(manifest), "--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    wall, cpu, _ = timed(lambda: subprocess.run(argv, cwd=REPO, env=env, check=True, capture_output=True))
    return wall, cpu, json.loads((out / "report.json").read_text())


def stage_cpu(paths: list[Path]) -> collections.Counter:
    """CPU seconds per stage summed over ``paths``, each run in this process on one thread, default config
    with CLIP off (what the workers do, without the cluster)."""
    cfg = BuildConfig(clip=ClipConfig(enabled=False))
    stages = build_stages(cfg, None, "video", 1)
    total: collections.Counter = collections.Counter()
    for path in paths:
        work = Work(Source(uri=str(path), path=str(path), task=Taxonomy.load()["painting"], kind="video"))
        for stage in stages:
            c0 = time.process_time()
            work = stage(work)
            total[stage.name] += time.process_time() - c0
    return total


def python_seconds(code: str) -> tuple[float, float]:
    """(wall, CPU) of a fresh interpreter running ``code`` from the repo root."""
    argv = [sys.executable, "-c", code]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    wall, cpu, _ = timed(lambda: subprocess.run(argv, cwd=REPO, env=env, check=True))
    return wall, cpu


def cluster_start(listed: int) -> tuple[float, float]:
    """(wall, CPU incl. workers) of starting and closing the run's LocalCluster, default config."""

    def start_stop() -> None:
        with dask_client(BuildConfig(clip=ClipConfig(enabled=False)), False, listed):
            pass

    wall, cpu, _ = timed(start_stop)
    return wall, cpu


def filmed(args: argparse.Namespace, d: Path) -> None:
    """The figures of issue 27 on filmed footage; see the module docstring."""
    three = filmed_footage(args.footage, 3)
    rates = ", ".join(f"{mbit_per_s(p):.2f}" for p in three)
    print(
        f"filmed footage: 3 x 70 s 1280x720 30 fps H.264 High, B-frames, keyframes every 6 s; {rates} Mbit/s"
    )
    m3 = manifest_of(three, d / "filmed3.yaml")
    off = BuildConfig(clip=ClipConfig(enabled=False))
    rounds, report = [], {}
    for r in range(args.repeat):
        dec_wall, dec_cpu, _ = timed(lambda: opencv_decode_all(three))
        cmd_wall, cmd_cpu, report = command(m3, d / f"cmd{r}")
        in_wall, in_cpu, _ = timed(lambda: build(m3, d / f"in{r}", off, progress=False))
        rounds.append((dec_wall, dec_cpu, cmd_wall, cmd_cpu, in_wall, in_cpu))
        print(
            f"round {r + 1}: OpenCV decode {dec_wall:.2f}s wall / {dec_cpu:.2f}s CPU; whole command "
            f"{cmd_wall:.2f}s / {cmd_cpu:.2f}s; in-process CLIP off {in_wall:.2f}s / {in_cpu:.2f}s; "
            f"load average {os.getloadavg()[0]:.1f}",
            flush=True,
        )

    def ratio(i: int, j: int) -> float:
        return med(x[i] / x[j] for x in rounds)

    print(
        f"build ok {report['totals']['ok']}, samples {report['totals']['samples']}; medians of {args.repeat}:"
    )
    print(
        f"  whole command / OpenCV decode: {ratio(2, 0):.2f} wall (target <= 0.9), {ratio(3, 1):.2f} CPU; "
        f"in-process CLIP off / decode: {ratio(4, 0):.2f} wall (target <= 0.6), {ratio(5, 1):.2f} CPU"
    )
    print(f"  CLIP line of the command's report: {report['clip'][:90]}...")
    cpu = stage_cpu(three)
    dec = med(x[1] for x in rounds)
    analysis = sum(v for k, v in cpu.items() if k not in ("probe", "decode"))
    print(
        f"  stage CPU summed over the 3 videos (in-process, one thread): decode {cpu['decode']:.2f}s "
        f"({cpu['decode'] / dec:.2f} of OpenCV's), analysis {analysis:.2f}s ("
        + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if k not in ("probe", "decode"))
        + f"), probe {cpu['probe']:.2f}s"
    )
    bare = python_seconds("pass")
    imports = python_seconds("import makeanything.cli, pipeline.cli.build, pipeline.run.driver")
    cluster = cluster_start(3)
    print(
        f"  start-up: interpreter {bare[0]:.2f}s wall / {bare[1]:.2f}s CPU; the build's imports "
        f"{imports[0] - bare[0]:.2f}s / {imports[1] - bare[1]:.2f}s more; LocalCluster start+stop "
        f"(2 workers) {cluster[0]:.2f}s / {cluster[1]:.2f}s"
    )
    one = d / "one.mp4"
    make_tutorial(one, skimage.data.chelsea(), seed=3)  # the demo's size: 25 s, 640x360
    m1 = manifest_of([one], d / "one.yaml")
    walls = [command(m1, d / f"one{r}")[0] for r in range(args.repeat)]
    print(
        f"  one-item build (25-s 640x360 tutorial), whole command, default config: {med(walls):.2f}s wall "
        f"(target <= 2.5); load average {os.getloadavg()[0]:.1f}"
    )
    if args.many:  # the three, then copies of them under other titles
        many = [
            three[k] if k < 3 else relabelled(three[k % 3], d / f"copy{k}.mp4", f"copy {k}")
            for k in range(args.many)
        ]
        dec_wall, dec_cpu, _ = timed(lambda: opencv_decode_all(many))
        wall, cpu_, rep = command(manifest_of(many, d / "many.yaml"), d / "many")
        print(
            f"  {args.many} filmed videos: OpenCV decode {dec_cpu / args.many:.2f}s CPU per video, whole command "
            f"{cpu_ / args.many:.2f}s per video (ok {rep['totals']['ok']}); ratio {cpu_ / dec_cpu:.2f} CPU "
            f"(target <= 0.6), {wall / dec_wall:.2f} wall; load average {os.getloadavg()[0]:.1f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="rounds of decode + build; medians are reported")
    ap.add_argument("--part", choices=("all", "filmed", "synthetic"), default="all")
    ap.add_argument("--footage", type=Path, default=FOOTAGE, help="where the filmed tutorials are kept")
    ap.add_argument(
        "--many", type=int, default=10, help="videos (the filmed three and re-muxed copies) for CPU per video"
    )
    args = ap.parse_args()
    print(f"load average {open('/proc/loadavg').read().strip()}, {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("all", "filmed"):
            filmed(args, Path(tmp))
        if args.part in ("all", "synthetic"):
            synthetic(args, Path(tmp))


def synthetic(args: argparse.Namespace, d: Path) -> None:
    """The figures of issue 14 on the generator's clean videos (CLIP off, in-process)."""
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
