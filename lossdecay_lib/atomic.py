"""Files that are either whole or absent: write to a temporary file beside the target, then rename.

Used for every file the library writes (run records, checkpoints, decoded-data caches), so a kill at
any moment leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Union

__all__ = ["write_atomically"]


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
