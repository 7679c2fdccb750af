"""clvflow: marketing automation that grows customer lifetime value.

Segments (YAML) say who, templates (Jinja) say what, Prefect flows say when.
"""

__version__ = "0.1.0"
