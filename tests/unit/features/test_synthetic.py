"""The BG/NBD generator draws from the process it claims: a BG/NBD fit recovers its
parameters, so models tested on its data are tested against a known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.synthetic import bgnbd_export


def _summary(export: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
    when = pd.to_datetime(export["InvoiceDate"])
    orders = pd.DataFrame({"c": export["Customer ID"], "t": when}).groupby("c")["t"]
    first, last, n = orders.min(), orders.max(), orders.size()
    return pd.DataFrame(
        {
            "customer_id": np.arange(len(n)),
            "frequency": (n - 1).to_numpy(),
            "recency": ((last - first).dt.total_seconds() / 86_400).to_numpy(),
            "T": ((end - first).dt.total_seconds() / 86_400).to_numpy(),
        }
    )


def test_bgnbd_fit_recovers_the_generating_parameters() -> None:
    clv = pytest.importorskip("pymc_marketing.clv", reason="the bgnbd extra is not installed")
    truth = {"r": 0.25, "alpha": 10.0, "a": 0.8, "b": 2.5}
    export = bgnbd_export(4000, seed=3, days=730, **truth)
    data = _summary(export, pd.Timestamp("2022-01-01") + pd.Timedelta(days=730))
    model = clv.BetaGeoModel(data=data)
    model.fit(method="map", progressbar=False)
    fitted = model.fit_summary()
    # Mean purchase rate r/alpha and mean dropout a/(a+b) within 15%; each parameter within 35%.
    assert fitted["r"] / fitted["alpha"] == pytest.approx(0.025, rel=0.15)
    assert fitted["a"] / (fitted["a"] + fitted["b"]) == pytest.approx(0.8 / 3.3, rel=0.15)
    for name, value in truth.items():
        assert fitted[name] == pytest.approx(value, rel=0.35), name


def test_bgnbd_export_is_seeded_and_within_the_period() -> None:
    one, two = bgnbd_export(300, seed=5), bgnbd_export(300, seed=5)
    pd.testing.assert_frame_equal(one, two)
    when = pd.to_datetime(one["InvoiceDate"])
    assert when.min() >= pd.Timestamp("2022-01-01")
    assert when.max() < pd.Timestamp("2022-01-01") + pd.Timedelta(days=730)
    assert one["Customer ID"].nunique() == 300
    assert (one["Price"] > 0).all()
