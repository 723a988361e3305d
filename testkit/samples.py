"""Sample jsons for grids made by code rather than by a build (test corpora, benchmarks)."""

from __future__ import annotations

from pipeline import __version__
from pipeline.corpus.schema import conform


def made_meta(
    key: str,
    task: dict,
    layout: dict,
    caption: str,
    *,
    uri: str,
    sha256: str,
    kind: str,
    config_sha: str = "none",
) -> dict:
    """A complete sample json for a grid made by code rather than by a build (test corpora, benchmarks):
    frame i is step i+1 of the source, nothing was measured, so every score is null."""
    frames = [{"step": i + 1, "source_frame": i} for i in range(layout["rows"] * layout["cols"])]
    return conform(
        {
            "key": key,
            "task": task,
            "caption": {"text": caption},
            "layout": layout,
            "frames": frames,
            "source": {"uri": uri, "sha256": sha256, "kind": kind},
            "scores": {"process": {}},
            "pipeline": {"version": __version__, "config_sha": config_sha},
        }
    )
