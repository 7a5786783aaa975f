"""Proof files: the attacks first (each forged proof must fail, with its reason), then
the strict parse, then a good proof round trip.

Proofs are built here from sealed segments (``tests.helpers.build_stream``) with an
audit path computed by the RFC 9162 recursive definition written out below, not by
the code under test (``core.merkle``'s builder is tested against CT vectors in
``test_merkle_proofs.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from audit_archiver.core.encoding import format_timestamp
from audit_archiver.core.proof import (
    MAX_PROOF_BYTES,
    Proof,
    check_proof,
    encode_proof,
    parse_proof,
)
from audit_archiver.core.segment import SealedSegment, open_segment
from audit_archiver.core.trust import KeyRule, TrustPolicy
from audit_archiver.errors import ProofError
from tests.helpers import (
    OTHER_SEED,
    body_lines,
    build_stream,
    fixed_signer,
    forge,
    trust_policy,
    trusted_keys,
)

SIGNER = fixed_signer()
POLICY = trust_policy(SIGNER)


def _leaf(line: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + line).digest()


def _root(lines: list[bytes]) -> bytes:
    if len(lines) == 1:
        return _leaf(lines[0])
    split = 1 << ((len(lines) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _root(lines[:split]) + _root(lines[split:])).digest()


def rfc_path(lines: list[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 section 2.1.3.1, written out recursively."""
    if len(lines) == 1:
        return []
    split = 1 << ((len(lines) - 1).bit_length() - 1)
    if index < split:
        return [*rfc_path(lines[:split], index), _root(lines[split:])]
    return [*rfc_path(lines[split:], index - split), _root(lines[:split])]


def _signature(data: bytes) -> bytes:
    return open_segment(data).signature


def make_proof(segments: list[SealedSegment], number: int, seq: int) -> Proof:
    """The proof of ``seq`` in segment ``number``, chained to the last of ``segments``."""
    segment = segments[number]
    lines = body_lines(segment)
    index = seq - segment.seal.first_seq
    later = segments[number + 1 :]
    return Proof(
        stream=segment.seal.stream,
        seq=seq,
        event_line=lines[index],
        leaf_index=index,
        tree_size=len(lines),
        inclusion_path=tuple(rfc_path(lines, index)),
        seal=segment.seal_bytes,
        signature=_signature(segment.data),
        object_key=segment.key,
        version_id="v1",
        retain_until="2027-01-01T00:00:00.000000Z",
        chain=tuple(s.seal_bytes for s in later),
        head_signature=_signature(later[-1].data) if later else None,
        proved_at=format_timestamp(datetime(2026, 6, 1, tzinfo=UTC)),
    )


@pytest.fixture(scope="module")
def stream() -> list[SealedSegment]:
    # 5 segments of 7 events: seq 0..34; segment 2 holds 14..20.
    return build_stream(None, "app-1", segments=5, per_segment=7)


@pytest.fixture(scope="module")
def good(stream: list[SealedSegment]) -> Proof:
    return make_proof(stream, 2, 17)


def reasons(proof: Proof, policy: TrustPolicy = POLICY) -> list[str]:
    return sorted({failure.reason for failure in check_proof(proof, policy).failures})


def test_the_good_proof_holds(good: Proof) -> None:
    verdict = check_proof(good, POLICY)
    assert verdict.failures == ()
    assert verdict.ok
    assert verdict.seal is not None
    assert verdict.head is not None
    assert (verdict.seal.segment_seq, verdict.head.segment_seq) == (2, 4)


# -- forgeries --------------------------------------------------------------------------------


def test_another_events_line_fails(stream: list[SealedSegment], good: Proof) -> None:
    other = body_lines(stream[2])[4]  # seq 18, claimed as 17
    assert reasons(dataclasses.replace(good, event_line=other)) == [
        "inclusion_invalid",
        "line_mismatch",
    ]


def test_another_events_line_with_its_own_seq_but_this_path_fails(
    stream: list[SealedSegment], good: Proof
) -> None:
    other = body_lines(stream[2])[4]
    forged = dataclasses.replace(good, event_line=other, seq=18, leaf_index=4)
    assert reasons(forged) == ["inclusion_invalid"]


def test_an_edited_event_line_fails(good: Proof) -> None:
    edited = good.event_line.replace(b'"user-2"', b'"user-3"')
    assert edited != good.event_line
    assert reasons(dataclasses.replace(good, event_line=edited)) == ["inclusion_invalid"]


def test_a_wrong_index_fails(good: Proof) -> None:
    assert reasons(dataclasses.replace(good, leaf_index=good.leaf_index + 1)) == ["index_mismatch"]


def test_a_seq_outside_the_segment_fails(stream: list[SealedSegment], good: Proof) -> None:
    line = body_lines(stream[3])[0]  # seq 21, not in segment 2
    forged = dataclasses.replace(good, event_line=line, seq=21)
    assert "index_mismatch" in reasons(forged)


def test_swapped_sibling_order_fails(good: Proof) -> None:
    path = list(good.inclusion_path)
    path[0], path[1] = path[1], path[0]
    assert reasons(dataclasses.replace(good, inclusion_path=tuple(path))) == ["inclusion_invalid"]


@pytest.mark.parametrize("change", ["drop_last", "extra", "flip"])
def test_a_damaged_path_fails(good: Proof, change: str) -> None:
    path = list(good.inclusion_path)
    if change == "drop_last":
        path.pop()
    elif change == "extra":
        path.append(path[0])
    else:
        path[1] = bytes([path[1][0] ^ 1]) + path[1][1:]
    assert reasons(dataclasses.replace(good, inclusion_path=tuple(path))) == ["inclusion_invalid"]


def test_a_lying_tree_size_fails_even_when_the_path_fits_it() -> None:
    # Leaf 0 of 5: its path fits a tree of 6 or 7 leaves too (the same shape).
    segments = build_stream(None, "app-1", segments=1, per_segment=5)
    proof = make_proof(segments, 0, 0)
    for size in (6, 7, 4, 1):
        assert reasons(dataclasses.replace(proof, tree_size=size)) == ["tree_size_mismatch"]


def test_a_chain_with_a_link_removed_fails(good: Proof) -> None:
    forged = dataclasses.replace(good, chain=good.chain[1:])
    assert reasons(forged) == ["chain_broken"]


def test_a_chain_in_another_order_fails(good: Proof) -> None:
    forged = dataclasses.replace(good, chain=good.chain[::-1])
    assert "head_not_authenticated" in reasons(forged) or "chain_broken" in reasons(forged)


def test_a_chain_with_a_seal_edited_fails(good: Proof) -> None:
    edited = good.chain[0].replace(b'"event_count":7', b'"event_count":8')
    assert reasons(dataclasses.replace(good, chain=(edited, *good.chain[1:]))) == ["chain_broken"]


def test_a_head_with_a_bad_signature_fails(good: Proof) -> None:
    assert good.head_signature is not None
    flipped = bytes([good.head_signature[0] ^ 1]) + good.head_signature[1:]
    assert reasons(dataclasses.replace(good, head_signature=flipped)) == ["head_not_authenticated"]


def test_a_seal_resigned_by_an_untrusted_key_fails(stream: list[SealedSegment]) -> None:
    other = fixed_signer(OTHER_SEED)
    data = forge(stream[2], other)
    forged_seal = open_segment(data).seal_bytes
    proof = make_proof(stream, 2, 17)
    forged = dataclasses.replace(proof, seal=forged_seal, signature=_signature(data))
    # Its hash differs too, so the genuine chain no longer links to it.
    assert reasons(forged) == ["chain_broken", "segment_not_authenticated"]
    # Even when the attacker also re-signs the head and its chain with their key.
    both = trust_policy(SIGNER, other)
    assert "chain_broken" in reasons(forged, both)


def test_a_seal_the_policy_does_not_allow_for_the_stream_fails(good: Proof) -> None:
    key = next(iter(trusted_keys(SIGNER).values()))
    policy = TrustPolicy((KeyRule(key, streams=("billing-*",), origin="trust.toml key #1"),))
    assert reasons(good, policy) == ["key_not_allowed"]


def test_a_proof_for_another_stream_fails(good: Proof) -> None:
    other = build_stream(None, "app-2", segments=3, per_segment=7)
    theirs = make_proof(other, 1, 9)
    assert reasons(dataclasses.replace(theirs, stream="app-1")) == ["wrong_stream"]
    # Its seal in our proof: the chain no longer links, and the key names another object.
    mixed = dataclasses.replace(good, seal=theirs.seal, signature=theirs.signature)
    assert {"chain_broken", "object_key_mismatch", "wrong_stream"} <= set(reasons(mixed))


def test_a_head_of_another_stream_signed_by_the_key_fails(stream: list[SealedSegment]) -> None:
    """A key holder's forged head that links by hash but names another stream."""
    target = stream[3]
    head = build_stream(None, "app-2", segments=5, per_segment=7)[4]
    data = forge(head, SIGNER, prev_seal_hash=target.seal_hash)
    proof = dataclasses.replace(
        make_proof(stream, 3, 22),
        chain=(open_segment(data).seal_bytes,),
        head_signature=_signature(data),
    )
    assert reasons(proof) == ["wrong_stream"]


def test_a_head_sealed_before_the_segment_fails(stream: list[SealedSegment]) -> None:
    target = stream[3]
    data = forge(stream[4], SIGNER, sealed_at="2020-01-01T00:00:00.000000Z")
    proof = dataclasses.replace(
        make_proof(stream, 3, 22),
        chain=(open_segment(data).seal_bytes,),
        head_signature=_signature(data),
    )
    assert target.seal.sealed_at > "2020"
    assert reasons(proof) == ["chain_broken"]


def test_an_object_key_other_than_the_seals_fails(good: Proof) -> None:
    forged = dataclasses.replace(good, object_key="audit/app-1/000000000003.ndjson.zst")
    assert reasons(forged) == ["object_key_mismatch"]


def test_unsigned_claims_do_not_change_the_verdict(good: Proof) -> None:
    """version_id, retain_until and proved_at are the prover's claims, documented as such."""
    claims = dataclasses.replace(
        good, version_id="other", retain_until=None, proved_at="2000-01-01T00:00:00.000000Z"
    )
    assert check_proof(claims, POLICY).ok


# -- strict, bounded parse ----------------------------------------------------------------------


def _fields(proof: Proof) -> dict[str, Any]:
    fields: dict[str, Any] = json.loads(encode_proof(proof))
    return fields


def _encoded(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields).encode()


def test_encode_parse_round_trip(good: Proof) -> None:
    assert parse_proof(encode_proof(good)) == good
    with_token = dataclasses.replace(good, timestamp=b"0\x82\x01\x00der")
    assert parse_proof(encode_proof(with_token)) == with_token
    head_only = make_proof(build_stream(None, "app-1", segments=2, per_segment=3), 1, 4)
    assert head_only.chain == ()
    assert parse_proof(encode_proof(head_only)) == head_only


def test_the_file_is_readable_json_with_the_stored_bytes_as_strings(good: Proof) -> None:
    fields = _fields(good)
    assert list(fields) == [  # the order of FORMAT.md section 12's table
        "format",
        "stream",
        "seq",
        "event_line",
        "leaf_index",
        "tree_size",
        "inclusion_path",
        "seal",
        "signature",
        "object_key",
        "version_id",
        "retain_until",
        "chain",
        "head_signature",
        "proved_at",
    ]
    assert fields["format"] == "audit-archiver/proof/v1"
    assert fields["seal"].encode("ascii") == good.seal
    assert fields["event_line"].encode("utf-8") == good.event_line
    assert [seal.encode("ascii") for seal in fields["chain"]] == list(good.chain)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "audit-archiver/proof/v2"}, "format"),
        ({"extra": 1}, "unknown"),
        ({"seq": -1}, "seq"),
        ({"seq": True}, "seq"),
        ({"seq": 2**63}, "seq"),
        ({"seq": 1.0}, "seq"),
        ({"tree_size": 0}, "tree_size"),
        ({"stream": "../x"}, "stream"),
        ({"stream": 7}, "stream"),
        ({"event_line": ""}, "event_line"),
        ({"event_line": "a\nb"}, "newline"),
        ({"event_line": "\ud800"}, "surrogate"),
        ({"inclusion_path": ["00" * 32] * 65}, "at most 64"),
        ({"inclusion_path": ["AB" * 32]}, "hex"),
        ({"inclusion_path": "00" * 32}, "list"),
        ({"seal": "é"}, "ASCII"),
        ({"seal": "x" * 65532}, "ASCII string of 1 to 65531"),
        ({"signature": "not base64!"}, "base64"),
        ({"signature": "AB=="}, "canonical"),
        ({"signature": ""}, "base64"),
        ({"head_signature": None}, "head_signature"),
        ({"chain": {}}, "chain"),
        ({"chain": [1]}, "chain"),
        ({"version_id": "v" * 1025}, "version_id"),
        ({"retain_until": "tomorrow"}, "retain_until"),
        ({"proved_at": "2026-01-01T00:00:00Z"}, "proved_at"),
        ({"timestamp": "%%%"}, "timestamp"),
        ({"timestamp": None}, "timestamp"),
    ],
)
def test_parse_refuses_what_is_not_a_v1_proof(
    good: Proof, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ProofError, match=message):
        parse_proof(_encoded({**_fields(good), **change}))


def test_a_head_signature_without_a_chain_is_refused(stream: list[SealedSegment]) -> None:
    head = make_proof(stream, 4, 30)
    fields = {**_fields(head), "head_signature": "AAAA"}
    with pytest.raises(ProofError, match="head_signature"):
        parse_proof(_encoded(fields))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",
        b"[]",
        b'"proof"',
        b"{",
        b"[" * 100_000,
        b'{"seq": NaN}',
        b'{"format": 1, "format": 2}',
    ],
)
def test_garbage_is_a_proof_error(data: bytes) -> None:
    with pytest.raises(ProofError, match="malformed proof"):
        parse_proof(data)


def test_a_truncated_file_is_a_proof_error(good: Proof) -> None:
    data = encode_proof(good)
    for size in (1, len(data) // 3, len(data) - 3):
        with pytest.raises(ProofError):
            parse_proof(data[:size])


def test_missing_fields_are_named(good: Proof) -> None:
    fields = _fields(good)
    del fields["chain"]
    with pytest.raises(ProofError, match=r"missing \['chain'\]"):
        parse_proof(_encoded(fields))


def test_a_file_over_the_limit_is_refused_before_parsing() -> None:
    with pytest.raises(ProofError, match="larger than"):
        parse_proof(b" " * (MAX_PROOF_BYTES + 1))


# -- a chain over numbers the writer stepped over (ADR 7) --------------------------------------


def stepped_stream(
    segments: int, per_segment: int, skip: int, jump: int = 1
) -> list[SealedSegment]:
    """Like ``build_stream``, but the writer steps over numbers ``skip`` to
    ``skip + jump - 1`` (as after finding a foreign object there, ADR 7): the segment
    after them links to the one before them."""
    from audit_archiver.agent.sealer import StreamSealer
    from audit_archiver.core.chain import ChainHead
    from audit_archiver.core.event import seal_event
    from tests.helpers import sample_event, tick

    sealer = StreamSealer(prefix="audit", stream="app-1", signer=SIGNER, head=ChainHead())
    built = []
    for number in range(segments):
        if number == skip:
            sealer.head = dataclasses.replace(sealer.head, next_segment_seq=number + jump)
            continue
        first = sealer.head.next_seq
        lines = [
            seal_event(sample_event(first + i), first + i, tick(first + i))
            for i in range(per_segment)
        ]
        built.append(sealer.seal(lines, tick(first + per_segment + 1000 * number)))
    return built


def test_a_chain_that_jumps_over_a_stepped_over_number_holds() -> None:
    segments = stepped_stream(6, 4, skip=3)  # numbers 0, 1, 2, 4, 5
    assert [s.seal.segment_seq for s in segments] == [0, 1, 2, 4, 5]
    verdict = check_proof(make_proof(segments, 1, 5), POLICY)
    assert verdict.failures == ()
    assert verdict.head is not None
    assert verdict.head.segment_seq == 5
    assert verdict.stepped_over == ((3, 3),)


def test_a_chain_that_jumps_far_ahead_is_one_run_not_a_billion_numbers() -> None:
    """A seal numbered 10**9 after the one before it (a jump the writer made, or a key
    holder's choice): the verdict names the run ``(first, last)``; expanding it would
    take minutes and gigabytes."""
    segments = stepped_stream(5, 2, skip=2, jump=10**9)
    numbers = [s.seal.segment_seq for s in segments]
    assert numbers == [0, 1, 2 + 10**9, 3 + 10**9]
    verdict = check_proof(make_proof(segments, 1, 3), POLICY)
    assert verdict.failures == ()
    assert verdict.stepped_over == ((2, 1 + 10**9),)


def test_a_chain_seal_whose_number_does_not_increase_fails(stream: list[SealedSegment]) -> None:
    """A key holder's head that links by hash to segment 2 but repeats or lowers its number."""
    from audit_archiver.core.layout import segment_key

    for number in (2, 1):
        data = forge(
            stream[3],
            SIGNER,
            segment_seq=number,
            object_key=segment_key("audit", "app-1", number, "zstd"),
            prev_seal_hash=stream[2].seal_hash,
        )
        proof = dataclasses.replace(
            make_proof(stream, 2, 17),
            chain=(open_segment(data).seal_bytes,),
            head_signature=_signature(data),
        )
        verdict = check_proof(proof, POLICY)
        assert sorted({f.reason for f in verdict.failures}) == ["chain_broken"], number
        assert "does not follow segment 2" in verdict.failures[0].detail


# -- the segment's time-stamp token (verify-proof --tsa-cert) --------------------------------


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.tsa import LocalTsa

    with LocalTsa(tmp_path_factory.mktemp("tsa")) as local:
        yield local


def _anchor(tsa: Any) -> Any:
    from audit_archiver.core.timestamp import TsaTrust

    return TsaTrust.from_pem(tsa.ca_pem.read_bytes())


def test_a_token_over_the_seal_is_checked_with_the_tsa_anchor(
    stream: list[SealedSegment], good: Proof, tsa: Any
) -> None:
    from tests.tsa import stamp

    proof = dataclasses.replace(good, timestamp=stamp(tsa, stream[2]))
    unchecked = check_proof(proof, POLICY)
    assert (unchecked.ok, unchecked.timestamp_checked, unchecked.timestamp_time) == (
        True,
        False,
        None,
    )
    verdict = check_proof(proof, POLICY, tsa=_anchor(tsa))
    assert verdict.failures == ()
    assert verdict.timestamp_checked
    assert verdict.timestamp_time is not None
    gen_time = datetime.strptime(verdict.timestamp_time, "%Y-%m-%dT%H:%M:%S.%fZ")
    assert abs(gen_time.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds() < 300


def test_a_forged_token_fails(stream: list[SealedSegment], good: Proof, tsa: Any) -> None:
    from tests.tsa import LocalTsa, stamp

    anchor = _anchor(tsa)
    other_seal = stamp(tsa, stream[3])  # a genuine token, for another seal
    token = bytearray(stamp(tsa, stream[2]))
    token[-5] ^= 1  # the end of the TSA's signature
    with LocalTsa(tsa.folder.parent / "other-tsa", name="Other TSA") as other_tsa:
        foreign = stamp(other_tsa, stream[2])  # a TSA the anchor does not trust
    for forged in (other_seal, bytes(token), foreign, b"\x30\x03\x02\x01\x00"):
        verdict = check_proof(dataclasses.replace(good, timestamp=forged), POLICY, tsa=anchor)
        assert [f.reason for f in verdict.failures] == ["timestamp_invalid"], verdict.failures
        assert verdict.timestamp_time is None
