"""Writing a report file: whole or not at all.

Every report (JSON, Markdown, HTML, snapshots) is written to a dot-named temporary file beside
its target, then renamed over it: a reader sees the old file or the whole new one, never half,
and a failure (disk full, a folder that vanished) leaves no temporary file behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: str | Path, text: str, *, encoding: str | None = "utf-8") -> Path:
    """Write `text` to `path` atomically, creating parent folders; returns the path. The file
    gets the usual permissions (umask), not the owner-only ones of a temporary file."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A dot-name temp file: syrupy's snapshot discovery and most globs skip it.
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding=encoding) as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
