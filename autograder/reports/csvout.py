"""Every CSV the project writes, one way: LF line ends (``lineterminator="\\n"``; none of them is CRLF), and no cell
that a spreadsheet would run as a formula.

A student id or name comes from an LMS manifest or a roster, so a cell may begin with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return; Excel, LibreOffice and Google Sheets run such a cell (``=HYPERLINK(…)``, ``-2+3``).
Such a text gets a leading ``'`` (OWASP's advice): it stays readable, and is text. A plain number (``-1.5``) stays
a number.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Iterable

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value):
    """``value`` as a spreadsheet shows it and never runs it. A carriage return inside becomes a line feed: the
    writer quotes a cell holding its line end (LF), not one holding a lone CR, which a reader takes for a row's end."""
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(value):
        value = "'" + value
    return value.replace("\r\n", "\n").replace("\r", "\n")


def csv_text(header: Iterable, rows: Iterable[Iterable]) -> str:
    """The CSV of ``header`` and ``rows``, every cell through ``safe_cell``, LF line ends."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([safe_cell(v) for v in header])
    writer.writerows([safe_cell(v) for v in row] for row in rows)
    return buffer.getvalue()
