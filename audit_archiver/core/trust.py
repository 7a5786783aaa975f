"""The trust policy: which key may sign which stream, under which prefix, when.

A :class:`TrustPolicy` is a list of :class:`KeyRule`. A rule names one trusted
key and narrows what that key may sign:

- ``streams``: ``fnmatch``-style globs (case-sensitive, :func:`fnmatch.fnmatchcase`)
  the seal's stream must match; None means every stream;
- ``prefix``: the seal's ``object_key`` must start with ``prefix + "/"``;
- ``not_before`` / ``not_after``: inclusive bounds on the seal's ``sealed_at``.

A key may appear in several rules; a seal is allowed when any rule of its key
allows it. The simple ``--public-key`` mode is :meth:`TrustPolicy.every_stream`:
one unrestricted rule per key.

Invariants:

- pure: nothing here reads a file or the clock; times are passed in as aware
  datetimes, keys as loaded :class:`~audit_archiver.core.signing.TrustedKey`;
- a rule with ``streams=None`` is *not* an explicit allowance for a stream
  (:meth:`TrustPolicy.names_stream` is False for it), so ``verify --state`` can
  still report a key that newly signs a stream (``key_changed``);
- every policy pickles (worker processes rebuild keys from their DER);
- :meth:`TrustPolicy.refusal` returns one line: untrusted text in it (the
  seal's ``object_key``) is ``repr``-escaped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase

from audit_archiver.core.encoding import format_timestamp
from audit_archiver.core.signing import TrustedKey

__all__ = ["KeyRule", "TrustPolicy"]


def _show(moment: datetime) -> str:
    """``moment`` as an archiver timestamp, or ISO form when it cannot be moved to UTC."""
    try:
        return format_timestamp(moment)
    except (ValueError, OverflowError):
        return moment.isoformat()


@dataclass(frozen=True)
class KeyRule:
    """One trusted key and what it may sign.

    Attributes:
        key: the trusted public key.
        streams: globs the seal's stream must match; None: every stream.
        prefix: non-empty key prefix the seal's ``object_key`` must sit under;
            None: any.
        not_before: earliest allowed ``sealed_at`` (inclusive, aware); None: no bound.
        not_after: latest allowed ``sealed_at`` (inclusive, aware); None: no bound.
        origin: where the rule comes from, for messages (``trust.toml key #2``).
    """

    key: TrustedKey
    streams: tuple[str, ...] | None = None
    prefix: str | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None
    origin: str = ""

    def __post_init__(self) -> None:
        """Refuse rules that could never be meant.

        Raises:
            ValueError: an empty prefix or stream list, a naive time, or
                ``not_before`` after ``not_after``.
        """
        if self.prefix is not None and (not self.prefix or self.prefix.endswith("/")):
            raise ValueError("prefix must be a non-empty prefix without a trailing '/'")
        if self.streams is not None and not self.streams:
            raise ValueError("streams must list at least one glob (None: every stream)")
        for moment in (self.not_before, self.not_after):
            if moment is not None and moment.tzinfo is None:
                raise ValueError("not_before and not_after must be timezone-aware")
        if (
            self.not_before is not None
            and self.not_after is not None
            and self.not_before > self.not_after
        ):
            raise ValueError("not_before is after not_after")

    def matches_stream(self, stream: str) -> bool:
        """Whether the rule's streams include ``stream`` (always, with no globs)."""
        return self.streams is None or any(fnmatchcase(stream, g) for g in self.streams)

    def refusal(self, stream: str, object_key: str, sealed_at: datetime) -> str | None:
        """None when this rule allows the seal; else the first reason it does not."""
        if not self.matches_stream(stream):
            return f"stream not in {list(self.streams or ())}"
        if self.prefix is not None and not object_key.startswith(self.prefix + "/"):
            return f"object_key {object_key!r} not under prefix {self.prefix!r}"
        if self.not_before is not None and sealed_at < self.not_before:
            return f"sealed before not_before {_show(self.not_before)}"
        if self.not_after is not None and sealed_at > self.not_after:
            return f"sealed after not_after {_show(self.not_after)}"
        return None


@dataclass(frozen=True)
class TrustPolicy:
    """The keys a verifier trusts and what each may sign (see the module docstring)."""

    rules: tuple[KeyRule, ...]

    @classmethod
    def every_stream(cls, keys: Iterable[tuple[TrustedKey, str]]) -> TrustPolicy:
        """A policy in which each key (with its origin) may sign every stream."""
        return cls(tuple(KeyRule(key, origin=origin) for key, origin in keys))

    def _rules_of(self, key_id: str) -> list[KeyRule]:
        return [rule for rule in self.rules if rule.key.key_id == key_id]

    def key(self, key_id: str) -> TrustedKey | None:
        """The trusted key with id ``key_id``, or None when no rule names it."""
        for rule in self.rules:
            if rule.key.key_id == key_id:
                return rule.key
        return None

    def key_ids(self) -> frozenset[str]:
        """The ids of every key the policy names."""
        return frozenset(rule.key.key_id for rule in self.rules)

    def refusal(self, key_id: str, stream: str, object_key: str, sealed_at: datetime) -> str | None:
        """None when some rule of ``key_id`` allows a seal of ``stream`` at
        ``object_key`` sealed at ``sealed_at`` (aware); else one line naming the
        key id, the stream and why each of the key's rules refused it."""
        rules = self._rules_of(key_id)
        if not rules:
            return f"key {key_id} is not in the trust policy (stream {stream!r})"
        reasons = []
        for rule in rules:
            reason = rule.refusal(stream, object_key, sealed_at)
            if reason is None:
                return None
            reasons.append(f"{rule.origin or 'rule'}: {reason}")
        return (
            f"key {key_id} may not sign stream {stream!r} sealed at"
            f" {_show(sealed_at)}; rules tried: {'; '.join(reasons)}"
        )

    def names_stream(self, key_id: str, stream: str) -> bool:
        """Whether a rule of ``key_id`` with explicit ``streams`` globs matches ``stream``.

        A rule without ``streams`` (every stream) does not count: it allows the
        stream but does not name it.
        """
        return any(
            rule.streams is not None and rule.matches_stream(stream)
            for rule in self._rules_of(key_id)
        )
