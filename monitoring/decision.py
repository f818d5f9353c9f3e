"""The retrain decision: `ok` or `retrain recommended`, with the reasons.

Each monitoring check (drift of a model, backtest of a model) writes its own entry into one
JSON file; a new run of a check replaces its entry. The decision is `retrain recommended`
when any entry has reasons. `crmscore retrain --if-recommended` reads it. The file is the
workspace's `decision_file` (features/catalog.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

OK = "ok"
RETRAIN = "retrain recommended"


@dataclass(frozen=True)
class Decision:
    """The overall verdict and the checks behind it."""

    status: str
    reasons: list[str]
    models: list[str]
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def recommended(self) -> bool:
        """True when monitoring recommends retraining."""
        return self.status == RETRAIN

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "status": self.status,
            "reasons": self.reasons,
            "models": self.models,
            "checks": self.checks,
        }


def decide(checks: dict[str, dict[str, Any]]) -> Decision:
    """Combine check entries ({"check": "drift", "model": .., "reasons": [..]}) into a
    decision."""
    reasons = [r for name in sorted(checks) for r in checks[name].get("reasons", [])]
    models = sorted({c["model"] for c in checks.values() if c.get("reasons")})
    return Decision(RETRAIN if reasons else OK, reasons, models, checks)


def read_decision(path: Path) -> Decision | None:
    """The decision in `path`, or None when monitoring has not written one."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return decide(dict(data["checks"]))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a monitoring decision file ({exc})") from exc


def record_check(
    path: Path, check: str, model: str, reasons: list[str], details: dict[str, Any]
) -> Decision:
    """Replace the entry of (check, model) and rewrite the decision file atomically."""
    previous = read_decision(path)
    checks = dict(previous.checks) if previous else {}
    checks[f"{check}:{model}"] = {
        "check": check,
        "model": model,
        "status": RETRAIN if reasons else OK,
        "reasons": reasons,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        **details,
    }
    decision = decide(checks)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(decision.as_dict(), indent=2, default=str))
    tmp.replace(path)
    return decision
