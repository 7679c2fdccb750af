"""A deterministic demo wedding-stationery shop to try clvflow on."""
