"""All-or-nothing output sets: several files that readers must see from one run only.

A set lives in a folder of versions. A run writes a new version folder (named
`.staging-<pid>-<random>` while it is written), renames it to `v-<time>-<random>` and then
switches the `current` pointer (a symbolic link) to it with one atomic rename. Readers open
files through `<folder>/current/`, so they see the previous complete set or the new one, never
a mix; a run that fails or is killed before the switch changes nothing readers see. A failed
run removes its version folder; one killed outright leaves a staging folder that the next run
removes (its process is gone). The previous version is kept for readers still in it; older
ones are removed.

Small single files (a key file, a settings file) are written with `write_private`: created
with owner-only permissions from the start, then renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

CURRENT = "current"
STAGING_PREFIX = ".staging-"
VERSION_PREFIX = "v-"


def current_version(folder: Path) -> Path | None:
    """The version folder `folder`'s pointer names (None before the first publish)."""
    pointer = folder / CURRENT
    if not pointer.is_symlink():
        return None
    return folder / os.readlink(pointer)


@contextlib.contextmanager
def publishing(folder: Path, keep: int = 2) -> Iterator[Path]:
    """A new, empty version folder of the set in `folder` to write the set into; published
    (the pointer switched to it) when the block ends without an error, removed otherwise.
    `keep` versions (the new one and the previous ones) stay on disk."""
    folder.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(folder)
    token = secrets.token_hex(4)
    staging = folder / f"{STAGING_PREFIX}{os.getpid()}-{token}"
    staging.mkdir()
    try:
        yield staging
        _sync_folder(staging)
        version = folder / f"{VERSION_PREFIX}{time.time_ns():020d}-{token}"
        staging.rename(version)
        switch_current(folder, version.name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _remove_old(folder, keep)


def switch_current(folder: Path, version_name: str) -> None:
    """Point `folder/current` at `version_name` with one atomic rename of a new link."""
    link = folder / f".{CURRENT}-{os.getpid()}-{secrets.token_hex(4)}"
    os.symlink(version_name, link)
    try:
        os.replace(link, folder / CURRENT)
    except BaseException:
        link.unlink(missing_ok=True)
        raise
    _sync_folder(folder)


def _sync_folder(folder: Path) -> None:
    """Flush the files of `folder` and the folder itself to disk (best effort)."""
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            if path.is_file() and not path.is_symlink():
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def alive(pid: int) -> bool:
    """True while process `pid` exists (on this host)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_abandoned(folder: Path) -> None:
    """Remove staging folders of processes that are gone and dangling pointer links."""
    for path in folder.iterdir():
        if path.name.startswith(STAGING_PREFIX):
            pid = path.name[len(STAGING_PREFIX) :].split("-", 1)[0]
            if pid.isdigit() and not alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)
        elif path.name.startswith(f".{CURRENT}-") and path.is_symlink():
            pid = path.name[len(CURRENT) + 2 :].split("-", 1)[0]
            if pid.isdigit() and not alive(int(pid)):
                path.unlink(missing_ok=True)


def _remove_old(folder: Path, keep: int) -> None:
    """Remove published versions but the newest `keep` (the current one always stays)."""
    current = current_version(folder)
    versions = sorted(p for p in folder.iterdir() if p.name.startswith(VERSION_PREFIX))
    for path in versions[: max(0, len(versions) - keep)]:
        if current is None or path.name != current.name:
            shutil.rmtree(path, ignore_errors=True)


def write_private(path: Path, text: str, replace: bool = True) -> bool:
    """Write `text` to `path`, readable and writable by the owner only from the moment the
    file exists: a new file is created with mode 0600 (never a wider one chmod-ed later) and
    renamed into place. With `replace` False an existing file is kept (the first writer wins
    when several race). Returns True when `path` now holds `text`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # fails when the file exists: never overwrites
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(frame: pd.DataFrame, path: Path, replace: bool = True) -> None:
    """Write parquet or CSV (by the suffix) to a temporary file and rename it into place:
    readers see the old file or the new one, never half of one; a failed write leaves no
    temporary file. With `replace` False an existing file is kept: FileExistsError."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        if path.suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails when the file exists: never overwrites
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(data: Any, path: Path) -> None:
    """Write `data` as indented JSON the way `write_atomic` writes a table."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, default=str))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
