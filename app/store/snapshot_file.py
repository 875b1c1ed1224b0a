"""The last config snapshot on local disk, for starting while the database is unavailable.

As Kong's data planes keep `config.json.gz`: after each load from the database the snapshot
is written here, and a process that cannot reach the database at start-up serves from it
until the database answers. The file is JSON, never pickle: reading it runs no code. It is
replaced atomically (a temporary file in the same directory, then a rename), so a reader
sees the old file or the new one, never half of one. It holds API key hashes, never keys;
only its owner may read it.
"""

import contextlib
import os
import tempfile
from pathlib import Path


class SnapshotFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def write(self, data: bytes) -> None:
        """Replace the file with `data`; OSError when the directory is not writable."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(
            dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(descriptor, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def read(self) -> bytes | None:
        """The file's bytes; None when there is no file."""
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None
