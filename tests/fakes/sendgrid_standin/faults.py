"""Fault injection: which reply (or none) a request gets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["FaultConfig", "Outcome"]

Outcome = Literal["ok", "drop", "accept_drop", "429", "500", "503"]

_EXCLUSIVE: tuple[tuple[Outcome, str], ...] = (
    ("drop", "rate_drop"),
    ("accept_drop", "rate_accept_drop"),
    ("429", "rate_429"),
    ("500", "rate_500"),
    ("503", "rate_503"),
)


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Fault-injection settings; rates are probabilities per request, in [0, 1].

    ``rate_drop``, ``rate_accept_drop``, ``rate_429``, ``rate_500`` and ``rate_503`` are
    mutually exclusive outcomes (their sum must not exceed 1); ``rate_slow`` is drawn
    independently and delays any reply (including faults) by ``slow_delay_s``.
    """

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    rate_drop: float = 0.0
    """Read the request, then close the connection without replying; nothing is recorded."""
    rate_accept_drop: float = 0.0
    """Record a valid message as delivered, then close without replying ("maybe sent")."""
    rate_slow: float = 0.0
    slow_delay_s: float = 0.5
    rate_limit_limit: int = 600
    """Value of ``X-RateLimit-Limit`` on 429 replies."""
    rate_limit_reset_s: float = 1.0
    """``X-RateLimit-Reset`` on 429 replies is ``ceil(now + rate_limit_reset_s)`` (epoch s)."""
    affect_suppressions: bool = False
    """Also apply faults to the suppression GET endpoints (accept-drop acts as a drop)."""

    def __post_init__(self) -> None:
        for _, name in _EXCLUSIVE:
            _check_rate(name, getattr(self, name))
        _check_rate("rate_slow", self.rate_slow)
        if self.exclusive_total() > 1.0 + 1e-9:
            raise ValueError("rate_drop + rate_accept_drop + rate_429/500/503 must be <= 1")
        if self.slow_delay_s < 0 or self.rate_limit_reset_s < 0:
            raise ValueError("slow_delay_s and rate_limit_reset_s must be >= 0")
        if self.rate_limit_limit < 1:
            raise ValueError("rate_limit_limit must be >= 1")

    def exclusive_total(self) -> float:
        """Sum of the mutually exclusive fault rates."""
        return sum(float(getattr(self, name)) for _, name in _EXCLUSIVE)

    def outcome(self, u: float) -> Outcome:
        """The outcome for a uniform draw ``u`` in [0, 1)."""
        edge = 0.0
        for outcome, name in _EXCLUSIVE:
            edge += getattr(self, name)
            if u < edge:
                return outcome
        return "ok"


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
