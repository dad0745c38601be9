"""Stage 6: the ``lmzip`` command line (typer). Parse, call the API, print.

app.py holds the command and its options; coding.py the commands that code files, teaching.py
explain and generate; files.py what happens to inputs and outputs; running.py errors, signals,
parallel files and progress.

Habits of gzip/zstd: FILE -> FILE.lmz, ``-`` or no FILE is stdin, ``-c`` writes
to stdout, ``-o`` names the output, an existing output is kept unless ``-f``,
the input is removed only with ``--rm`` and only after the output is complete,
binary is never written to a terminal. Output goes to a temporary file that is
renamed into place, so a failure or an interrupt leaves no partial file.

Exit status: 0 ok; 1 input/output problem or bad usage; 2 not an .lmz file,
unsupported version, truncated or damaged data, checksum mismatch; 3 model not
available, or its weights/settings/library versions differ from the file's;
130 interrupted.
"""

from __future__ import annotations

import os
import re
import sys
from typing import List, Optional

import typer

from ..malloc import keep_freed_memory
from . import coding, teaching  # noqa: F401  (they add their commands to the app)
from .app import app

__all__ = ["app", "main"]

def _expand_levels(args: list[str]) -> list[str]:
    """gzip's -1 .. -9 as --level N (click has no options made of a digit)."""
    return [a for arg in args for a in (["--level", arg[1]] if re.fullmatch(r"-[1-9]", arg) else [arg])]


def main(argv: Optional[List[str]] = None) -> None:
    keep_freed_memory()  # the CLI owns its process; the library leaves malloc alone
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    args = _expand_levels(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=args, prog_name="lmzip", standalone_mode=False)
    except typer.Abort:
        code = 130
    except typer.TyperException as exc:  # usage errors: exit 1 as documented (2 means damaged data)
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare `lmzip`: its help
            print(exc.format_message())
        else:
            ctx = getattr(exc, "ctx", None)
            command = f" {ctx.info_name}" if ctx is not None and ctx.parent is not None else ""
            print(f"lmzip: {exc.format_message()} (see lmzip{command} --help)", file=sys.stderr)
        code = 1
    sys.exit(code or 0)
