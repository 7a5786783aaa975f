"""How a query prints its events: NDJSON, CSV or a table for a terminal.

Every writer takes events one at a time (``write``) and ``finish`` ends the
output, so events are printed as soon as their segment is verified.

- ``json``: one object per line, ``{"stream":...,"object_key":...,"event":<line>}``,
  where ``<line>`` is the event line exactly as sealed (its bytes, which the
  Merkle root covers). The event is nested rather than merged because only
  ``seq`` and ``received_at`` are reserved names: a producer's event may hold
  its own ``stream`` or ``object_key`` field. JSON output is data for
  programs: the sealed bytes are not changed, so C1 controls and bidi
  characters a producer put in a string stay raw UTF-8 (JSON escapes only
  C0 controls); a terminal should be given ``table``.
- ``csv``: a header row, then :data:`~audit_archiver.query.filters.COLUMNS`
  (``actor``/``resource`` as the string or the object's ``id``; other values
  as compact JSON). Every cell is escaped with
  :func:`~audit_archiver.verify.report.safe_text` (controls, including tab,
  newline and carriage return, bidi and other format characters become
  ``\\xNN``/``\\uNNNN``; a backslash is doubled), so a cell is one line of
  visible text. A cell whose first non-blank character is ``=``, ``+``,
  ``-`` or ``@`` gets a leading ``'``, so a spreadsheet does not run an
  attacker's formula (OWASP "CSV injection").
- ``table``: fixed columns sized to the terminal width
  (:func:`shutil.get_terminal_size`), every cell escaped with
  :func:`~audit_archiver.verify.report.safe_text` (no control or bidi
  character reaches the terminal) and cut with ``…`` when too long.
"""

from __future__ import annotations

import csv
import io
import shutil
from typing import BinaryIO, Protocol

import orjson

from audit_archiver.query.filters import COLUMNS, Row
from audit_archiver.verify.report import safe_text

__all__ = ["FORMATS", "CsvWriter", "EventWriter", "JsonWriter", "TableWriter", "make_writer"]

FORMATS = ("table", "json", "csv")


class EventWriter(Protocol):
    """Prints events as they come."""

    def write(self, line: bytes, row: Row) -> None:
        """Print one event (its stored line and its columns)."""
        ...

    def finish(self) -> None:
        """End the output (flush; a table prints its count)."""
        ...


class JsonWriter:
    """NDJSON: the stored line nested under ``event``, with ``stream`` and ``object_key``."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def write(self, line: bytes, row: Row) -> None:
        self._out.write(
            b'{"stream":%s,"object_key":%s,"event":%s}\n'
            % (orjson.dumps(row.stream), orjson.dumps(row.object_key), line)
        )
        self._out.flush()

    def finish(self) -> None:
        self._out.flush()


_FORMULA_STARTS = ("=", "+", "-", "@")


def neutralise(cell: str) -> str:
    """A cell a spreadsheet shows as visible text on one line: escaped with
    :func:`safe_text`, and a leading ``'`` when its first non-blank character
    starts a formula (spreadsheets skip leading spaces)."""
    cell = safe_text(cell)
    return "'" + cell if cell.lstrip().startswith(_FORMULA_STARTS) else cell


class CsvWriter:
    """CSV (RFC 4180 quoting by the :mod:`csv` module), header row first."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\r\n")
        self._emit(list(COLUMNS))

    def _emit(self, cells: list[str]) -> None:
        self._csv.writerow(cells)
        self._out.write(self._buffer.getvalue().encode("utf-8", "backslashreplace"))
        self._out.flush()
        self._buffer.seek(0)
        self._buffer.truncate()

    def write(self, line: bytes, row: Row) -> None:
        self._emit([neutralise(cell) for cell in row.cells()])

    def finish(self) -> None:
        self._out.flush()


_TABLE = ("received_at", "stream", "seq", "actor", "action", "resource", "outcome")
_FIXED = {"received_at": 27, "seq": 10}
_WEIGHTS = {"stream": 2, "actor": 3, "action": 2, "resource": 4, "outcome": 2}
_MIN = 4
_GAP = "  "


def _fit(text: str, width: int) -> str:
    """``text`` escaped, cut to ``width`` characters (``…`` marks a cut), padded."""
    text = safe_text(text)
    if len(text) > width:
        text = text[: max(0, width - 1)] + "…"
    return text.ljust(width)


def column_widths(total: int) -> dict[str, int]:
    """Widths of the table's columns for a terminal ``total`` characters wide."""
    free = total - len(_GAP) * (len(_TABLE) - 1) - sum(_FIXED.values())
    weight = sum(_WEIGHTS.values())
    widths = dict(_FIXED)
    for name, share in _WEIGHTS.items():
        widths[name] = max(_MIN, free * share // weight)
    return widths


class TableWriter:
    """Aligned columns that fit the terminal; the count of events at the end."""

    def __init__(self, out: BinaryIO, width: int | None = None) -> None:
        self._out = out
        total = width if width is not None else shutil.get_terminal_size((120, 24)).columns
        self._widths = column_widths(total)
        self._count = 0
        self._emit({name: name for name in _TABLE})

    def _emit(self, cells: dict[str, str]) -> None:
        text = _GAP.join(_fit(cells[name], self._widths[name]) for name in _TABLE).rstrip()
        self._out.write(text.encode("utf-8", "backslashreplace") + b"\n")
        self._out.flush()

    def write(self, line: bytes, row: Row) -> None:
        self._count += 1
        self._emit({name: str(getattr(row, name)) for name in _TABLE})

    def finish(self) -> None:
        self._out.write(f"({self._count} event(s))\n".encode())
        self._out.flush()


def make_writer(name: str, out: BinaryIO) -> EventWriter:
    """The writer of format ``name`` (one of :data:`FORMATS`).

    Raises:
        ValueError: an unknown format.
    """
    if name == "json":
        return JsonWriter(out)
    if name == "csv":
        return CsvWriter(out)
    if name == "table":
        return TableWriter(out)
    raise ValueError(f"unknown format {name!r}")
