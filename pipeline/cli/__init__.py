"""The command line of the build side: build, demo, refresh, inspect, curate, review, caption."""
