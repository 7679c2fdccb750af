"""Prefect entrypoint for the journey deployments (logic: clvflow package)."""

from clvflow.orchestration.journey_flow import journey_flow

__all__ = ["journey_flow"]
