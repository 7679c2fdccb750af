"""The ledger: what was planned, claimed, sent, skipped and suppressed (SQLite or PostgreSQL)."""
