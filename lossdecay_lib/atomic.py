"""Files that are either whole or absent: write to a temporary file beside the target, then rename.

Used for every file the library writes (run records, claims, checkpoints, decoded-data caches), so a
kill at any moment leaves the old file or the new one, never half of one. JSON files (records, claims,
timings) are written with :func:`write_json_atomic` and read with :func:`read_json`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Union

__all__ = ["write_atomically", "write_json_atomic", "read_json"]


def write_atomically(path: Union[str, "os.PathLike[str]"], write: Callable[[Path], None]) -> Path:
    """Create ``path`` by calling ``write(temporary_path)``, syncing it, and renaming it into place.

    The rename (``os.replace``) is atomic on one filesystem; on any error the temporary file is removed
    and the old ``path``, if any, is untouched. The file gets ordinary permissions (``0666 & ~umask``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".partial-{path.name}-", dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        with open(temporary, "rb") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def write_json_atomic(path: Union[str, Path], obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path``, whole or not at all (:func:`write_atomically`)."""
    text = json.dumps(obj, indent=1, sort_keys=True)  # a bad object never touches the disk
    return write_atomically(path, lambda tmp: tmp.write_text(text))


def read_json(path: Union[str, Path]) -> Any:
    with open(path) as f:
        return json.load(f)
