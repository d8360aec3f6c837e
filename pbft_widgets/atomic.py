"""Directory writes that a killed process (Ctrl-C, SIGKILL, a Colab disconnect) cannot leave half done.

A directory artefact (adapter, exported recipe, converted model) is built in a hidden staging
sibling and renamed into place. Replacing an existing one takes two renames (old -> backup,
staging -> target); a process killed between them leaves the complete old artefact as a backup,
which :func:`recover_dir` puts back the next time anything reads or writes that path. Deletion
renames first, so a half-deleted tree never sits under the real name.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_STAGING = ".tmp-"
_BACKUP = ".old-"
_TRASH = ".trash-"


def staging_dir(target: Path) -> Path:
    """A new hidden directory next to ``target`` (same file system, so the final rename is atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}{_STAGING}{os.getpid()}-", dir=target.parent))


def replace_dir(staging: Path, target: Path) -> None:
    """Move the complete ``staging`` directory to ``target``, replacing what is there only at the end."""
    if not target.exists():
        os.replace(staging, target)
        return
    backup = target.with_name(f".{target.name}{_BACKUP}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.replace(target, backup)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(backup, target)
        raise
    remove_tree(backup)


def recover_dir(target: Path) -> None:
    """Put back the previous artefact when a replacement was killed between its two renames."""
    if target.exists() or not target.parent.is_dir():
        return
    backups = sorted(target.parent.glob(f".{target.name}{_BACKUP}*"), key=lambda p: p.stat().st_mtime)
    if backups:
        os.replace(backups[-1], target)


def remove_tree(path: Path) -> None:
    """Delete a directory so that no half-deleted copy is ever left under its own name."""
    if not path.exists():
        return
    trash = path.with_name(f".{path.name.lstrip('.')}{_TRASH}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def remove_stale(target: Path) -> None:
    """Delete staging, trash and spent backup directories of ``target`` left by processes that died.

    A backup is spent once ``target`` exists again (the kill came after the second rename); while
    ``target`` is missing the backup is kept for ``recover_dir``.
    """
    if not target.parent.is_dir():
        return
    for kind in (_STAGING, _TRASH, _BACKUP) if target.exists() else (_STAGING, _TRASH):
        for leftover in target.parent.glob(f".{target.name}{kind}*"):
            _remove_if_owner_died(leftover, kind)


def remove_dead_trash(directory: Path) -> None:
    """Delete every tree in ``directory`` that a process renamed away for deletion and died before removing."""
    for leftover in directory.glob(f".*{_TRASH}*"):
        _remove_if_owner_died(leftover, _TRASH)


def _remove_if_owner_died(leftover: Path, kind: str) -> None:
    pid = leftover.name.split(kind, 1)[1].split("-", 1)[0]
    if pid.isdigit() and not process_alive(int(pid)):
        shutil.rmtree(leftover, ignore_errors=True)


def process_alive(pid: int) -> bool:
    """Whether a process with this id still runs (a leftover of a dead one may be cleared)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sha256_of(file: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (adapters and checkpoints can be large)."""
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_table(directory: Path, files: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """Size and SHA-256 of each file, keyed by its path relative to ``directory``.

    What a manifest records so that a truncated or corrupted file is caught before it is loaded.
    """
    return {file.relative_to(directory).as_posix(): {"bytes": file.stat().st_size, "sha256": sha256_of(file)}
            for file in files}
