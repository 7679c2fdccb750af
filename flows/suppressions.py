"""Prefect entrypoint for the suppression sync deployment (logic: clvflow package)."""

from clvflow.orchestration.suppression_flow import suppression_sync_flow

__all__ = ["suppression_sync_flow"]
