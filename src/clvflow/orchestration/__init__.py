"""Prefect flows over the engine. Importing this package imports Prefect; the CLI commands
that need no flow run (validate, segments, preview) never import it."""
