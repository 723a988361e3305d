"""The run: plan what to process, fan sources out to a Dask cluster, run the stages on a worker, stream
results to the committer. The only package that drives the others."""
