"""Output paths of allocatorctl: checked before any work or call, and a failed write as a clear error.

A command that writes a file (``generate --out``, ``report --out``) checks the path first, so a typo is a
usage error (exit 2) before a solve report is fetched or a day generated, not a traceback after it. A
write that still fails (a full disk, a file replaced by a directory meanwhile) is an I/O failure: one
line on stderr and exit 1, like the CLI's other failures that are not the server's answer.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.markup import escape

from allocator_client.cli_common import EXIT_OTHER, err_console


def check_output_file(path: Path, option: str) -> None:
    """Refuse (exit 2) a file that cannot be created or replaced: a directory, or a missing or read-only
    parent directory (the parent is not created: a misspelt directory is more likely than a new one)."""
    if path.is_dir():
        raise typer.BadParameter(f"{path} is a directory; give a file name", param_hint=option)
    parent = path.parent
    if not parent.is_dir():
        blocked = not _nearest_existing(parent).is_dir()  # the parent, or an ancestor, is a file
        what = "is not a directory" if blocked else "does not exist"
        raise typer.BadParameter(f"cannot write {path}: {parent} {what}", param_hint=option)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"cannot write {path}: no write permission in {parent}", param_hint=option)


def check_output_dir(path: Path, option: str) -> None:
    """Refuse (exit 2) a directory that cannot be used or made (``mkdir -p``): an existing file, or a
    nearest existing ancestor that is a file or not writable."""
    if path.exists() and not path.is_dir():
        raise typer.BadParameter(f"{path} is a file, not a directory", param_hint=option)
    ancestor = _nearest_existing(path)
    if not ancestor.is_dir():
        raise typer.BadParameter(f"cannot make {path}: {ancestor} is not a directory", param_hint=option)
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"cannot write in {ancestor}: no write permission", param_hint=option)


def write_failed(path: Path, error: OSError) -> typer.Exit:
    """Print a write that failed after its checks; the exit (1) to raise."""
    reason = error.strerror or str(error)
    err_console.print(f"[bold red]error[/]: cannot write {escape(str(path))}: {escape(reason)}")
    return typer.Exit(EXIT_OTHER)


def _nearest_existing(path: Path) -> Path:
    """The path itself if it exists, else its nearest existing ancestor (the root at worst)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
