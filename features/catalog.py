"""The workspace catalog: every folder and file crmscore keeps in a workspace, named once.

Nothing else builds workspace paths: commands, pipelines, the service and monitoring ask a
`Workspace` for them. Layout:

    data/          canonical tables (<table>.parquet), rejects.csv, ingest_report.json
    features/      feature and label snapshots (<output>.parquet), snapshots.json
    feast/         Feast registry, SQLite online store, what materialize loaded
    mlflow/        embedded MLflow store (mlflow.db) and its artifacts
    reports/       evaluation reports and plots, per model; readiness.json (what can train)
    logs/          crmscore.log: every command's log at debug level; server.log
    scores/        batch scores (date=<date>/: scores_<date>.parquet/.csv) and target lists
    predictions/   the API's prediction log (date=YYYY-MM-DD/*.parquet)
    serving/       API key hashes, the service's settings and the reload stamp
    secrets/       the key of the customer-id hashes, when none is configured (mode 0600)
    monitoring/    drift reports, backtests, uplift, the retrain decision, Evidently workspace

The files of data/, features/ and each day of scores/ are output sets, written all or nothing
(features/publish.py): they live in `<set>/current/`, a pointer to the last complete version.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

from features.publish import CURRENT

# The workspace when neither --workspace nor CRMSCORE_HOME names one (relative to the cwd).
DEFAULT_ROOT = Path("workspace")
# File names of the API key hashes `crmscore serve` creates, by the variable that points to them.
KEY_FILE_NAMES = {
    "CRMSCORE_API_KEYS_FILE": "api_keys.sha256",
    "CRMSCORE_ADMIN_KEYS_FILE": "admin_keys.sha256",
}


def log_partition(folder: Path, day: date) -> Path:
    """One day's folder of a prediction log (Hive style: `<folder>/date=YYYY-MM-DD`)."""
    return folder / f"date={day.isoformat()}"


@dataclass(frozen=True)
class Workspace:
    """Paths inside one workspace folder (`root`)."""

    root: Path
    # Output sets being written: (set folder, the new version folder written into) pairs.
    staged_sets: tuple[tuple[Path, Path], ...] = ()

    def staged(self, set_folder: Path, version: Path) -> Workspace:
        """This workspace with the files of the output set in `set_folder` (e.g.
        `data_versions`) in `version`, the new version being written (features.publish)."""
        return replace(self, staged_sets=(*self.staged_sets, (set_folder, version)))

    def pinned(self, set_folder: Path) -> Workspace:
        """This workspace with the output set in `set_folder` fixed at the version published
        now: files read through it come from one version even if another is published
        meanwhile (the previous version is kept on disk)."""
        return self.staged(set_folder, self.output_set(set_folder).resolve())

    def output_set(self, set_folder: Path) -> Path:
        """Where the files of an output set are: the version being written when staged,
        else the published one (`<set_folder>/current`)."""
        for folder, version in self.staged_sets:
            if folder == set_folder:
                return version
        return set_folder / CURRENT

    # data/: what ingest writes
    @property
    def data_versions(self) -> Path:
        """The versions of the ingested tables (an output set)."""
        return self.root / "data"

    @property
    def data_dir(self) -> Path:
        """Canonical tables of the ingested dataset (the published version)."""
        return self.output_set(self.data_versions)

    def table(self, name: str) -> Path:
        """A canonical table ("transactions", "customers", ...)."""
        return self.data_dir / f"{name}.parquet"

    def tables(self) -> list[Path]:
        """Every canonical table present, sorted by name."""
        return sorted(self.data_dir.glob("*.parquet"))

    @property
    def rejects(self) -> Path:
        """Rejected input rows with their reasons."""
        return self.data_dir / "rejects.csv"

    @property
    def ingest_report(self) -> Path:
        """Counts of the last ingest."""
        return self.data_dir / "ingest_report.json"

    @property
    def failed_rejects(self) -> Path:
        """Rejected rows of an ingest that accepted nothing (the tables are left as they were)."""
        return self.data_versions / "rejects_failed.csv"

    # features/: what the feature build writes
    @property
    def snapshot_versions(self) -> Path:
        """The versions of the feature snapshots (an output set)."""
        return self.root / "features"

    @property
    def snapshot_dir(self) -> Path:
        """Feature snapshots and labels (the published version)."""
        return self.output_set(self.snapshot_versions)

    def snapshot(self, output: str) -> Path:
        """One snapshot output ("customer_features", "labels_churn", ...)."""
        return self.snapshot_dir / f"{output}.parquet"

    @property
    def snapshots_meta(self) -> Path:
        """Cutoffs, category slots and row counts of the last feature build."""
        return self.snapshot_dir / "snapshots.json"

    # feast/
    @property
    def feast_dir(self) -> Path:
        """Feast registry and SQLite online store."""
        return self.root / "feast"

    @property
    def feast_registry(self) -> Path:
        """Feast's file registry."""
        return self.feast_dir / "registry.db"

    @property
    def online_store(self) -> Path:
        """Feast's SQLite online store."""
        return self.feast_dir / "online_store.db"

    @property
    def materialized(self) -> Path:
        """Fingerprints of the snapshot files each feature view was last materialized from."""
        return self.feast_dir / "materialized.json"

    # mlflow/
    @property
    def mlflow_dir(self) -> Path:
        """The embedded MLflow store."""
        return self.root / "mlflow"

    @property
    def mlflow_db(self) -> Path:
        """The embedded MLflow store's SQLite database."""
        return self.mlflow_dir / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        """Artifact root of the embedded MLflow store."""
        return self.mlflow_dir / "artifacts"

    # reports/
    @property
    def report_dir(self) -> Path:
        """Evaluation reports and plots."""
        return self.root / "reports"

    @property
    def readiness_report(self) -> Path:
        """What the data can train (training.readiness), written after each feature build."""
        return self.report_dir / "readiness.json"

    @property
    def log_file(self) -> Path:
        """Every command's log at debug level, third-party warnings included."""
        return self.root / "logs" / "crmscore.log"

    @property
    def server_log(self) -> Path:
        """What `crmscore serve`'s server process prints (BentoML, MLflow, Feast)."""
        return self.root / "logs" / "server.log"

    def model_reports(self, kind: str) -> Path:
        """One model's evaluation report and plots."""
        return self.report_dir / kind

    # scores/
    @property
    def scores_dir(self) -> Path:
        """Batch scores and target lists."""
        return self.root / "scores"

    def scores_versions(self, as_of: str) -> Path:
        """The versions of the batch scores of a date (an output set)."""
        return self.scores_dir / f"date={as_of}"

    def scores_file(self, as_of: str, suffix: str = ".parquet") -> Path:
        """Batch scores of a date (YYYY-MM-DD), as parquet or ".csv"."""
        return self.output_set(self.scores_versions(as_of)) / f"scores_{as_of}{suffix}"

    def scores_files(self, as_of: str | None = None) -> list[Path]:
        """Batch-scores parquet files, oldest first (only `as_of`'s when given)."""
        found = self.scores_dir.glob(f"date={as_of or '*'}/{CURRENT}/scores_*.parquet")
        return sorted(found, key=self.scores_date)

    @staticmethod
    def scores_date(path: Path) -> str:
        """The date (YYYY-MM-DD) of a batch-scores or target-list file."""
        return path.stem.rsplit("_", 1)[-1]

    def targets_file(
        self, objective: str, as_of: str, budget: int, control: float, seed: int
    ) -> Path:
        """The target list of an objective built from the scores of `as_of`: its name
        carries the budget, control share and seed, so another list never replaces it
        (the date stays last: `scores_date`)."""
        name = f"targets_{objective}_budget{budget}_control{control:g}_seed{seed}_{as_of}.csv"
        return self.scores_dir / name

    @staticmethod
    def dictionary_file(data_file: Path) -> Path:
        """The data dictionary beside a scores file or target list."""
        return data_file.with_suffix(".dictionary.json")

    # predictions/
    @property
    def predictions_dir(self) -> Path:
        """The API's prediction log."""
        return self.root / "predictions"

    def prediction_log_day(self, day: date) -> Path:
        """The prediction log's files of one day."""
        return log_partition(self.predictions_dir, day)

    # serving/
    @property
    def serving_dir(self) -> Path:
        """API key hashes and the reload stamp."""
        return self.root / "serving"

    def key_files(self) -> dict[str, Path]:
        """API key hash files, by the environment variable that names them."""
        return {var: self.serving_dir / name for var, name in KEY_FILE_NAMES.items()}

    @property
    def service_settings(self) -> Path:
        """The resolved settings `crmscore serve` hands to the service (no secrets)."""
        return self.serving_dir / "service.json"

    @property
    def reload_stamp(self) -> Path:
        """Touched by a reload; every worker watches it."""
        return self.serving_dir / "reload.stamp"

    # secrets/
    @property
    def id_key_file(self) -> Path:
        """The key of the customer-id hashes, generated when none is configured."""
        return self.root / "secrets" / "id_hash.key"

    # monitoring/
    @property
    def monitoring_dir(self) -> Path:
        """Monitoring reports and state."""
        return self.root / "monitoring"

    @property
    def drift_dir(self) -> Path:
        """Drift reports (HTML and JSON summaries)."""
        return self.monitoring_dir / "drift"

    def drift_report(self, kind: str, current: str) -> tuple[Path, Path]:
        """HTML report and JSON summary of a drift check of model `kind` on the current data
        named `current` ("scores_2024-01-01", "log_2024-01-01_2024-01-07")."""
        stem = f"{kind}_{current}"
        return self.drift_dir / f"{stem}.html", self.drift_dir / f"{stem}.json"

    def drift_evidently(self, kind: str, current: str) -> Path:
        """Evidently's full report beside the drift page of `drift_report`."""
        return self.drift_dir / f"{kind}_{current}.evidently.html"

    @property
    def decision_file(self) -> Path:
        """The retrain decision that `crmscore retrain --if-recommended` reads."""
        return self.monitoring_dir / "decision.json"

    @property
    def backtest_file(self) -> Path:
        """The latest backtests."""
        return self.monitoring_dir / "backtest.json"

    @property
    def backtest_page(self) -> Path:
        """The latest backtests as a page."""
        return self.monitoring_dir / "backtest.html"

    def uplift_file(self, targets: Path) -> Path:
        """Uplift of the campaign behind a target list."""
        return self.monitoring_dir / f"uplift_{targets.stem}.json"

    @property
    def evidently_dir(self) -> Path:
        """The Evidently workspace behind the monitoring dashboard."""
        return self.monitoring_dir / "evidently"
