"""Delivery: sending rendered messages (SendGrid) and local stand-ins for tests."""
