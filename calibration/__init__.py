"""Joint and camera calibration for robots (reads and writes calibration files)."""

from __future__ import annotations

from pathlib import Path

PROG = "slac-calibrate"  # the command, as its messages name it


def check_file_to_write(path: Path | None, option: str) -> None:
    """Refuse (UsageError), before any work is done, a file ``option`` names that could not be
    written at the end: an existing directory, or one below a file. A missing folder is made."""
    from slac_runtime.options import UsageError

    if path is None:
        return
    if path.is_dir():
        raise UsageError(f"{option} {path} is a directory: give the name of a file to write")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UsageError(f"{option} {path} cannot be written: {folder} is not a directory")
