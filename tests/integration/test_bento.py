"""`bentoml build` from the repository gives a Bento with the code and default configs, and
`bentoml serve` of the built Bento (outside the checkout) serves the API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

from crmscore import steps
from crmscore.settings import load_settings
from tests.integration.conftest import PROJECT_ROOT, USER_KEY, Trained
from tests.servers import answers, free_port, stop, wait_until

pytestmark = pytest.mark.slow

BENTOML = str(Path(sys.executable).parent / "bentoml")


def test_the_built_bento_serves_the_api(trained: Trained, tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    subprocess.run([BENTOML, "build", "."], cwd=PROJECT_ROOT, env=env, check=True)
    bento = next((tmp_path / "bentoml" / "bentos" / "crmscore").glob("*/bento.yaml")).parent
    for part in ("serving/service.py", "features/online.py", "configs/settings.yaml"):
        assert (bento / "src" / part).is_file(), part

    settings = load_settings(trained.workspace, dataset=str(trained.dataset))
    launch = steps.serve(settings, {**env, "CRMSCORE_API_KEYS": USER_KEY})
    port = free_port()
    log = tmp_path / "bento.log"
    command = [BENTOML, "serve", "crmscore:latest", "--port", str(port), "--host", "127.0.0.1"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=launch.env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(answers(f"{url}/readyz"), process, log)
        known = str(pd.read_parquet(settings.paths.scores_file(trained.latest))["customer_id"][0])
        response = httpx.post(
            f"{url}/v1/score",
            json={"customer_id": known},
            headers={"Authorization": f"Bearer {USER_KEY}"},
            timeout=60,
        )
    finally:
        stop(process)
    assert response.status_code == 200, response.text
    answer = response.json()["scores"][0]
    assert answer["customer_id"] == known and not answer["cold_start"]
    assert 0 <= answer["churn"]["probability"] <= 1
