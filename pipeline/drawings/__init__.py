"""Source kinds that are drawings rather than footage: SVG files (one item per file or archive member) and
stroke data (QuickDraw-style ndjson, one item per line). Each item is rendered progressively, element by
element in paint order, into the task's N steps (:mod:`pipeline.stages.draw`)."""
