"""Small file helpers: atomic writes and hashing."""

from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "sha256_bytes", "sha256_file"]


def _new_sha256() -> Any:
    """A sha256 object from CPython's builtin implementation (``_sha2``, ``_sha256`` before 3.12).

    ``hashlib`` loads OpenSSL's libcrypto (+3.6 MB RSS on x86_64) only to check model files; the builtin
    module gives the same digests. Falls back to ``hashlib`` where the builtin module is missing.
    """
    for name in ("_sha2", "_sha256"):
        try:
            return importlib.import_module(name).sha256()
        except (ImportError, AttributeError):
            continue
    import hashlib  # pragma: no cover - CPython always has one of the above

    return hashlib.sha256()  # pragma: no cover


def sha256_bytes(data: bytes) -> str:
    """Return the hex sha256 of ``data`` (without importing OpenSSL; see :func:`sha256_file`)."""
    h = _new_sha256()
    h.update(data)
    return str(h.hexdigest())


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temp file in the same folder, fsync, then rename.

    A reader never sees a half-written file, and a crash leaves the old file (or none) in place.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        # mkstemp creates 0600; keep the mode of the file being replaced, else a normal 0644
        try:
            mode = target.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 text atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex sha256 of a file, read in 1 MiB chunks (CPython's builtin sha256, not OpenSSL's)."""
    h = _new_sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return str(h.hexdigest())
