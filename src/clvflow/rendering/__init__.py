"""Rendering: sandboxed Jinja templates with front matter, layouts, locales and filters."""
