"""Prefect entrypoint for the scheduled campaign deployments (logic: clvflow package)."""

from clvflow.orchestration.flows import campaign_flow

__all__ = ["campaign_flow"]
