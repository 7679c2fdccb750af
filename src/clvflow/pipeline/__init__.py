"""One run: plan → claim → render → send → record, for a campaign or a journey's step."""
