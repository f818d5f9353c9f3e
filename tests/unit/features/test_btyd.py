"""BG/NBD and Gamma-Gamma in closed form, checked against the process that made the data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.btyd import BgNbd, fit_bgnbd, fit_gamma_gamma
from features.synthetic import bgnbd_export

START = pd.Timestamp("2022-01-01")
TRUTH = {"r": 0.25, "alpha": 10.0, "a": 0.8, "b": 2.5}


def _summaries(export: pd.DataFrame, cutoff_day: float) -> pd.DataFrame:
    """Per customer who arrived before the cutoff: x, t_x, T, mean repeat value, and the
    orders after the cutoff."""
    day = (pd.to_datetime(export["InvoiceDate"]) - START).dt.total_seconds() / 86_400
    orders = pd.DataFrame({"c": export["Customer ID"], "day": day, "v": export["Price"]})
    orders = orders.sort_values(["c", "day"], kind="stable")
    before = orders[orders["day"] < cutoff_day]
    after = orders[orders["day"] >= cutoff_day].groupby("c").size()
    g = before.groupby("c")
    first, last, n = g["day"].min(), g["day"].max(), g.size()
    repeat = before[before.groupby("c").cumcount() > 0].groupby("c")["v"].mean()
    return pd.DataFrame(
        {
            "x": (n - 1).astype(float),
            "t_x": last - first,
            "T": cutoff_day - first,
            "m": repeat.reindex(n.index).fillna(0.0),
            "future": after.reindex(n.index).fillna(0).astype(float),
        }
    )


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return _summaries(bgnbd_export(6000, seed=11, days=730, **TRUTH), cutoff_day=500.0)


def test_bgnbd_fit_recovers_the_generating_process(data: pd.DataFrame) -> None:
    fitted = fit_bgnbd(data["x"], data["t_x"], data["T"])
    assert fitted.r / fitted.alpha == pytest.approx(TRUTH["r"] / TRUTH["alpha"], rel=0.15)
    assert fitted.a / (fitted.a + fitted.b) == pytest.approx(0.8 / 3.3, rel=0.15)
    for name, value in TRUTH.items():
        assert getattr(fitted, name) == pytest.approx(value, rel=0.35), name


def test_bgnbd_predicts_the_holdout_period(data: pd.DataFrame) -> None:
    """Fit before day 500, predict the 230 days after: totals agree and so does the order."""
    fitted = fit_bgnbd(data["x"], data["t_x"], data["T"])
    x, t_x, T = data["x"].to_numpy(), data["t_x"].to_numpy(), data["T"].to_numpy()
    expected = fitted.expected_purchases(230.0, x, t_x, T)
    actual = data["future"].to_numpy()
    assert expected.sum() == pytest.approx(actual.sum(), rel=0.1)
    # Customers who buy again are predicted more purchases than those who do not.
    assert expected[actual > 0].mean() > 2 * expected[actual == 0].mean()
    quiet = fitted.p_no_purchase(230.0, x, t_x, T)
    assert quiet[actual == 0].mean() > quiet[actual > 0].mean() + 0.2
    observed_quiet = (actual == 0).mean()
    assert quiet.mean() == pytest.approx(observed_quiet, abs=0.03)


def test_bgnbd_probabilities_are_consistent() -> None:
    params = BgNbd(**TRUTH)
    x = np.array([0.0, 1.0, 5.0, 5.0])
    t_x = np.array([0.0, 30.0, 100.0, 300.0])
    T = np.array([100.0, 300.0, 300.0, 300.0])
    alive = params.p_alive(x, t_x, T)
    assert alive[0] == 1.0  # no repeat order: BG/NBD has not let the customer leave yet
    assert alive[3] > alive[2]  # the same orders, the last one more recent
    assert ((alive > 0) & (alive <= 1)).all()
    short, long = params.p_no_purchase(30, x, t_x, T), params.p_no_purchase(365, x, t_x, T)
    assert (short > long).all()
    assert (
        params.expected_purchases(365, x, t_x, T) > params.expected_purchases(30, x, t_x, T)
    ).all()


def test_gamma_gamma_recovers_the_spend_process(data: pd.DataFrame) -> None:
    fitted = fit_gamma_gamma(data["x"], data["m"])
    # The generator's defaults: p = 3, q = 4, gamma = 30 (mean order value p*gamma/(q-1) = 30).
    assert fitted.p * fitted.gamma / (fitted.q - 1) == pytest.approx(30.0, rel=0.1)
    x, m = data["x"].to_numpy(), data["m"].to_numpy()
    spend = fitted.expected_spend(x, m)
    heavy = x >= 5
    # Shrinkage: a frequent buyer's expected spend is close to their own mean.
    assert np.median(np.abs(spend[heavy] - m[heavy]) / m[heavy]) < 0.25
    assert np.unique(spend[x == 0].round(6)).size == 1  # the population mean
