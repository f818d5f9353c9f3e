"""Feature names, types and descriptions: the single source of truth.

Feature views (features/feast_repo.py) take their schemas from here; the feature services there
are the only place feature lists are chosen. Other packages import these names, never retype
them. Descriptions are written for people: reason codes turn them into words."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from features.contract import CUSTOMER_ATTRIBUTES

FeatureType = Literal["float", "int", "string"]

CUSTOMER_ID = "customer_id"
OFFER_ID = "offer_id"
EVENT_TIMESTAMP = "event_timestamp"
CREATED_TIMESTAMP = "created_timestamp"

# Label columns (features/labels.py computes them).
CHURN = "churned"
CLV = "clv"
ACCEPTED = "accepted"

WINDOWS_DAYS: tuple[int, ...] = (30, 90, 180, 365, 730)
CATEGORY_SLOTS = 8


# Why a feature's distribution moves between score dates by construction, whatever the
# customers do (`FeatureDef.moves`): drift checks leave such features out and say why.
GROWS = "grows with time by construction (counted since the first purchase)"
CALENDAR = "the score date's calendar: the same for every customer of a date"


@dataclass(frozen=True)
class FeatureDef:
    """One feature: its name, value type, a plain-words description, and why its
    distribution moves between score dates by construction (empty: it does not)."""

    name: str
    dtype: FeatureType
    description: str
    moves: str = ""
    # A count or sum over this many days before the score date (0: not one): it grows with
    # the history while the data covers less than the window.
    window_days: int = 0


def _windowed() -> list[FeatureDef]:
    out = []
    for w in WINDOWS_DAYS:
        out.append(
            FeatureDef(
                f"frequency_{w}d", "int", f"purchase orders in the last {w} days", window_days=w
            )
        )
        out.append(
            FeatureDef(
                f"monetary_{w}d",
                "float",
                f"net spend (after returns) in the last {w} days",
                window_days=w,
            )
        )
    return out


CUSTOMER_ACTIVITY: tuple[FeatureDef, ...] = (
    FeatureDef("recency_days", "float", "days since the last purchase"),
    FeatureDef("tenure_days", "float", "days since the first purchase", GROWS),
    *_windowed(),
    FeatureDef("frequency_lifetime", "int", "purchase orders ever", GROWS),
    FeatureDef(
        "active_months_365d", "int", "months with a purchase among the last 12", window_days=365
    ),
    FeatureDef(
        "purchase_intensity_30d",
        "float",
        "purchases weighted by recency (weight halves every 30 days)",
    ),
    FeatureDef(
        "purchase_intensity_90d",
        "float",
        "purchases weighted by recency (weight halves every 90 days)",
    ),
    FeatureDef(
        "frequency_trend_90d",
        "float",
        "purchases in the last 90 days against the 90 days before (-1 fall .. +1 rise)",
    ),
    FeatureDef(
        "frequency_ly_next_90d",
        "float",
        "purchase orders in the same 90 days one year earlier (seasonality; missing "
        "when the data does not go back that far)",
    ),
    FeatureDef(
        "monetary_ly_next_90d",
        "float",
        "net spend in the same 90 days one year earlier (seasonality)",
    ),
    FeatureDef(
        "monetary_ly_next_180d",
        "float",
        "net spend in the same 180 days one year earlier (seasonality)",
    ),
    FeatureDef("monetary_lifetime", "float", "net spend ever", GROWS),
    FeatureDef("avg_order_value_365d", "float", "average order value in the last 365 days"),
    FeatureDef("avg_basket_items_365d", "float", "average items per order in the last 365 days"),
    FeatureDef("gap_mean_days", "float", "usual number of days between purchases"),
    FeatureDef("gap_std_days", "float", "variability of the days between purchases"),
    FeatureDef("gap_ratio", "float", "days since the last purchase relative to the usual gap"),
    FeatureDef(
        "spend_trend_90d",
        "float",
        "spend in the last 90 days against the 90 days before (-1 fall .. +1 rise)",
    ),
    FeatureDef("returns_share_365d", "float", "share of purchases returned in the last 365 days"),
    FeatureDef(
        "distinct_products_365d",
        "int",
        "different products bought in the last 365 days",
        window_days=365,
    ),
    FeatureDef(
        "distinct_categories_365d",
        "int",
        "different categories bought in the last 365 days",
        window_days=365,
    ),
    *(
        FeatureDef(
            f"category_share_{k}",
            "float",
            f"share of 365-day spend in the catalog's top-{k} category",
        )
        for k in range(1, CATEGORY_SLOTS + 1)
    ),
    FeatureDef("discount_share_365d", "float", "share of the basket value paid by discounts"),
    FeatureDef(
        "offers_received_365d",
        "int",
        "offers sent to the customer in the last 365 days",
        window_days=365,
    ),
    FeatureDef(
        "offers_redeemed_365d", "int", "offers redeemed in the last 365 days", window_days=365
    ),
    FeatureDef(
        "interactions_90d",
        "int",
        "contacts (tickets, complaints, e-mails) in 90 days",
        window_days=90,
    ),
    FeatureDef("interactions_365d", "int", "contacts in the last 365 days", window_days=365),
    FeatureDef(
        "interaction_value_mean_365d",
        "float",
        "average interaction score (e.g. survey) in the last 365 days",
    ),
)

# The calendar at the cutoff: the same for every customer of a snapshot, so that a model can
# learn seasonality (what the months after a December cutoff look like) across cutoffs.
CUSTOMER_CALENDAR: tuple[FeatureDef, ...] = (
    FeatureDef(
        "cutoff_month", "int", "month of the year of the score date (1 = January)", CALENDAR
    ),
)

# The classical models among them (training's baselines; the CLV one is also the starting
# point of the btyd_tweedie formulation), and the CLV horizon extrapolation ratio.
BTYD_CHURN = "btyd_p_no_purchase_churn_horizon"
BTYD_CLV = "btyd_expected_spend_clv_horizon"
BTYD_HORIZON_RATIO = "btyd_clv_horizon_ratio"

# Buy-till-you-die signals (features/btyd.py): BG/NBD and Gamma-Gamma fitted per cutoff on the
# history before it; the horizons are the label windows (labels.*_horizon_days).
CUSTOMER_BTYD: tuple[FeatureDef, ...] = (
    FeatureDef("btyd_p_alive", "float", "probability the customer is still active (BG/NBD)"),
    FeatureDef(
        "btyd_p_no_purchase_churn_horizon",
        "float",
        "probability of no purchase in the churn horizon (BG/NBD)",
    ),
    FeatureDef(
        "btyd_expected_orders_clv_horizon",
        "float",
        "expected purchases in the CLV horizon (BG/NBD)",
    ),
    FeatureDef("btyd_expected_order_value", "float", "expected value of an order (Gamma-Gamma)"),
    FeatureDef(
        "btyd_expected_spend_clv_horizon",
        "float",
        "expected spend in the CLV horizon (BG/NBD x Gamma-Gamma)",
    ),
    FeatureDef(
        "btyd_clv_horizon_ratio",
        "float",
        "expected purchases in the asked CLV horizon over those in the horizon the CLV model "
        "is trained at (BG/NBD; 1 when the history is long enough to train at the asked one)",
    ),
)

CUSTOMER_SEGMENTS: tuple[FeatureDef, ...] = (
    FeatureDef("r_score", "int", "recency score, 1 (long ago) to 5 (recent)"),
    FeatureDef("f_score", "int", "frequency score, 1 (rare) to 5 (frequent)"),
    FeatureDef("m_score", "int", "monetary score, 1 (low spend) to 5 (high spend)"),
    FeatureDef("rfm_segment", "string", "named RFM segment (Champions, At Risk, ...)"),
    FeatureDef("value_tier", "string", "value tier by 365-day spend: high, medium, low"),
    FeatureDef("lifecycle_stage", "string", "lifecycle stage: new, active, at_risk, lapsed"),
)

CUSTOMER_PROFILE: tuple[FeatureDef, ...] = tuple(
    FeatureDef(attr, "string", f"customer attribute: {attr.replace('_', ' ')}")
    for attr in CUSTOMER_ATTRIBUTES
)

OFFER_STATS: tuple[FeatureDef, ...] = (
    FeatureDef("offer_buyers_30d", "int", "customers who bought the offer in the last 30 days"),
    FeatureDef("offer_buyers_90d", "int", "customers who bought the offer in the last 90 days"),
    FeatureDef("offer_revenue_90d", "float", "revenue of the offer in the last 90 days"),
    FeatureDef("offer_value", "float", "average spend per buyer-order on the offer (90 days)"),
    FeatureDef(
        "offer_trend_30d",
        "float",
        "buyers in the last 30 days against the 30 days before (-1 .. +1)",
    ),
    FeatureDef(
        "offer_buyers_30d_last_year",
        "int",
        "customers who bought the offer in the 30 days that began a year before (seasonality)",
    ),
    FeatureDef(
        "offer_repeat_share_365d",
        "float",
        "share of the offer's buyers of the last 365 days who bought it in two orders or more",
    ),
)

CUSTOMER_OFFER_AFFINITY: tuple[FeatureDef, ...] = (
    FeatureDef("affinity_orders_365d", "int", "orders including this offer in the last 365 days"),
    FeatureDef("affinity_spend_365d", "float", "spend on this offer in the last 365 days"),
    FeatureDef("affinity_spend_share_365d", "float", "share of 365-day spend on this offer"),
    FeatureDef("affinity_recency_days", "float", "days since the customer last bought this offer"),
    FeatureDef(
        "affinity_orders_30d_last_year",
        "int",
        "orders including this offer in the 30 days that began a year before (seasonality)",
    ),
    FeatureDef("affinity_orders_90d", "int", "orders including this offer in the last 90 days"),
    FeatureDef(
        "affinity_intensity_90d",
        "float",
        "orders including this offer in the last 365 days weighted by recency (weight halves "
        "every 90 days)",
    ),
    FeatureDef(
        "affinity_intensity_share_90d",
        "float",
        "share of the customer's recency-weighted orders of the last 365 days that include "
        "this offer (weight halves every 90 days)",
    ),
)

# Not a model input: the offers the customer bought most in the last year (the affinity rows'
# offers, most bought first), so an online lookup of one customer knows which customer x offer
# rows to fetch for next-best-offer candidates.
HISTORY_OFFERS = "history_offers"
HISTORY_OFFERS_SEPARATOR = "|"
CUSTOMER_CANDIDATES: tuple[FeatureDef, ...] = (
    FeatureDef(
        HISTORY_OFFERS,
        "string",
        "offers the customer bought most in the last 365 days, most bought first",
    ),
)

# Next-best-offer pair features computed with the candidates (`serving.models.candidates`)
# from the customer's history offers (the affinity view) and the co-purchase neighbours of
# each offer the model keeps (fitted at training on the affinity view): the same at
# training, in batch scoring and in the API. Not stored in a feature view.
NBO_CANDIDATE_FEATURES: tuple[FeatureDef, ...] = (
    FeatureDef(
        "copurchase_score",
        "float",
        "co-purchase similarity of the offer with the customer's history offers (sum)",
    ),
    FeatureDef(
        "copurchase_max",
        "float",
        "co-purchase similarity of the offer with the customer's closest history offer",
    ),
    FeatureDef(
        "copurchase_weighted_score",
        "float",
        "co-purchase similarity of the offer with the customer's history offers, each weighted "
        "by its share of the customer's recency-weighted orders (TIFU-KNN's neighbour score)",
    ),
    FeatureDef(
        "copurchase_links",
        "int",
        "history offers of the customer that have this offer among their neighbours",
    ),
)

ALL_FEATURES: dict[str, FeatureDef] = {
    f.name: f
    for f in (
        *CUSTOMER_ACTIVITY,
        *CUSTOMER_CALENDAR,
        *CUSTOMER_SEGMENTS,
        *CUSTOMER_PROFILE,
        *CUSTOMER_CANDIDATES,
        *CUSTOMER_BTYD,
        *OFFER_STATS,
        *CUSTOMER_OFFER_AFFINITY,
        *NBO_CANDIDATE_FEATURES,
    )
}

CUSTOMER_FEATURES: tuple[str, ...] = tuple(
    f.name
    for f in (
        *CUSTOMER_ACTIVITY,
        *CUSTOMER_CALENDAR,
        *CUSTOMER_SEGMENTS,
        *CUSTOMER_PROFILE,
        *CUSTOMER_CANDIDATES,
    )
)


def moving_features(names: list[str], history_days: int | None = None) -> dict[str, str]:
    """The features among `names` whose distribution moves between score dates by
    construction, with the reason (drift checks leave them out): those that always do
    (`FeatureDef.moves`) and, with `history_days` (the data's history at the earlier score
    date), the counts and sums over a longer window."""
    out = {}
    for name in names:
        found = ALL_FEATURES.get(name)
        if found is None:
            continue
        if found.moves:
            out[name] = found.moves
        elif history_days is not None and found.window_days > history_days:
            out[name] = (
                f"counted over {found.window_days} days, more than the {history_days} days of "
                "history at the reference date: grows with the history"
            )
    return out


CATEGORICAL_FEATURES: tuple[str, ...] = tuple(
    name for name, f in ALL_FEATURES.items() if f.dtype == "string"
)


def describe(name: str, category_slots: Sequence[str] = ()) -> str:
    """A feature's description for people; a category share names its category when the
    build's `category_slots` are given."""
    found = re.fullmatch(r"category_share_(\d+)", name)
    if found and int(found.group(1)) <= len(category_slots):
        return f"share of 365-day spend on {category_slots[int(found.group(1)) - 1]}"
    return ALL_FEATURES[name].description


def shown_value(name: str, value: object) -> str:
    """A feature's value in words: "unknown" when missing, days whole, shares as
    percentages, counts whole, other numbers with at most two decimals."""
    if value is None or (isinstance(value, numbers.Real) and math.isnan(value)):
        return "unknown"
    if not isinstance(value, numbers.Real):
        # A text value; pandas' missing markers (NA, NaT) are no value either.
        return "unknown" if type(value).__name__ in ("NAType", "NaTType") else str(value)
    number = float(value)
    if name.endswith("_days") or ALL_FEATURES[name].dtype == "int":
        return f"{round(number):,}"
    if "_share" in name:
        return f"{number:.0%}"
    return f"{number:,.2f}".rstrip("0").rstrip(".")


def reason_text(
    name: str,
    value: object,
    contribution: float,
    target: str,
    category_slots: Sequence[str] = (),
) -> str:
    """A reason code in words: "<description> (<value>) raises|lowers <target>"
    (`describe`, `shown_value`)."""
    verb = "raises" if contribution > 0 else "lowers"
    return f"{describe(name, category_slots)} ({shown_value(name, value)}) {verb} {target}"
