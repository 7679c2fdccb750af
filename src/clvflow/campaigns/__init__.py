"""Campaigns: deployments in prefect.yaml, their parameters, and running one."""
