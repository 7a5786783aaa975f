from __future__ import annotations

from pathlib import Path

import orjson

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "producers"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def decoded(data: bytes) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in data.splitlines()]
