"""What an integrator reads: ids as the API takes them, reason codes in words, stale-feature
warnings, and the files for a CRM (rounding, data dictionary, target lists never replaced)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from features.catalog import Workspace
from features.names import reason_text
from serving.contract import DECIMALS, column_kind, data_dictionary, rounded
from serving.models import BundleModel, reason_codes
from serving.schemas import ScoreRequest
from serving.scoring import freshness
from serving.targets import budget_warnings, publish_target_list, target_list


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (" 1 ", "1"),
        ("\tabc\n", "abc"),
        (17850, "17850"),
        (6.0, "6"),
        (0, "0"),
        ("x" * 128, "x" * 128),
    ],
)
def test_ids_are_trimmed_and_numbers_are_taken_as_their_digits(
    given: object, expected: str
) -> None:
    assert ScoreRequest.model_validate({"customer_id": given}).ids() == [expected]
    assert ScoreRequest.model_validate({"customer_ids": [given, "b"]}).ids() == [expected, "b"]


@pytest.mark.parametrize(
    "bad", ["", "   ", "x" * 129, " " + "x" * 128, 1.5, -1, 2**63, True, None, [1]]
)
def test_bad_ids_are_refused_naming_the_field(bad: object) -> None:
    with pytest.raises(ValidationError) as error:
        ScoreRequest.model_validate({"customer_id": bad})
    assert any(e["loc"][:1] == ("customer_id",) or e["loc"] == () for e in error.value.errors())
    with pytest.raises(ValidationError) as error:
        ScoreRequest.model_validate({"customer_ids": ["ok", bad]})
    assert any(e["loc"][:2] == ("customer_ids", 1) for e in error.value.errors())


def test_reason_words_show_whole_days_shares_and_unknown_never_na() -> None:
    assert reason_text("recency_days", 293.92, 1.0, "the churn risk") == (
        "days since the last purchase (294) raises the churn risk"
    )
    assert reason_text("frequency_365d", 12.0, -1.0, "x").startswith(
        "purchase orders in the last 365 days (12) lowers"
    )
    assert "(35%)" in reason_text("returns_share_365d", 0.351, 1.0, "x")
    assert "(1,234.5)" in reason_text("monetary_365d", 1234.5, 1.0, "x")
    for missing in (None, float("nan"), np.nan, pd.NA, pd.NaT):
        text = reason_text("rfm_segment", missing, 1.0, "x")
        assert "(unknown)" in text and "<NA>" not in text and "nan" not in text
    named = reason_text("category_share_3", 0.5, 1.0, "x", ("MILK", "BREAD", "BEEF"))
    assert named == "share of 365-day spend on BEEF (50%) raises x"
    # Without the build's slots (or past them) the generic description stays.
    assert "top-3 category" in reason_text("category_share_3", 0.5, 1.0, "x", ("MILK",))


def test_reason_codes_of_a_model_name_the_category_that_drives_it() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"category_share_2": rng.random(2000), "recency_days": rng.exponential(60, 2000)}
    )
    label = (frame["category_share_2"] > 0.5).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_leaves": 4, "seed": 0},
        lgb.Dataset(frame, label),
        num_boost_round=20,
    )
    model = BundleModel.create("churn", list(frame.columns), {}, {"churn": booster})
    rows = frame.head(20).to_dict("records")
    found = reason_codes(model, model.frame_matrix(frame.head(20)), rows, 1, ("FRUIT", "BEEF"))
    texts = [r.text for found_row in found for d in ("up", "down") for r in found_row[d]]
    assert any("share of 365-day spend on BEEF" in t for t in texts)
    assert not any("top-2" in t for t in texts)


def test_freshness_warns_past_the_limit_naming_the_age_in_days() -> None:
    now = datetime(2026, 11, 29, tzinfo=UTC)
    age, warnings = freshness(now - timedelta(days=3253, hours=5), now, 45)
    assert age == (3253 * 24 + 5) * 3600
    assert len(warnings) == 1 and "3,253 days old" in warnings[0]
    assert "serving.stale_feature_days (45)" in warnings[0]
    assert freshness(now - timedelta(days=45), now, 45)[1] == []
    assert freshness(now - timedelta(days=46), now, 45)[1]
    assert freshness(now - timedelta(days=4000), now, None)[1] == []


def _scores(n: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "customer_id": [f"c{i:02d}" for i in range(n)],
            "churn_probability": rng.random(n),
            "clv": rng.gamma(2, 100, n),
            "clv_percentile": rng.uniform(0, 100, n),
            "retention_priority": rng.gamma(2, 30, n),
            "offer_1": "MILK",
            "offer_1_probability": rng.random(n),
            "offer_1_expected_value": rng.random(n) * 3,
            "churn_model_version": "2@champion",
        }
    )


def test_files_round_each_kind_of_number_to_its_decimals() -> None:
    out = rounded(_scores())
    for name in out.columns:
        kind = column_kind(name)
        if kind is None:
            continue
        decimals = [len(f"{v!r}".split(".")[1]) for v in out[name] if "." in f"{v!r}"]
        assert max(decimals) <= DECIMALS[kind], name
    assert column_kind("offer_12_expected_value") == "money"
    assert column_kind("offer_3_probability") == "probability"
    assert column_kind("offer_3") is None and column_kind("customer_id") is None


def test_a_data_dictionary_describes_every_column() -> None:
    columns = [*_scores().columns, "priority_rank", "group", "churn_band"]
    found = data_dictionary(columns, {"churn": 90, "clv": None}, {"churn": "2@champion"}, "GBP")
    assert [c["name"] for c in found["columns"]] == columns
    by_name = {c["name"]: c for c in found["columns"]}
    assert all(c["meaning"] for c in found["columns"])
    assert "90 days" in by_name["churn_probability"]["meaning"]
    assert "not recorded" in by_name["clv"]["meaning"] and by_name["clv"]["unit"] == "GBP"
    assert by_name["clv"]["decimals"] == 2 and by_name["churn_probability"]["decimals"] == 6
    assert by_name["group"]["values"] == ["treatment", "control"]
    assert by_name["churn_band"]["values"] == ["low", "medium", "high"]
    assert found["currency"] == "GBP" and found["model_versions"] == {"churn": "2@champion"}


def test_a_target_list_is_never_replaced_without_force(tmp_path: Path) -> None:
    scores_file = tmp_path / "scores_2024-01-01.parquet"
    _scores().to_parquet(scores_file)
    Workspace.dictionary_file(scores_file).write_text(
        json.dumps({"currency": "GBP", "horizons_days": {"churn": 90}, "model_versions": {}})
    )
    paths = Workspace(tmp_path)
    paths.scores_dir.mkdir()
    out = paths.targets_file("retention", "2024-01-01", 10, 0.2, 3)
    assert re.fullmatch(r"targets_retention_budget10_control0\.2_seed3_2024-01-01\.csv", out.name)
    assert Workspace.scores_date(out) == "2024-01-01"
    first = target_list(_scores(), "retention", 10, 0.2, seed=3)
    about = {"objective": "retention", "budget": 10}
    publish_target_list(first, out, scores_file, about, force=False)
    written = out.read_bytes()
    other = target_list(_scores(), "retention", 10, 0.2, seed=4)
    with pytest.raises(FileExistsError, match="--force"):
        publish_target_list(other, out, scores_file, about, force=False)
    assert out.read_bytes() == written
    assert not [p for p in paths.scores_dir.iterdir() if p.name.endswith(".tmp")]
    listed = pd.read_csv(out)
    assert list(listed.columns) == list(first.columns) and (listed["group"] == "control").sum() == 2
    dictionary = json.loads(Workspace.dictionary_file(out).read_text())
    assert [c["name"] for c in dictionary["columns"]] == list(listed.columns)
    assert dictionary["currency"] == "GBP" and dictionary["horizons_days"] == {"churn": 90}
    assert dictionary["budget"] == 10 and dictionary["as_of"] == "2024-01-01"
    publish_target_list(other, out, scores_file, about, force=True)
    assert out.read_bytes() != written


def test_a_budget_over_the_base_is_said() -> None:
    assert budget_warnings(30, 30, "2024-01-01") == []
    (warning,) = budget_warnings(31, 30, "2024-01-01")
    assert "--budget 31" in warning and "30 customers" in warning
