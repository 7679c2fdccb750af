"""Segments: who gets an email, written in YAML and compiled to one SQL query each."""
