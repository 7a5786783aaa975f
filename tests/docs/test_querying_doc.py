"""docs/QUERYING.md: the documented SQL runs, and answers what the sealed input implies.

A small archive is sealed with the real CLI (``keygen``, ``seal``, then ``verify``, as
the page tells), from events written here. Every ```sql block of the page carries a
first line ``-- duckdb: NAME`` or ``-- athena: NAME``:

- the DuckDB blocks run verbatim, in page order, in one connection (the ``s3`` ones,
  which need the network, are not run; their view is run on the local copy instead),
  and each query's rows are compared with rows stated from the input events below,
  never from the archiver's output;
- the Athena blocks are parsed with sqlglot's Athena dialect; the table's columns
  must be fields of the sealed lines, its location template must produce the keys of
  :func:`audit_archiver.core.layout.segment_key`, and every query must name its
  streams (the ``injected`` projection refuses a query that does not).

The page's claims about which readers skip the seal frame are checked on the same
archive (``zstd -dc``/``gunzip -c`` when installed, python-zstandard, gzip, DuckDB).
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot
import zstandard
from sqlglot import exp

from audit_archiver.core.layout import segment_key, validate_stream_id
from tests.integration.cli import run_cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "QUERYING.md"
COPY = "audit-copy"
"""The folder name the page syncs the prefix into (its SQL reads ``audit-copy/...``)."""
PREFIX = "audit"

_SQL_FENCE = re.compile(r"^```sql\s*$")
_MARKER = re.compile(r"\A-- (duckdb|athena): ([a-z0-9-]+)")


@dataclass(frozen=True)
class SqlBlock:
    engine: str
    name: str
    text: str
    line: int

    def __str__(self) -> str:
        return f"QUERYING.md:{self.line} ({self.engine}: {self.name})"


def sql_blocks() -> list[SqlBlock]:
    """Every ```sql fence of the page (an unmarked one is an error: nothing would check it)."""
    blocks: list[SqlBlock] = []
    lines = DOC.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        if not _SQL_FENCE.match(lines[i]):
            i += 1
            continue
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"QUERYING.md:{start + 1}: fence never closed"
        marker = _MARKER.match(body[0]) if body else None
        assert marker, (
            f"QUERYING.md:{start + 1}: first line must be '-- duckdb: NAME' or '-- athena: NAME'"
        )
        blocks.append(SqlBlock(marker.group(1), marker.group(2), "\n".join(body) + "\n", start + 1))
        i += 1
    return blocks


BLOCKS = sql_blocks()
DUCKDB = {b.name: b for b in BLOCKS if b.engine == "duckdb"}
ATHENA = {b.name: b for b in BLOCKS if b.engine == "athena"}
NOT_RUN = {"s3", "s3-compatible"}
"""DuckDB blocks that need the network (the page says so in their marker line)."""

# --- The input: events and what each query must answer, stated by hand -------------------

WEB_A = [
    {
        "actor": "alice",
        "action": "read",
        "resource": "s3://hr/salaries.csv",
        "outcome": "success",
        "time": "2026-03-01T10:00:00Z",
        "source_ip": "10.0.0.1",
        "details": {"bytes": 12},
    },
    {
        "actor": {"id": "bob", "type": "user"},
        "action": "write",
        "resource": {"id": "s3://hr/reviews.csv", "kind": "file"},
        "outcome": "failure",
        "time": "2026-03-02T09:30:00+02:00",
    },
    {
        "actor": "alice",
        "action": "delete",
        "resource": "db/patients/42",
        "time": "2026-03-03T00:00:00Z",
    },
]
"""web-1, sealed first (seq 0-2): the only events inside the range the test sets."""
WEB_B = [
    {
        "Actor": "mallory",  # an extra key differing only in case: never read as actor
        "actor": "carol",
        "action": "read",
        "resource": "s3://hr/salaries.csv",
        "time": "yesterday",  # not typed
        "source_ip": "not-an-ip",  # not typed
    },
    {
        "actor": {"id": "dave"},
        "action": {"id": "export", "scope": "bulk"},
        "resource": "s3://hrx/other.csv",  # not under s3://hr/
        "outcome": "forbid 403",
        "time": 12345,  # not typed
        "source_ip": "10.0.0.9",
    },
]
"""web-1, sealed after the range's end (seq 3-4)."""
HR = [
    {
        "actor": "alice",
        "action": "read",
        "resource": "s3://hr/x/y.pdf",
        "time": "2026-03-02t12:00:00.123456789z",
    },
    {
        "actor": "erin",
        "action": {"id": "list"},
        "resource": "s3://hr/",
        "time": "2026-03-01 23:59:59+00:00",
        "format": "custom",
        "record": {"raw": "erin listed s3://hr/"},
    },
    {
        "actor": '{"id":"zed"}',
        "action": "read",
        "resource": "s3://hr/z",
        "time": "2026-03-04T00:00:00Z",
    },
]
"""hr-app (seq 0-2). The last actor is a string that looks like an object."""
GZ = [{"actor": "gina", "action": "read", "resource": "s3://hr/g"}]
"""gz-1, sealed with --compression gzip."""

EXPECTED = {
    # (stream, seq, actor, action, resource, outcome): the s3://hr/* events inside [since, until)
    "who-accessed": [
        ("web-1", 0, "alice", "read", "s3://hr/salaries.csv", "success"),
        ("web-1", 1, "bob", "write", "s3://hr/reviews.csv", "failure"),
    ],
    # (actor, action, events) over every zstd event
    "actions-by-actor": [
        ("alice", "delete", 1),
        ("alice", "read", 2),
        ("bob", "write", 1),
        ("carol", "read", 1),
        ("dave", "export", 1),
        ("erin", "list", 1),
        ('{"id":"zed"}', "read", 1),
    ],
    # (stream, seq, claimed time in UTC): typed times in [2026-03-01, 2026-03-03), by time
    "claimed-time": [
        ("web-1", 0, datetime(2026, 3, 1, 10, 0, tzinfo=UTC)),
        ("hr-app", 1, datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)),
        ("web-1", 1, datetime(2026, 3, 2, 7, 30, tzinfo=UTC)),
        ("hr-app", 0, datetime(2026, 3, 2, 12, 0, 0, 123456, tzinfo=UTC)),
    ],
    # (stream, seq, actor, outcome, source_ip as sent)
    "failures": [
        ("web-1", 1, "bob", "failure", None),
        ("web-1", 4, "dave", "forbid 403", "10.0.0.9"),
    ],
}
STATEMENTS_ONLY = {"setup", "range"}
"""DuckDB blocks that define things and return no rows to compare."""


def _ndjson(events: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


@dataclass(frozen=True)
class Archive:
    root: Path
    """The folder holding ``audit-copy/`` (DuckDB's file search path)."""
    since: datetime
    until: datetime
    """Every web-1 event of WEB_A was received in [since, until); nothing else was."""

    @property
    def copy(self) -> Path:
        return self.root / COPY


def _seal(root: Path, events: list[dict[str, Any]], stream: str, *extra: str) -> None:
    source = root / f"{stream}-{len(list(root.glob('*.ndjson')))}.ndjson"
    source.write_text(_ndjson(events), encoding="utf-8")
    result = run_cli(
        "seal",
        "--input", source,
        "--out-dir", root / COPY,
        "--stream", stream,
        "--prefix", PREFIX,
        "--signing-key", root / "keys" / "signing.key",
        "--batch-max-events", "2",
        *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    root = tmp_path_factory.mktemp("querying")
    keygen = run_cli("keygen", "--out", root / "keys")
    assert keygen.returncode == 0, keygen.stderr
    since = datetime.now(UTC)
    _seal(root, WEB_A, "web-1")
    until = datetime.now(UTC)
    _seal(root, WEB_B, "web-1")
    _seal(root, HR, "hr-app")
    _seal(root, GZ, "gz-1", "--compression", "gzip")
    # The page's order: verify the copy before querying it.
    verify = run_cli(
        "verify", "--local-dir", root / COPY, "--prefix", PREFIX,
        "--public-key", root / "keys" / "signing.pub", "--json", "--no-progress",
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report = json.loads(verify.stdout)
    assert report["events"] == len(WEB_A) + len(WEB_B) + len(HR) + len(GZ)
    return Archive(root, since, until)


def _connect(archive: Archive) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET file_search_path = ?", [str(archive.root)])
    return con


def _run(con: duckdb.DuckDBPyConnection, block: SqlBlock) -> list[tuple[Any, ...]]:
    """Run every statement of ``block`` verbatim; the rows of the last one."""
    rows: list[tuple[Any, ...]] = []
    for statement in duckdb.extract_statements(block.text):
        result = con.execute(statement)
        rows = result.fetchall() if result.description else []
    return rows


def _session(archive: Archive) -> duckdb.DuckDBPyConnection:
    """A connection after the page's ``setup`` and ``range`` blocks, range moved to the test's."""
    con = _connect(archive)
    _run(con, DUCKDB["setup"])
    _run(con, DUCKDB["range"])
    # The archive was sealed now, not in March: the queries run verbatim, the range is ours.
    con.execute(f"SET VARIABLE since = TIMESTAMPTZ '{archive.since.isoformat()}'")
    con.execute(f"SET VARIABLE until = TIMESTAMPTZ '{archive.until.isoformat()}'")
    return con


def _lines(path: Path) -> list[bytes]:
    with path.open("rb") as f:
        data = zstandard.ZstdDecompressor().stream_reader(f).read()
    return data.splitlines()


def _sealed_keys(archive: Archive) -> set[str]:
    keys: set[str] = set()
    for path in archive.copy.glob("*/*.ndjson.zst"):
        for line in _lines(path):
            keys.update(json.loads(line))
    return keys


# --- The page's blocks --------------------------------------------------------------------


def test_the_page_has_the_blocks_this_test_checks() -> None:
    assert set(DUCKDB) == STATEMENTS_ONLY | set(EXPECTED) | NOT_RUN, "a DuckDB block nobody checks"
    assert {"table", "enum", "who-accessed", "actions-by-actor"} <= set(ATHENA)
    for name in NOT_RUN:
        assert "not executed" in DUCKDB[name].text.splitlines()[0], str(DUCKDB[name])


def test_the_setup_reads_every_sealed_zstd_event_and_nothing_else(archive: Archive) -> None:
    con = _session(archive)
    rows = con.execute(
        "SELECT stream, seq, segment FROM audit_events ORDER BY stream, seq"
    ).fetchall()
    # --batch-max-events 2: at most two events per segment, and each seal run starts one.
    expected = [("hr-app", 0, 0), ("hr-app", 1, 0), ("hr-app", 2, 1)]
    expected += [
        ("web-1", 0, 0),
        ("web-1", 1, 0),
        ("web-1", 2, 1),
        ("web-1", 3, 2),
        ("web-1", 4, 2),
    ]
    assert rows == expected


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_duckdb_query_answers_what_the_input_implies(archive: Archive, name: str) -> None:
    rows = _run(_session(archive), DUCKDB[name])
    match name:
        case "who-accessed":
            got = [(r[0], r[1], *r[3:]) for r in rows]
            assert all(archive.since <= r[2] < archive.until for r in rows)
        case "actions-by-actor":
            got = [r[:3] for r in rows]
            assert all(r[3] <= r[4] for r in rows)
        case "claimed-time":
            got = [r[:3] for r in rows]
        case "failures":
            got = [(r[0], r[1], *r[3:]) for r in rows]
    assert got == EXPECTED[name], str(DUCKDB[name])


def test_the_s3_view_is_the_local_view_with_another_path(archive: Archive) -> None:
    """Run the s3 block's view on the local copy: same rows as the setup's view."""
    statements = [s.query for s in duckdb.extract_statements(DUCKDB["s3"].text)]
    (view,) = [s for s in statements if "CREATE OR REPLACE VIEW" in s]
    local = view.replace("s3://example-audit-archive/audit/", f"{COPY}/")
    assert local != view
    con = _connect(archive)
    con.execute(local)
    _run(con, DUCKDB["setup"])  # the macros
    s3_rows = con.execute("SELECT * FROM audit_events ORDER BY stream, seq").fetchall()
    assert len(s3_rows) == len(WEB_A) + len(WEB_B) + len(HR)
    assert _run(con, DUCKDB["actions-by-actor"])[0][:3] == EXPECTED["actions-by-actor"][0]


def test_the_s3_secrets_use_documented_parameters() -> None:
    """Parameter names of DuckDB's S3 secrets (duckdb.org, httpfs "S3 API Support")."""
    known = {
        "TYPE", "PROVIDER", "KEY_ID", "SECRET", "REGION", "SESSION_TOKEN", "ENDPOINT",
        "URL_STYLE", "USE_SSL", "URL_COMPATIBILITY_MODE", "SCOPE", "CHAIN", "PROFILE",
    }  # fmt: skip
    for name in NOT_RUN:
        for secret in re.findall(
            r"CREATE OR REPLACE SECRET \w+ \((.*?)\);", DUCKDB[name].text, re.S
        ):
            used = {line.strip().split()[0] for line in secret.strip().splitlines()}
            assert used <= known, f"{DUCKDB[name]}: {used - known}"
            assert "TYPE" in used


# --- Readers and the seal frame -----------------------------------------------------------


def test_readers_skip_the_seal_frame_as_the_page_says(archive: Archive) -> None:
    segment = archive.copy / "web-1" / "000000000000.ndjson.zst"
    data = segment.read_bytes()
    lines = _lines(segment)  # stream_reader: the event lines
    assert [json.loads(line)["seq"] for line in lines] == [0, 1]
    assert data.find(lines[0]) == -1  # compressed: the lines are not in the clear
    # The page names the magic a strict reader reports.
    magic = int.from_bytes(data[:4], "little")
    assert f"{magic:x}" == "184d2a5a"
    assert "Invalid magic prefix: 184d2a5a" in DOC.read_text(encoding="utf-8")
    # A one-frame reader stops after the seal frame.
    assert zstandard.ZstdDecompressor().decompressobj().decompress(data) == b""
    if shutil.which("zstd"):
        out = subprocess.run(["zstd", "-dcq", str(segment)], capture_output=True, check=True)
        assert out.stdout.splitlines() == lines


def test_gzip_segments_read_as_event_lines(archive: Archive) -> None:
    (segment,) = (archive.copy / "gz-1").glob("*.ndjson.gz")
    lines = gzip.decompress(segment.read_bytes()).splitlines()
    assert [json.loads(line)["actor"] for line in lines] == ["gina"]
    if shutil.which("gunzip"):
        out = subprocess.run(["gunzip", "-c", str(segment)], capture_output=True, check=True)
        assert out.stdout.splitlines() == lines
    rows = duckdb.execute(
        "SELECT seq, actor FROM read_json(?, format = 'newline_delimited', compression = 'gzip')",
        [str(segment)],
    ).fetchall()
    assert rows == [(0, "gina")]


def test_duckdb_reads_a_segment_whole_not_just_its_seal(archive: Archive) -> None:
    segment = archive.copy / "hr-app" / "000000000000.ndjson.zst"
    rows = duckdb.execute(
        "SELECT seq, received_at FROM read_json(?, format = 'newline_delimited',"
        " compression = 'zstd', columns = {seq: 'UBIGINT', received_at: 'VARCHAR'})",
        [str(segment)],
    ).fetchall()
    stored = [json.loads(line) for line in _lines(segment)]
    assert rows == [(e["seq"], e["received_at"]) for e in stored]
    assert segment.read_bytes()[:4] == bytes.fromhex("5a2a4d18")  # the seal frame comes first


# --- Athena -------------------------------------------------------------------------------


def _athena(name: str) -> exp.Expression:
    parsed = sqlglot.parse_one(ATHENA[name].text, read="athena")
    assert parsed is not None
    return parsed


def _properties(node: exp.Expression) -> dict[str, str]:
    return {
        prop.this.name: prop.args["value"].name
        for prop in node.find_all(exp.Property)
        if isinstance(prop.this, exp.Literal) and isinstance(prop.args.get("value"), exp.Literal)
    }


def _table_columns() -> tuple[set[str], set[str]]:
    create = _athena("table")
    assert isinstance(create, exp.Create)
    schema = create.this
    assert isinstance(schema, exp.Schema) and schema.this.name == "audit_events"
    columns = {c.this.name for c in schema.expressions if isinstance(c, exp.ColumnDef)}
    for column in schema.expressions:  # TIME is reserved in Athena DDL: backquoted
        assert column.this.args.get("quoted") == (column.this.name == "time"), column.sql()
    partitioned = create.find(exp.PartitionedByProperty)
    assert partitioned is not None
    partitions = {c.this.name for c in partitioned.find_all(exp.ColumnDef)}
    return columns, partitions


def test_the_athena_table_reads_fields_of_the_sealed_lines(archive: Archive) -> None:
    columns, partitions = _table_columns()
    assert partitions == {"stream"}
    sealed = _sealed_keys(archive)
    assert columns <= sealed, f"columns no sealed line has: {columns - sealed}"
    documented = {"seq", "received_at", "actor", "action", "resource", "outcome", "time"}
    assert documented | {"source_ip", "details", "format", "record"} == columns


def test_the_athena_table_uses_the_openx_serde_and_projection() -> None:
    create = _athena("table")
    serde = create.find(exp.RowFormatSerdeProperty)
    assert serde is not None and serde.this.name == "org.openx.data.jsonserde.JsonSerDe"
    props = _properties(create)
    assert props["case.insensitive"] == "false"
    assert props["ignore.malformed.json"] == "false"
    assert props["projection.enabled"] == "true"
    assert props["projection.stream.type"] == "injected"


def test_the_athena_location_template_produces_the_layouts_keys() -> None:
    create = _athena("table")
    location = create.find(exp.LocationProperty)
    assert location is not None
    base = location.this.name
    template = _properties(create)["storage.location.template"]
    assert template == base + "${stream}/"
    bucket_and_prefix = re.fullmatch(r"s3://([^/]+)/(.+)/", base)
    assert bucket_and_prefix, base
    prefix = bucket_and_prefix.group(2)
    assert prefix == PREFIX  # the prefix the page syncs and verifies
    for stream, seq, compression in (("web-1", 0, "zstd"), ("hr-app", 41, "gzip")):
        folder = template.replace("${stream}", stream).split("/", 3)[3]
        key = segment_key(prefix, stream, seq, compression)
        assert key.startswith(folder) and "/" not in key[len(folder) :], (key, folder)


def test_the_enum_variant_lists_valid_stream_ids() -> None:
    alter = _athena("enum")
    assert isinstance(alter, exp.Alter) and alter.this.name == "audit_events"
    props = _properties(alter)
    assert props["projection.stream.type"] == "enum"
    for stream in props["projection.stream.values"].split(","):
        assert validate_stream_id(stream) == stream


@pytest.mark.parametrize("name", sorted(set(ATHENA) - {"table", "enum"}))
def test_each_athena_query_names_its_streams_and_real_columns(name: str) -> None:
    query = _athena(name)
    assert isinstance(query, exp.Select)
    (table,) = {t.name for t in query.find_all(exp.Table)}
    assert table == "audit_events"
    columns, partitions = _table_columns()
    aliases = {a.alias for a in query.expressions if isinstance(a, exp.Alias)}
    used = {c.name for c in query.find_all(exp.Column)}
    assert used <= columns | partitions | aliases, f"{ATHENA[name]}: {used - columns - partitions}"
    where = query.args.get("where")
    assert where is not None
    on_stream = [
        node
        for node in where.find_all(exp.EQ, exp.In)
        if isinstance(node.this, exp.Column) and node.this.name == "stream"
    ]
    assert on_stream, f"{ATHENA[name]}: the injected projection needs stream = '...' or IN (...)"
    for node in on_stream:
        values = node.expressions if isinstance(node, exp.In) else [node.expression]
        assert values and all(isinstance(v, exp.Literal) and v.is_string for v in values)
