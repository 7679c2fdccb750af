"""Prefect entrypoint for every scheduled campaign deployment in prefect.yaml (logic: clvflow package)."""

from clvflow.orchestration.flows import campaign_flow

__all__ = ["campaign_flow"]
