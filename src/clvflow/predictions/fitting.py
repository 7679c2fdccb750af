"""What both models' maximum-likelihood fits share: checked input arrays, weights, and the
verdict on where the optimiser stopped.

The fits search over log-parameters inside a box of ±``LOG_BOUND``; an estimate on the
box's edge (or far out, ``LOG_RUNAWAY``, without converging) means the data do not identify
the model, and the fit fails saying which parameter ran off towards 0 or infinity.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from scipy import optimize

FloatArray = npt.NDArray[np.float64]

LOG_BOUND = 18.0
# Largest absolute gradient (per customer, log-parameters) accepted when L-BFGS-B stops
# without reporting convergence (it does so when the line search cannot improve further).
GRADIENT_TOLERANCE = 1e-5
# Log-parameters this far out, without convergence, count as running off to 0 or infinity.
LOG_RUNAWAY = 10.0


def vector(name: str, values: npt.ArrayLike, *, non_negative: bool = False) -> FloatArray:
    """``values`` as a one-dimensional float array; ``non_negative``: also finite and ≥ 0."""
    array = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if array.ndim > 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if non_negative:
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} must be finite (no NaN or infinity)")
        if np.any(array < 0):
            raise ValueError(f"{name} must not be negative")
    return array


def weights(given: npt.ArrayLike | None, size: int) -> FloatArray:
    """Counts of identical customers, one per customer (1 each when None)."""
    if given is None:
        return np.ones(size)
    w = vector("weights", given, non_negative=True)
    if w.shape != (size,):
        raise ValueError(f"weights must have one entry per customer ({size}), got {w.size}")
    if np.any(w != np.round(w)):
        raise ValueError("weights must be whole numbers (counts of identical customers)")
    return w


def estimate(
    result: optimize.OptimizeResult,
    objective: Callable[[FloatArray], tuple[float, FloatArray]],
    model: str,
    names: tuple[str, ...],
) -> FloatArray:
    """The optimiser's log-parameters, or ValueError if they ran off towards 0 or infinity
    (to the search box's edge, or far out without converging) or did not converge."""
    theta = np.asarray(result.x, dtype=np.float64)
    if not np.all(np.isfinite(theta)):
        raise ValueError(f"the {model} fit did not converge ({result.message})")
    _, gradient = objective(theta)
    converged = bool(result.success) or np.max(np.abs(gradient)) <= GRADIENT_TOLERANCE
    limit = LOG_BOUND - 1e-3 if converged else LOG_RUNAWAY
    runaway = [
        f"{name} → {'∞' if value > 0 else '0'}"
        for name, value in zip(names, theta, strict=True)
        if abs(value) > limit
    ]
    if runaway:
        raise ValueError(
            f"the {model} fit diverged ({', '.join(runaway)}): the data do not identify "
            "the model, e.g. too few customers or repeat purchases"
        )
    if not converged:
        raise ValueError(f"the {model} fit did not converge ({result.message})")
    return theta
