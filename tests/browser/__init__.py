"""Helpers for the console's tests: the web app on a real local server, and Debian's
headless Chromium driven through Selenium."""
