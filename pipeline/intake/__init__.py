"""Before a run: what the manifest names, where each source is, what it is (signatures and hashes), and
remote sources fetched into a bounded scratch cache."""
