"""The ``clvflow`` command line."""
