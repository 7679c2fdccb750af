"""A project folder: clvflow.yaml, segments/, templates/, prefect.yaml."""
