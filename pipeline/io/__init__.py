"""Bytes on disk or in a bucket: storage (local and fsspec), atomic writes, the output lock, crash points."""
