"""Buy-till-you-die models in closed form: BG/NBD (Fader, Hardie & Lee 2005) for purchase
counts and Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV") for spend per order.

Maximum likelihood with scipy in well under a second, and predictions with numpy and scipy
only, so they can serve as point-in-time features (one fit per cutoff, on pre-cutoff data),
as contenders in training and inside a serving bundle. Times are in days.

Inputs per customer, as in the papers: `x` repeat orders (orders after the first), `t_x` the
age of the customer at the last order (0 when x = 0), `T` the age at the cutoff, and `m` the
mean value of the repeat orders."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1
from threadpoolctl import threadpool_limits

from features.engineering import cutoff_us
from features.names import CUSTOMER_BTYD, CUSTOMER_ID, EVENT_TIMESTAMP

# Fewer customers than this at a cutoff: the BTYD features stay missing there.
MIN_CUSTOMERS_TO_FIT = 20
# The activity features the BTYD summaries are computed from.
BTYD_INPUTS = ("frequency_lifetime", "tenure_days", "recency_days", "monetary_lifetime")


@dataclass(frozen=True)
class BgNbd:
    """BG/NBD parameters: purchase rate ~ Gamma(r, alpha), dropout ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    def as_dict(self) -> dict[str, float]:
        """JSON-ready parameters."""
        return asdict(self)

    def _odds_dead(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        with np.errstate(divide="ignore", invalid="ignore"):
            odds = a / (b + x - 1) * np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + t_x)))
        return np.where(x > 0, odds, 0.0)

    def p_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(the customer is still active at T)."""
        return np.asarray(1 / (1 + self._odds_dead(x, t_x, T)), dtype=float)

    def p_no_purchase(self, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(no order in (T, T + t])."""
        alive = self.p_alive(x, t_x, T)
        quiet = np.exp((self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + T + t)))
        return np.asarray(1 - alive + alive * quiet, dtype=float)

    def expected_purchases(
        self, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
    ) -> np.ndarray:
        """E[orders in (T, T + t]] (the paper's equation 10)."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        ratio = np.exp((r + x) * (np.log(alpha + T) - np.log(alpha + T + t)))
        z = t / (alpha + T + t)
        head = (a + b + x - 1) / (a - 1)
        body = 1 - ratio * hyp2f1(r + x, b + x, a + b + x - 1, z)
        return np.asarray(np.clip(head * body / (1 + self._odds_dead(x, t_x, T)), 0, None))


@dataclass(frozen=True)
class Counts:
    """Repeat-order counts, which take few distinct values: an elementwise function of them
    is computed once per distinct value (the same floats as for every customer, faster)."""

    values: np.ndarray
    distinct: np.ndarray
    inverse: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> Counts:
        """The counts `x` (float) with their distinct values."""
        values = np.asarray(x, dtype=float)
        distinct, inverse = np.unique(values, return_inverse=True)
        return cls(values, distinct, inverse)

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """`fn(values)` for an elementwise `fn`."""
        return np.asarray(fn(self.distinct))[self.inverse]


def bgnbd_log_likelihood(
    params: BgNbd, x: np.ndarray | Counts, t_x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """Each customer's log-likelihood (the paper's equation 6)."""
    counts = x if isinstance(x, Counts) else Counts.of(x)
    x = counts.values
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    a1 = counts.map(lambda v: gammaln(r + v)) - gammaln(r) + r * np.log(alpha)
    a2 = counts.map(lambda v: betaln(a, b + v)) - betaln(a, b)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_b = counts.map(lambda v: np.log(np.maximum(b + v - 1, 1e-12)))
        a4 = np.where(x > 0, np.log(a) - log_b - (r + x) * np.log(alpha + t_x), -np.inf)
    return np.asarray(a1 + a2 + np.logaddexp(a3, a4), dtype=float)


def fit_bgnbd(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> BgNbd:
    """Maximum-likelihood BG/NBD."""
    counts = Counts.of(x)
    t_x, T = (np.asarray(v, dtype=float) for v in (t_x, T))
    scale = max(float(np.mean(T)), 1.0)  # fit alpha in units of the mean age: better scaled

    def loss(theta: np.ndarray) -> float:
        r, alpha, a, b = np.exp(theta)
        params = BgNbd(r, alpha * scale, a, b)
        return -float(np.mean(bgnbd_log_likelihood(params, counts, t_x, T)))

    start = np.log([0.5, 1.0, 0.5, 2.0])
    found = minimize(loss, start, method="L-BFGS-B", bounds=[(-8, 8)] * 4)
    r, alpha, a, b = np.exp(found.x)
    return BgNbd(float(r), float(alpha * scale), float(a), float(b))


@dataclass(frozen=True)
class GammaGamma:
    """Gamma-Gamma spend per order: value ~ Gamma(p, nu), nu ~ Gamma(q, gamma)."""

    p: float
    q: float
    gamma: float

    def as_dict(self) -> dict[str, float]:
        """JSON-ready parameters."""
        return asdict(self)

    def expected_spend(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """E[value of an order | x repeat orders of mean value m]; the population mean for
        customers without repeat orders."""
        p, q, gamma = self.p, self.q, self.gamma
        x = np.asarray(x, dtype=float)
        m = np.nan_to_num(np.asarray(m, dtype=float))
        return np.asarray((gamma + m * x) * p / (p * x + q - 1), dtype=float)


def fit_gamma_gamma(x: np.ndarray, m: np.ndarray) -> GammaGamma:
    """Maximum-likelihood Gamma-Gamma on the customers with repeat orders and positive mean
    value (q is kept above 1 so that the mean spend is finite)."""
    x, m = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
    keep = (x > 0) & (m > 0)
    x, m = x[keep], m[keep]
    scale = float(np.mean(m)) if len(m) else 1.0
    counts, ms = Counts.of(x), m / scale
    log_ms, log_x = np.log(ms), np.log(x)

    def loss(theta: np.ndarray) -> float:
        p, q, gamma = np.exp(theta)
        q = 1 + q
        px = p * x
        ll = (
            counts.map(lambda v: gammaln(p * v + q))
            - counts.map(lambda v: gammaln(p * v))
            - gammaln(q)
            + q * np.log(gamma)
            + (px - 1) * log_ms
            + px * log_x
            - (px + q) * np.log(gamma + ms * x)
        )
        return -float(np.mean(ll))

    found = minimize(loss, np.log([1.0, 2.0, 1.0]), method="L-BFGS-B", bounds=[(-8, 8)] * 3)
    p, q, gamma = np.exp(found.x)
    return GammaGamma(float(p), float(1 + q), float(gamma * scale))


def btyd_inputs(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """BG/NBD inputs from point-in-time activity features: repeat orders x, age at the last
    order t_x, age T (days) and the mean order value m."""
    orders = frame["frequency_lifetime"].fillna(0).to_numpy(float)
    T = np.maximum(frame["tenure_days"].fillna(0).to_numpy(float), 1e-3)
    since_last = frame["recency_days"].to_numpy(float)
    t_x = np.clip(T - np.where(np.isnan(since_last), T, since_last), 0, None)
    x = np.clip(orders - 1, 0, None)
    spend = frame["monetary_lifetime"].fillna(0).to_numpy(float)
    m = np.where(orders > 0, spend / np.maximum(orders, 1), 0.0)
    return x, np.where(x > 0, t_x, 0.0), T, m


@dataclass(frozen=True)
class BtydFit:
    """The BG/NBD and Gamma-Gamma fits of one cutoff."""

    counts: BgNbd
    spend: GammaGamma


def fit_btyd(rows: pd.DataFrame) -> BtydFit | None:
    """BG/NBD and Gamma-Gamma fitted on one cutoff's customers (their BTYD_INPUTS); None when
    fewer than MIN_CUSTOMERS_TO_FIT have bought or none has repeat orders. The fits sum over
    customers in an order fixed by their values, so they depend only on the set of customers
    (not on row order or on how customers were partitioned)."""
    x, t_x, T, m = btyd_inputs(rows)
    bought = rows["frequency_lifetime"].fillna(0).to_numpy(float) > 0
    if bought.sum() < MIN_CUSTOMERS_TO_FIT or not (x[bought] > 0).any():
        return None
    x, t_x, T, m = x[bought], t_x[bought], T[bought], m[bought]
    order = np.lexsort((m, T, t_x, x))
    x, t_x, T, m = x[order], t_x[order], T[order], m[order]
    # L-BFGS-B calls BLAS on 4x4 matrices: BLAS threads only wait for each other (10 times
    # slower on a busy machine).
    with threadpool_limits(1, user_api="blas"):
        return BtydFit(fit_bgnbd(x, t_x, T), fit_gamma_gamma(x, m))


def btyd_fits(snapshot: pd.DataFrame) -> dict[int, BtydFit | None]:
    """`fit_btyd` at every cutoff (int us) of a snapshot (event_timestamp and BTYD_INPUTS)."""
    return {
        cutoff_us(rows[EVENT_TIMESTAMP].iloc[0]): fit_btyd(rows)
        for _, rows in snapshot.groupby(EVENT_TIMESTAMP, sort=True)
    }


def btyd_features(
    snapshot: pd.DataFrame,
    churn_horizon_days: int,
    clv_horizon_days: int,
    clv_asked_days: int | None = None,
    fits: dict[int, BtydFit | None] | None = None,
) -> pd.DataFrame:
    """BTYD signals per customer and cutoff: BG/NBD and Gamma-Gamma fitted, per cutoff, on the
    customers' history before that cutoff only (the activity features), then P(alive),
    P(no purchase in the churn horizon), expected orders, order value and spend in the CLV
    horizon (the one the CLV model is trained at), and the ratio of expected orders in the
    asked CLV horizon (`clv_asked_days`, by default the same) to those in the trained one.
    `snapshot` has customer_id, event_timestamp and the activity features; `fits` are those
    of every cutoff (`btyd_fits` of the whole population; default: of `snapshot`)."""
    asked = clv_horizon_days if clv_asked_days is None else clv_asked_days
    fits = btyd_fits(snapshot) if fits is None else fits
    names = [f.name for f in CUSTOMER_BTYD]
    parts = []
    for _, rows in snapshot.groupby(EVENT_TIMESTAMP, sort=True):
        rows = rows.sort_values(CUSTOMER_ID, kind="stable")
        x, t_x, T, m = btyd_inputs(rows)
        bought = rows["frequency_lifetime"].fillna(0).to_numpy(float) > 0
        out = pd.DataFrame({CUSTOMER_ID: rows[CUSTOMER_ID].to_numpy()})
        out[EVENT_TIMESTAMP] = rows[EVENT_TIMESTAMP].to_numpy()
        values = dict.fromkeys(names, np.full(len(rows), np.nan))
        fit = fits.get(cutoff_us(rows[EVENT_TIMESTAMP].iloc[0]))
        if fit is not None:
            counts, spend = fit.counts, fit.spend
            orders = counts.expected_purchases(clv_horizon_days, x, t_x, T)
            value = spend.expected_spend(x, m)
            longer = (
                orders if asked == clv_horizon_days else counts.expected_purchases(asked, x, t_x, T)
            )
            computed = [
                counts.p_alive(x, t_x, T),
                counts.p_no_purchase(churn_horizon_days, x, t_x, T),
                orders,
                value,
                orders * np.clip(value, 0, None),
                np.where(orders > 0, longer / np.where(orders > 0, orders, 1.0), 1.0),
            ]
            values = {
                name: np.where(bought, v, np.nan) for name, v in zip(names, computed, strict=True)
            }
        for name in names:
            out[name] = values[name]
        parts.append(out)
    if not parts:
        return pd.DataFrame(columns=[CUSTOMER_ID, EVENT_TIMESTAMP, *names])
    return pd.concat(parts, ignore_index=True)
