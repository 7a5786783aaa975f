"""Output formats: NDJSON keeps the sealed bytes, CSV is neutralised, the table fits."""

from __future__ import annotations

import csv
import io
import json

from audit_archiver.query.filters import COLUMNS, Row
from audit_archiver.query.output import CsvWriter, JsonWriter, TableWriter, make_writer

LINE = b'{"seq":7,"received_at":"2026-01-02T03:04:05.678901Z","action":"read","actor":"a","stream":"x"}'


def row(**changes: object) -> Row:
    values: dict[str, object] = {
        "stream": "app-1",
        "seq": 7,
        "received_at": "2026-01-02T03:04:05.678901Z",
        "time": "",
        "actor": "a",
        "action": "read",
        "resource": "doc/1",
        "outcome": "",
        "source_ip": "",
        "object_key": "audit/app-1/000000000000.ndjson.zst",
    }
    values.update(changes)
    return Row(**values)  # type: ignore[arg-type]


def test_json_nests_the_stored_line_verbatim() -> None:
    out = io.BytesIO()
    writer = JsonWriter(out)
    writer.write(LINE, row())
    writer.finish()
    text = out.getvalue()
    assert text.endswith(b"}\n") and text.count(b"\n") == 1
    assert LINE in text  # the sealed bytes, as they are hashed
    parsed = json.loads(text)
    assert parsed["stream"] == "app-1"
    assert parsed["object_key"] == "audit/app-1/000000000000.ndjson.zst"
    assert parsed["event"]["stream"] == "x"  # the producer's own field does not collide


def test_csv_header_quoting_and_formula_neutralising() -> None:
    out = io.BytesIO()
    writer = CsvWriter(out)
    writer.write(LINE, row(actor='=HYPERLINK("http://evil")', resource="a,b\nc", outcome="-1"))
    writer.write(LINE, row(action="+x", time="@SUM(A1)", source_ip="\tq"))
    writer.finish()
    rows = list(csv.reader(io.StringIO(out.getvalue().decode())))
    assert rows[0] == list(COLUMNS)
    assert rows[1][4] == '\'=HYPERLINK("http://evil")'
    assert rows[1][6] == "a,b\\x0ac"  # one visible line: the newline is escaped
    assert rows[1][7] == "'-1"
    assert (rows[2][5], rows[2][3], rows[2][8]) == ("'+x", "'@SUM(A1)", "\\x09q")


def test_csv_cells_are_escaped_and_blank_led_formulas_neutralised() -> None:
    """Review finding M2: raw controls and bidi characters reached CSV cells, and a
    formula after leading blanks (which spreadsheets skip) was not neutralised."""
    out = io.BytesIO()
    writer = CsvWriter(out)
    writer.write(
        LINE,
        row(
            actor="  =cmd|' /C calc'!A0",
            action="\u00a0+1",
            resource="ok\u202eexe.txt",
            outcome="x\x85y\rz",
            source_ip="C:\\dir",
        ),
    )
    rows = list(csv.reader(io.StringIO(out.getvalue().decode())))
    assert rows[1][4] == "'  =cmd|' /C calc'!A0"
    assert rows[1][5] == "'\u00a0+1"
    assert rows[1][6] == "ok\\u202eexe.txt"
    assert rows[1][7] == "x\\x85y\\x0dz"
    assert rows[1][8] == "C:\\\\dir"  # a backslash is doubled: escapes cannot be forged
    assert out.getvalue().count(b"\r\n") == 2  # header and one row: no raw line break


def test_json_keeps_the_sealed_bytes_even_with_c1_and_bidi() -> None:
    """Decision (M2): json is data for programs; the sealed bytes are not rewritten."""
    line = '{"seq":1,"received_at":"2026-01-02T03:04:05.678901Z","actor":"a\u0085\u202e"}'
    out = io.BytesIO()
    JsonWriter(out).write(line.encode(), row())
    assert line.encode() in out.getvalue()


def test_table_fits_its_width_escapes_and_marks_cuts() -> None:
    out = io.BytesIO()
    writer = TableWriter(out, width=100)
    writer.write(LINE, row(actor="evil\x1b[2J\u202euser", resource="r" * 300))
    writer.finish()
    lines = out.getvalue().decode().splitlines()
    assert len(lines) == 3 and lines[-1] == "(1 event(s))"
    assert all(len(line) <= 100 for line in lines)
    assert "\x1b" not in lines[1] and "\u202e" not in lines[1]
    assert "\\x1b" in lines[1]
    assert "…" in lines[1]
    assert lines[0].startswith("received_at")


def test_make_writer_knows_each_format() -> None:
    out = io.BytesIO()
    assert isinstance(make_writer("json", out), JsonWriter)
    assert isinstance(make_writer("csv", out), CsvWriter)
    assert isinstance(make_writer("table", out), TableWriter)
