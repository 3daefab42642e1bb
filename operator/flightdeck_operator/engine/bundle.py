"""The reference release-bundle checksum (flightdeck-behaviour 1.2), byte for byte.

``bundle_checksum(path)`` is SHA-256 over the bundle's files, as 64 lowercase hex characters with
no ``sha256:`` prefix:

1. walk ``path`` recursively, skipping symlinks and anything under ``.git`` or ``__pycache__``;
2. sort the files by their POSIX path relative to ``path``;
3. for each file feed ``relpath + NUL + content + NUL``, where text files (the suffixes in
   ``TEXT_SUFFIXES`` that decode as UTF-8) have CRLF and lone CR turned into LF first, so a
   checkout on Windows hashes the same as one on Linux.

A single file is hashed with its parent directory as the base (relpath ``release.yaml``), which
gives a different value than hashing the directory that holds it, exactly as the reference does.

Pure: reads files, no cluster, no store.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

__all__ = ["SKIPPED_DIRS", "TEXT_SUFFIXES", "bundle_checksum", "bundle_files"]

# Files whose line endings are normalised before hashing (when they decode as UTF-8).
TEXT_SUFFIXES: Final = frozenset({".md", ".yaml", ".yml", ".txt", ".json", ".csv", ".toml"})
# Directories that never belong to a bundle's content.
SKIPPED_DIRS: Final = frozenset({".git", "__pycache__"})
_SEPARATOR: Final = b"\0"


def bundle_files(path: Path) -> list[Path]:
    """The files that contribute to the checksum, in hashing order."""
    if path.is_file():
        return [path]
    files = [
        candidate
        for candidate in path.rglob("*")
        if candidate.is_file()
        and not candidate.is_symlink()
        and not SKIPPED_DIRS.intersection(candidate.relative_to(path).parts)
    ]
    return sorted(files, key=lambda file: file.relative_to(path).as_posix())


def _content(file: Path) -> bytes:
    raw = file.read_bytes()
    if file.suffix.lower() not in TEXT_SUFFIXES:
        return raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw  # binary content behind a text suffix is hashed as it is
    return text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")


def bundle_checksum(path: Path) -> str:
    """SHA-256 of a bundle directory or a single file (reference algorithm)."""
    digest = hashlib.sha256()
    base = path if path.is_dir() else path.parent
    for file in bundle_files(path):
        digest.update(file.relative_to(base).as_posix().encode("utf-8"))
        digest.update(_SEPARATOR)
        digest.update(_content(file))
        digest.update(_SEPARATOR)
    return digest.hexdigest()
