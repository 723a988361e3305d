"""Segment: shots by PySceneDetect's AdaptiveDetector, run on the downscaled analysis stream."""

from __future__ import annotations

import cv2
from scenedetect import AdaptiveDetector
from scenedetect.common import FrameTimecode

from pipeline.config import SegmentConfig
from pipeline.work import Work


class Segment:
    name = "segment"

    def __init__(self, cfg: SegmentConfig) -> None:
        self.cfg = cfg

    def __call__(self, work: Work) -> Work:
        frames = work.frames
        if work.source.kind == "images" or len(frames) < 3:
            work.shots = [(0, len(frames))]
            return work
        span = frames[-1].time - frames[0].time
        rate = (len(frames) - 1) / span if span > 0 else 1.0
        detector = AdaptiveDetector(
            adaptive_threshold=self.cfg.adaptive_threshold,
            min_scene_len=max(1, round(self.cfg.min_shot_seconds * rate)),
            min_content_val=self.cfg.min_content_val,
        )
        cuts: list[int] = []
        for i, f in enumerate(frames):
            h, w = f.image.shape[:2]
            small = cv2.resize(
                f.image, (self.cfg.width, max(2, round(h * self.cfg.width / w))), interpolation=cv2.INTER_AREA
            )[..., ::-1]  # detector expects BGR
            cuts += [tc.frame_num for tc in detector.process_frame(FrameTimecode(i, fps=rate), small)]
        cuts += [tc.frame_num for tc in detector.post_process(FrameTimecode(len(frames) - 1, fps=rate))]
        bounds = [0] + sorted(c for c in set(cuts) if 0 < c < len(frames)) + [len(frames)]
        work.shots = list(zip(bounds[:-1], bounds[1:]))
        return work
