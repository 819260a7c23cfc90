"""The ``jaxmix`` command: config schema, runs, output folders and records."""
