"""Synthetic transaction exports with a known structure, for tests and benchmarks.

Customers buy as Poisson processes with their own rate and basket value, may stop buying
(churn) at a random moment, and return a small share of lines. The output has the columns of
a typical retail export (like Online Retail), so it goes through the real ingestion path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

EXPORT_COLUMNS = [
    "Invoice",
    "StockCode",
    "Category",
    "Quantity",
    "InvoiceDate",
    "Price",
    "Customer ID",
    "Country",
]


def synthetic_export(
    lines: int, customers: int, seed: int = 0, start: str = "2022-01-01", days: int = 730
) -> pd.DataFrame:
    """About `lines` invoice lines for `customers` customers over `days` days."""
    rng = np.random.default_rng(seed)
    lines_per_order = 8
    # Orders after a customer's stop day are dropped below: draw more so ~`lines` remain.
    orders = max(1, int(lines / lines_per_order / 0.8))
    rate = rng.gamma(0.8, 1.0, customers)
    customer_of_order = rng.choice(customers, size=orders, p=rate / rate.sum())
    # Each customer stops buying at a random day (some never do): orders after it are dropped.
    stop = np.where(rng.random(customers) < 0.4, rng.integers(0, days, customers), days)
    day = rng.integers(0, days, orders)
    keep = day < stop[customer_of_order]
    customer_of_order, day = customer_of_order[keep], day[keep]
    orders = len(day)
    seconds = day.astype(np.int64) * 86_400 + rng.integers(8 * 3600, 20 * 3600, orders)
    order_sizes = rng.integers(1, 2 * lines_per_order, orders)
    order_of_line = np.repeat(np.arange(orders), order_sizes)[:lines]
    n = len(order_of_line)
    products = rng.zipf(1.3, n) % 5000
    is_return = rng.random(orders) < 0.02
    quantity = rng.integers(1, 12, n) * np.where(is_return[order_of_line], -1, 1)
    invoice = np.char.add(np.where(is_return, "C", ""), (100000 + np.arange(orders)).astype(str))
    timestamps = pd.Timestamp(start) + pd.to_timedelta(seconds[order_of_line], unit="s")
    countries = np.array(["United Kingdom", "Germany", "France", "EIRE", "Spain"])
    return pd.DataFrame(
        {
            "Invoice": invoice[order_of_line],
            "StockCode": (10000 + products).astype(str),
            "Category": np.char.add("cat", (products % 40).astype(str)),
            "Quantity": quantity,
            "InvoiceDate": timestamps.strftime("%Y-%m-%d %H:%M:%S"),
            "Price": np.round(rng.gamma(2.0, 2.0, n) + 0.1, 2),
            "Customer ID": (10000 + customer_of_order[order_of_line]).astype(str),
            "Country": countries[customer_of_order[order_of_line] % len(countries)],
        }
    )


def bgnbd_export(
    customers: int,
    seed: int = 0,
    start: str = "2022-01-01",
    days: int = 730,
    r: float = 0.25,
    alpha: float = 10.0,
    a: float = 0.8,
    b: float = 2.5,
    spend_shape: float = 3.0,
    spend_q: float = 4.0,
    spend_gamma: float = 30.0,
) -> pd.DataFrame:
    """Orders drawn from a BG/NBD process with Gamma-Gamma spend: a known truth for models.

    Each customer arrives on a uniform day of the first 60% of the period with a first order,
    buys at a daily rate lambda ~ Gamma(r, rate alpha) while alive and, after every repeat
    order, leaves for good with probability p ~ Beta(a, b) (Fader, Hardie & Lee 2005). An order's
    value is Gamma(spend_shape, rate nu) with nu ~ Gamma(spend_q, rate spend_gamma) per
    customer (Fader, Hardie & Lee's Gamma-Gamma). One line per order."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(r, 1 / alpha, customers)
    drop = rng.beta(a, b, customers)
    nu = rng.gamma(spend_q, 1 / spend_gamma, customers)
    arrival = rng.uniform(0, 0.6 * days, customers)
    who, when = [], []
    for c in range(customers):
        t = arrival[c]
        who.append(c)
        when.append(t)
        while True:  # repeat orders; a customer may leave after each of them
            t += rng.exponential(1 / rate[c])
            if t >= days:
                break
            who.append(c)
            when.append(t)
            if rng.random() < drop[c]:
                break
    customer = np.asarray(who, dtype=np.int64)
    day = np.asarray(when)
    value = rng.gamma(spend_shape, 1 / nu[customer])
    timestamps = pd.Timestamp(start) + pd.to_timedelta(np.round(day * 86_400), unit="s")
    categories = np.char.add(
        "cat", ((customer * 7 + rng.integers(0, 3, len(customer))) % 20).astype(str)
    )
    return pd.DataFrame(
        {
            "Invoice": (100000 + np.arange(len(customer))).astype(str),
            "StockCode": np.char.add("p", categories),
            "Category": categories,
            "Quantity": 1,
            "InvoiceDate": timestamps.strftime("%Y-%m-%d %H:%M:%S"),
            "Price": np.round(value + 0.01, 2),
            "Customer ID": (10000 + customer).astype(str),
            "Country": "United Kingdom",
        }
    )


def write_export(frame: pd.DataFrame, path: Path) -> Path:
    """Write an export as CSV (fast, via pyarrow)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def dataset_yaml(csv_path: Path, name: str = "synthetic") -> str:
    """A dataset config for an export written by `write_export`."""
    return f"""name: {name}
timezone: UTC
currency: GBP
tables:
  transactions:
    sources:
      - path: {csv_path}
        columns:
          order_id: Invoice
          product_id: StockCode
          category: Category
          quantity: Quantity
          timestamp: InvoiceDate
          unit_price: Price
          customer_id: Customer ID
          country: Country
    timestamp_format: "%Y-%m-%d %H:%M:%S"
    derive:
      amount: quantity * unit_price
    customer_attributes: [country]
    rules:
      return_order_prefix: C
      require_positive_unit_price: true
"""
