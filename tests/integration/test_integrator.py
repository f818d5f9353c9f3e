"""What a CRM integrator sees, on the real BentoML service over HTTP and real batch and target
runs: reference pages that work offline with an Authorize button, units, horizons and value
sets, stale-feature warnings, reason codes in words, ids as a CRM sends them, cold starts that
never outrank known customers, and CRM-ready files."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from crmscore import steps
from crmscore.cli import app
from crmscore.settings import Settings, load_settings
from features.catalog import Workspace
from features.segments import LIFECYCLE_STAGES, RFM_SEGMENTS, VALUE_TIERS
from serving.contract import DECIMALS, column_kind
from tests.integration.conftest import Server, Trained
from tests.servers import missing

pytestmark = pytest.mark.slow


class _Links(HTMLParser):
    """Every src and href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found += [v for k, v in attrs if k in ("src", "href") and v]


def _links(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.found


def _settings(trained: Trained) -> Settings:
    return load_settings(trained.workspace, dataset=str(trained.dataset))


def _scores(trained: Trained) -> pd.DataFrame:
    return pd.read_parquet(Workspace(trained.workspace).scores_file(trained.latest))


def rendered(url: str) -> str:
    """The DOM of a page after its scripts ran, in headless Chromium that can reach only
    the loopback address: a page needing anything from the internet renders without it."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        missing("chromium is not installed")
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                str(binary),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={profile}",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--virtual-time-budget=30000",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize(
    ("page", "script"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")]
)
def test_reference_pages_load_only_the_services_own_files(
    server: Server, page: str, script: str
) -> None:
    with server.client(key=None) as client:
        html = client.get(page)
        assert html.status_code == 200 and "text/html" in html.headers["content-type"]
        links = _links(html.text)
        assert any(link.endswith(script) for link in links), links
        assert "http://" not in html.text and "https://" not in html.text, html.text
        for link in links:
            assert link.startswith("/"), link
            asset = client.get(link)
            assert asset.status_code == 200, link
            assert len(asset.content) > 1000 or link.endswith(".png"), link
        unknown = client.get("/docs/assets/secrets.txt")
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"


def test_the_document_declares_the_api_key_so_the_docs_can_send_it(server: Server) -> None:
    with server.client(key=None) as client:
        document = client.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"http", "apiKey"}
    assert any(s.get("scheme") == "bearer" for s in schemes.values())
    assert any(s.get("name") == "X-API-Key" and s["in"] == "header" for s in schemes.values())
    for path, method in (("/v1/score", "post"), ("/v1/models", "get")):
        named = {name for option in document["paths"][path][method]["security"] for name in option}
        assert named == set(schemes), path


def test_swagger_ui_renders_offline_with_an_authorize_button(server: Server) -> None:
    dom = rendered(f"{server.url}/docs")
    assert 'class="swagger-ui' in dom
    assert re.search(r"<button[^>]*authorize[^>]*>.*?Authorize", dom, re.S | re.I), dom[-3000:]
    assert "/v1/score" in dom and "/v1/models" in dom
    redoc = rendered(f"{server.url}/redoc")
    assert "/v1/score" in redoc and "retention_priority" in redoc


def test_units_horizons_and_values_in_models_and_the_document(server: Server) -> None:
    labels = _settings(server.trained).labels
    with server.client() as client:
        models = client.get("/v1/models").json()["models"]
        document = client.get("/openapi.json").json()
    assert models["churn"]["horizon_days"] == labels.churn_horizon_days
    assert models["clv"]["horizon_days"] == labels.clv_horizon_days
    assert models["nbo"]["horizon_days"] == labels.offer_horizon_days
    assert models["clv"]["currency"] == "GBP" and models["clv"]["unit"] == "GBP"
    assert f"next {labels.churn_horizon_days} days" in models["churn"]["predicts"]
    assert list(models["churn"]["values"]["band"]) == ["low", "medium", "high"]
    assert set(models["clv"]["values"]["tier"]) == set(VALUE_TIERS)
    schemas = document["components"]["schemas"]
    assert schemas["ChurnAnswer"]["properties"]["band"]["enum"] == ["low", "medium", "high"]
    assert set(schemas["ClvAnswer"]["properties"]["tier"]["enum"]) == set(VALUE_TIERS)
    segment = schemas["Segment"]["properties"]
    assert segment["rfm_segment"]["description"].endswith(", ".join(RFM_SEGMENTS))
    assert segment["lifecycle_stage"]["description"].endswith(", ".join(LIFECYCLE_STAGES))
    clv_value = schemas["ClvAnswer"]["properties"]["value"]["description"]
    assert "GBP" in clv_value and f"next {labels.clv_horizon_days} days" in clv_value
    churn = schemas["ChurnAnswer"]["properties"]["probability"]["description"]
    assert f"next {labels.churn_horizon_days} days" in churn


def test_old_features_carry_a_warning_naming_their_age(server: Server) -> None:
    ids = list(_scores(server.trained)["customer_id"].head(20))
    with server.client() as client:
        stored = client.post("/v1/score", json={"customer_ids": ids}).json()["scores"]
        computed = client.post("/v1/score", json={"customer_ids": ids, "top_k": 2}).json()
        what_if = client.post(
            "/v1/score/features", json={"customers": [{"features": {"recency_days": 3.0}}]}
        ).json()["scores"][0]
    for a in [*stored, *computed["scores"]]:
        # The synthetic history ended in 2024: far older than the 45-day default.
        days = a["feature_age_seconds"] // 86_400
        assert days > 45
        (stale,) = [w for w in a["warnings"] if w.startswith("stale features")]
        assert f"{days:,} days old" in stale and "serving.stale_feature_days (45)" in stale
    assert what_if["as_of"] is None and what_if["warnings"] == []


def test_reason_codes_are_words_with_whole_days_and_no_missing_markers(server: Server) -> None:
    ids = list(_scores(server.trained)["customer_id"])
    texts: list[str] = []
    with server.client() as client:
        for start in range(0, len(ids), 50):
            body = {"customer_ids": ids[start : start + 50], "explain": True}
            for a in client.post("/v1/score", json=body).json()["scores"]:
                texts += [t for r in a["reasons"].values() for t in (*r["up"], *r["down"])]
    assert texts
    assert not [t for t in texts if "<NA>" in t or "(nan)" in t or "(missing)" in t]
    assert not [t for t in texts if "top-" in t]  # categories are named
    for text in texts:
        value = re.search(r"\(([^()]*)\) (raises|lowers) ", text)
        assert value, text
        # A number has at most two decimals (a share is a percentage), or the value is text.
        assert re.fullmatch(r"-?[\d,]+(\.\d{1,2})?%?|unknown|\D.*", value.group(1)), text
        if text.startswith("days "):
            assert re.fullmatch(r"-?[\d,]+|unknown", value.group(1)), text


def test_ids_are_trimmed_numbers_accepted_and_bad_ones_refused(server: Server) -> None:
    known = str(_scores(server.trained)["customer_id"].iloc[5])
    assert known.isdigit()
    with server.client() as client:
        plain = client.post("/v1/score", json={"customer_id": known}).json()["scores"][0]
        for given in (f"  {known} ", int(known), float(known)):
            answer = client.post("/v1/score", json={"customer_ids": [given]})
            assert answer.status_code == 200, answer.text
            a = answer.json()["scores"][0]
            assert a["customer_id"] == known and not a["cold_start"]
            assert (a["churn"], a["clv"]) == (plain["churn"], plain["clv"])
        for bad in ("   ", "", 1.5, True, -3, "x" * 129):
            refused = client.post("/v1/score", json={"customer_ids": ["1", bad]})
            assert refused.status_code == 422, bad
            error = refused.json()["error"]
            assert error["code"] == "invalid_request"
            assert error["fields"][0]["field"] == "customer_ids.1", error
            assert "Traceback" not in refused.text


def test_cold_start_answers_have_no_priority_and_rank_below_known_customers(
    server: Server,
) -> None:
    known = list(_scores(server.trained)["customer_id"].head(30))
    asked = ["typo-1", *known, "typo-2"]
    with server.client() as client:
        answers = client.post("/v1/score", json={"customer_ids": asked}).json()["scores"]
    cold = [a for a in answers if a["cold_start"]]
    assert [a["customer_id"] for a in cold] == ["typo-1", "typo-2"]
    for a in cold:
        assert a["retention_priority"] is None
        assert any("no retention priority" in w for w in a["warnings"])
        assert a["churn"]["probability"] is not None and a["clv"]["value"] >= 0
    warm = [a for a in answers if not a["cold_start"]]
    assert all(a["retention_priority"] is not None for a in warm)
    # What a CRM does: sort by priority, highest first, nulls last.
    ranked = sorted(
        answers, key=lambda a: (a["retention_priority"] is None, -(a["retention_priority"] or 0))
    )
    assert [a["cold_start"] for a in ranked] == [False] * len(warm) + [True, True]


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text and "e" not in text.lower() else 0


def test_scores_files_round_each_kind_and_carry_their_data_dictionary(trained: Trained) -> None:
    paths = Workspace(trained.workspace)
    csv = pd.read_csv(paths.scores_file(trained.latest, ".csv"), dtype=str)
    for name in csv.columns:
        kind = column_kind(name)
        if kind is not None:
            assert csv[name].dropna().map(_decimals).max() <= DECIMALS[kind], name
    probabilities = csv["churn_probability"].map(_decimals)
    assert probabilities.max() == DECIMALS["probability"]  # not cut short either
    dictionary = json.loads(paths.dictionary_file(paths.scores_file(trained.latest)).read_text())
    assert [c["name"] for c in dictionary["columns"]] == list(csv.columns)
    assert all(c["meaning"] for c in dictionary["columns"])
    assert dictionary["currency"] == "GBP" and dictionary["as_of"] == trained.latest
    labels = _settings(trained).labels
    assert dictionary["horizons_days"] == {
        "churn": labels.churn_horizon_days,
        "clv": labels.clv_horizon_days,
        "nbo": labels.offer_horizon_days,
    }
    for kind, version in dictionary["model_versions"].items():
        assert set(csv[f"{kind}_model_version"]) == {version}
    assert dictionary["rows"] == len(csv)


def test_target_lists_are_never_overwritten_and_say_when_the_budget_exceeds_the_base(
    trained: Trained,
) -> None:
    settings = _settings(trained)
    base = len(_scores(trained))
    first = steps.target(settings, "value", base + 7, 0.2, 11)
    listed = Path(first["csv"])
    assert f"budget{base + 7}" in listed.name and "seed11" in listed.name
    assert first["customers"] == base and len(first["warnings"]) == 1
    assert f"{base} customers" in first["warnings"][0]
    written = listed.read_bytes()
    dictionary = json.loads(Path(first["dictionary"]).read_text())
    assert dictionary["budget"] == base + 7 and dictionary["seed"] == 11
    assert dictionary["warnings"] == first["warnings"] and dictionary["currency"] == "GBP"
    header = pd.read_csv(listed, nrows=0).columns
    assert [c["name"] for c in dictionary["columns"]] == list(header)

    command = [
        "--workspace",
        str(trained.workspace),
        "--dataset",
        str(trained.dataset),
        "target",
        "--objective",
        "value",
        "--budget",
        str(base + 7),
        "--control",
        "0.2",
        "--seed",
        "11",
    ]
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 2 and "--force" in again.output and "Traceback" not in again.output
    assert listed.read_bytes() == written
    other = steps.target(settings, "value", 10, 0.2, 12)
    assert Path(other["csv"]) != listed and other["warnings"] == []
    assert listed.read_bytes() == written
    forced = CliRunner().invoke(app, [*command, "--force"])
    assert forced.exit_code == 0, forced.output
    assert "warning: --budget" in forced.stderr
    assert pd.read_csv(listed).equals(pd.read_csv(io.BytesIO(written)))
