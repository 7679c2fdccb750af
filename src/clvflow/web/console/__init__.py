"""The marketer's console: read-only pages under ``/console/`` (segments, customers,
previews, dry runs, journeys, the report), behind a password; see :mod:`.mount`."""
