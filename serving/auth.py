"""API keys: callers send `Authorization: Bearer <key>` (or `X-API-Key: <key>`).

Keys come from the environment (`CRMSCORE_API_KEYS`, comma-separated) or from a file of
SHA-256 hashes, one per line (`CRMSCORE_API_KEYS_FILE`); admin keys, which may also reload
models, likewise from `CRMSCORE_ADMIN_KEYS` / `CRMSCORE_ADMIN_KEYS_FILE`. Only hashes are
kept in memory. With no key configured, `crmscore serve` creates a key pair in the workspace
(hashes on disk, the keys printed once)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path

from features.catalog import Workspace
from features.publish import write_private


def key_hash(key: str) -> str:
    """SHA-256 hex digest of an API key."""
    return hashlib.sha256(key.encode("utf8")).hexdigest()


def _read_hashes(path: Path) -> set[str]:
    hashes = set()
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if len(line) != 64 or any(ch not in "0123456789abcdef" for ch in line.lower()):
            raise ValueError(f"{path}, line {n}: expected a SHA-256 hex digest (64 characters)")
        hashes.add(line.lower())
    return hashes


@dataclass(frozen=True)
class ApiKeys:
    """Hashes of the accepted keys."""

    users: frozenset[str]
    admins: frozenset[str]

    @classmethod
    def from_env(cls, env: dict[str, str]) -> ApiKeys:
        """Keys from the environment variables above (empty when none is set)."""

        def collect(plain: str, file: str) -> set[str]:
            found = {key_hash(k.strip()) for k in env.get(plain, "").split(",") if k.strip()}
            if env.get(file):
                found |= _read_hashes(Path(env[file]))
            return found

        admins = collect("CRMSCORE_ADMIN_KEYS", "CRMSCORE_ADMIN_KEYS_FILE")
        users = collect("CRMSCORE_API_KEYS", "CRMSCORE_API_KEYS_FILE")
        return cls(frozenset(users | admins), frozenset(admins))

    @property
    def configured(self) -> bool:
        """True when at least one key is accepted."""
        return bool(self.users)

    def role(self, presented: str | None) -> str | None:
        """ "admin", "user" or None for a missing or unknown key."""
        if not presented:
            return None
        digest = key_hash(presented)
        if digest in self.admins:
            return "admin"
        return "user" if digest in self.users else None


def create_key_files(paths: Workspace) -> tuple[str, str]:
    """A new user key and admin key; their hashes are written to the workspace's key files
    (`Workspace.key_files`), readable by the owner only. Returns the keys."""
    files = paths.key_files()
    keys = f"crm_{secrets.token_urlsafe(24)}", f"crmadmin_{secrets.token_urlsafe(24)}"
    for key, var in zip(keys, ("CRMSCORE_API_KEYS_FILE", "CRMSCORE_ADMIN_KEYS_FILE"), strict=True):
        # A new file created owner-only (never a wider one chmod-ed later) replaces the old:
        # the hash is never readable by others, even briefly, even over a file that was.
        write_private(files[var], key_hash(key) + "\n")
    return keys
