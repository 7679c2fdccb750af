"""Prefect entrypoint for campaigns triggered by a shop order (logic: clvflow package)."""

from clvflow.orchestration.order_flow import order_flow

__all__ = ["order_flow"]
