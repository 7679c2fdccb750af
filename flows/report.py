"""Prefect entrypoint for the daily-report deployment (logic: clvflow package)."""

from clvflow.orchestration.report_flow import report_flow

__all__ = ["report_flow"]
