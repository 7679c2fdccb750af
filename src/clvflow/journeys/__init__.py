"""Lifecycle journeys: multi-step series that follow each customer."""
