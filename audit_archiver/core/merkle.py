"""RFC 6962 Merkle tree hashing.

leaf hash = SHA-256(0x00 || leaf bytes); node hash = SHA-256(0x01 || left || right);
the root of n > 1 leaves splits at k, the largest power of two below n; the root
of the empty tree is SHA-256 of the empty string. This is the tree of
Certificate Transparency, Trillian and Sigstore Rekor, so their tools and proofs
apply to segment bodies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = [
    "EMPTY_ROOT",
    "MerkleFolder",
    "leaf_hash",
    "node_hash",
    "root_from_leaf_hashes",
    "root_of_lines",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """Hash one leaf: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


class MerkleFolder:
    """The RFC 6962 root of leaf hashes that arrive one at a time.

    Perfect subtrees are merged as soon as they are complete (a binary
    counter), then the remaining ones are folded right to left, which is
    exactly the RFC 6962 split at the largest power of two. Memory: one hash
    per bit of the leaf count (at most 64), whatever the number of leaves.
    """

    __slots__ = ("_count", "_stack")

    def __init__(self) -> None:
        self._stack: list[bytes] = []
        self._count = 0

    @property
    def count(self) -> int:
        """The number of leaves added so far."""
        return self._count

    def add(self, leaf: bytes) -> None:
        """Append one leaf hash (see :func:`leaf_hash`)."""
        stack = self._stack
        digest = leaf
        completed = self._count
        while completed & 1:
            digest = hashlib.sha256(b"\x01" + stack.pop() + digest).digest()
            completed >>= 1
        stack.append(digest)
        self._count += 1

    def root(self) -> bytes:
        """The root of the leaves added so far (:data:`EMPTY_ROOT` for none)."""
        if not self._stack:
            return EMPTY_ROOT
        *rest, digest = self._stack
        for left in reversed(rest):
            digest = hashlib.sha256(b"\x01" + left + digest).digest()
        return digest


def root_from_leaf_hashes(leaves: Iterable[bytes]) -> bytes:
    """Compute the RFC 6962 root of a sequence of leaf hashes in one pass."""
    folder = MerkleFolder()
    for leaf in leaves:
        folder.add(leaf)
    return folder.root()


def root_of_lines(lines: Iterable[bytes]) -> bytes:
    """Compute the RFC 6962 root whose leaves are ``lines`` (bytes, no newline)."""
    sha = hashlib.sha256
    return root_from_leaf_hashes(sha(b"\x00" + line).digest() for line in lines)
