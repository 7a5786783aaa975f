"""One stream of an archive as ``prove`` reads it: its listed segments and their seals.

The listing is sorted by :func:`~audit_archiver.verify.listing.plan_streams`,
so the evidence is each key's original version, as for ``verify``; what the
listing alone shows about the stream (a later version over a key, a delete
marker) is kept in ``listing_problems`` for the prover's warnings. A seal is
read with :func:`~audit_archiver.verify.seal_reader.read_seal`: authenticated,
allowed by the trust policy and naming the object it was found at, before any
field is used. Each number is read at most once (the search and the chain
share the reads). Whatever stops a proof is a :class:`NoProofError` (exit 1)
carrying the problems found, with their evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from audit_archiver.core.trust import TrustPolicy
from audit_archiver.errors import ProofError
from audit_archiver.storage.base import ObjectStore, ObjectVersion
from audit_archiver.verify.listing import StreamSegments, plan_streams
from audit_archiver.verify.problems import Problem
from audit_archiver.verify.seal_reader import SealRead, read_listed_seals

__all__ = ["NoProofError", "StreamArchive"]


class NoProofError(ProofError):
    """The archive does not prove the event; ``problems`` are the evidence (the first is
    the one the error names)."""

    def __init__(self, stream: str, seq: int, problems: list[Problem]) -> None:
        first = problems[0]
        count = len(problems)
        super().__init__(
            f"cannot prove seq {seq} of stream {stream}: {count} problem{'s' * (count != 1)}"
            f" ({first.kind} at {first.key})",
            key=first.key,
            expected=first.expected,
            found=first.found,
        )
        self.problems = problems


@dataclass
class StreamArchive:
    """The listed segments of one stream and how to read their seals.

    ``key_base`` is what precedes ``<stream>/`` in a listed key (``prefix/`` in
    a bucket, empty in a local copy); ``seal_prefix`` is the prefix the seals
    must name (None in a local copy without ``--prefix``: then every seal
    must name the same one, see :meth:`expected_key`).
    """

    store: ObjectStore
    policy: TrustPolicy
    stream: str
    seq: int
    key_base: str
    seal_prefix: str | None
    segments: StreamSegments
    listing_problems: list[Problem] = field(default_factory=list)
    _reads: dict[int, SealRead | tuple[Problem, ...]] = field(default_factory=dict)

    @classmethod
    def list(
        cls,
        store: ObjectStore,
        policy: TrustPolicy,
        *,
        stream: str,
        seq: int,
        key_base: str,
        seal_prefix: str | None,
    ) -> StreamArchive:
        """List the stream's versions (one listing request per page, nothing downloaded).

        Raises:
            StorageError: the store failed.
        """
        listing = store.list_versions(f"{key_base}{stream}/")
        streams, problems = plan_streams(listing, key_base)
        return cls(
            store,
            policy,
            stream,
            seq,
            key_base,
            seal_prefix,
            streams.get(stream, StreamSegments()),
            [p for p in problems if p.stream == stream],
        )

    def fail(self, kind: str, key: str, detail: str, **evidence: str) -> NoProofError:
        """A :class:`NoProofError` of this proof with one problem."""
        return self.failure(Problem(kind, key, detail, self.stream, **evidence))

    def failure(self, *problems: Problem) -> NoProofError:
        """A :class:`NoProofError` of this proof."""
        return NoProofError(self.stream, self.seq, list(problems))

    def key_of(self, number: int) -> str:
        """How a segment number is named in a message (the key without extension)."""
        return f"{self.key_base}{self.stream}/{number:012d}"

    def expected_key(self, version: ObjectVersion) -> str | None:
        """The object key a seal found at ``version`` must name (None: must end with it)."""
        if self.seal_prefix is None:
            return None
        relative = version.key[len(self.key_base) :]
        return f"{self.seal_prefix}/{relative}" if self.seal_prefix else relative

    def attempt(self, number: int) -> SealRead | tuple[Problem, ...]:
        """The authenticated seal of segment ``number``, or why none can be trusted.

        When two objects claim the number (another extension), the one whose
        seal authenticates is the segment. Read once per number.

        Raises:
            NoProofError: two objects of the number both authenticate (a fork).
            StorageError: the store failed.
        """
        if number not in self._reads:
            self._reads[number] = self._read(number)
        return self._reads[number]

    def _read(self, number: int) -> SealRead | tuple[Problem, ...]:
        entries = self.segments.segments.get(number, [])
        if not entries:
            return (Problem("sequence_gap", self.key_of(number), "no object", self.stream),)
        found, problems = read_listed_seals(
            self.store, entries, self.policy, lambda _, version: self.expected_key(version)
        )
        if len(found) > 1:
            raise self.fail(
                "duplicate_segment", found[1].key, f"segment {number} is also at {found[0].key}"
            )
        return found[0] if found else tuple(problems)

    def lookup(self, number: int) -> SealRead | None:
        """:meth:`attempt` as a :data:`~audit_archiver.verify.seal_search.SealLookup`."""
        read = self.attempt(number)
        return read if isinstance(read, SealRead) else None

    def version_of(self, read: SealRead) -> ObjectVersion:
        """The listed version a seal was read from."""
        for _, version in self.segments.segments[read.seal.segment_seq]:
            if version.key == read.key:
                return version
        raise AssertionError(f"{read.key} was not listed")  # pragma: no cover
