"""Test doubles for the services clvflow talks to, served for real on loopback."""
