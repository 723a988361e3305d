"""Process exit codes shared by every subcommand (README: Exit codes). A module of its own so the command
modules can import them without importing the CLI that imports them."""

EXIT_OK = 0  # the run completed (rejected or failed sources are in the report)
EXIT_RUN_FAILED = 1  # the run itself could not complete, or inspect --verify found a problem
EXIT_USAGE = 2  # usage, manifest, config or curation-file error; nothing was processed
EXIT_LOCKED = 3  # another job holds the output's lock
EXIT_STRICT = 4  # --strict: the run completed, but a source failed or is missing
