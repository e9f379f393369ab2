"""Text that comes from inputs (file names, transcripts, captions, error messages that quote
them) made safe to show on a terminal.

The rule, applied where the CLI prints such text:

- on a terminal, and always on stderr (messages are for people), C0 and C1 control characters
  and DEL are shown as visible escapes (ESC -> ``\\x1b``, BEL -> ``\\x07``, CSI -> ``\\x9b``), so
  that an ANSI escape sequence in a file name or a transcript never reaches the terminal raw;
  tab and newline are kept;
- stdout that is a file or a pipe gets the text as is (`mmseq transcribe a.wav > a.txt` is the
  transcript, byte for byte), as do the transcript files the writers save;
- JSON lines always have C1 controls and DEL written as ``\\u00XX`` escapes (`json.dumps`
  already escapes C0): the same JSON value, safe to show.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import TextIO

_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but tab (\x09) and newline
_C1 = re.compile(r"[\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """`text` with its control characters but tab and newline as ``\\xNN``."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def for_stream(text: str, stream: TextIO | None = None) -> str:
    """`text` escaped (`escape_controls`) for stderr or a terminal, as is for a file or pipe.
    `stream`: where it is printed (default: sys.stdout)."""
    stream = sys.stdout if stream is None else stream
    if stream is sys.stderr or stream is sys.__stderr__ or _isatty(stream):
        return escape_controls(text)
    return text


def json_line(text: str) -> str:
    """A `json.dumps(..., ensure_ascii=False)` line with C1 controls and DEL as ``\\u00XX``."""
    return _C1.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class EscapingFormatter(logging.Formatter):
    """A log formatter whose records are escaped (`escape_controls`): log lines go to stderr."""

    def format(self, record: logging.LogRecord) -> str:
        return escape_controls(super().format(record))


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
