"""Reports: run summaries for the terminal and the Prefect UI."""
