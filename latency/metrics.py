"""How well latencies agree: the one definition behind every "within +-X%" that hwnas prints.

A prediction's relative error is |predicted / measured - 1|: judged against the measurement.
Two measurements of one model are compared the same way, the second against the first. The
predictors' held-out figures, the closed loop's front check, the report, the dashboard and the
benches all call these functions, so one data set gives one figure everywhere.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def relative_error(predicted: ArrayLike, measured: ArrayLike) -> np.ndarray:
    """|predicted / measured - 1|, elementwise."""
    return np.abs(np.asarray(predicted, float) / np.asarray(measured, float) - 1)


def within(predicted: ArrayLike, measured: ArrayLike, band: float) -> float:
    """The share of predictions within +-`band` (0.10 for +-10%) of their measurements."""
    rel = relative_error(predicted, measured)
    return float(np.mean(rel <= band)) if rel.size else float("nan")


def kendall(predicted: ArrayLike, measured: ArrayLike) -> float:
    """Kendall's tau between predictions and measurements (nan below two)."""
    from scipy.stats import kendalltau  # scipy.stats: 0.8 s to import, needed only here

    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    return float(kendalltau(p, m).statistic) if p.size > 1 else float("nan")


def agreement(predicted: ArrayLike, measured: ArrayLike) -> dict:
    """n, the shares within +-5% and +-10%, the median relative error and Kendall's tau."""
    rel = relative_error(predicted, measured)
    return {
        "n": int(rel.size),
        "within5": within(predicted, measured, 0.05),
        "within10": within(predicted, measured, 0.10),
        "median_rel_diff": float(np.median(rel)) if rel.size else float("nan"),
        "kendall": kendall(predicted, measured),
    }
