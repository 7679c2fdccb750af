"""Measuring what the emails did: attribution of orders to sends, holdout and A/B statistics,
CLV and retention over the shop's data, and the report's charts."""
