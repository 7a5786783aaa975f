"""RFC 6962 Merkle tree hashing.

leaf hash = SHA-256(0x00 || leaf bytes); node hash = SHA-256(0x01 || left || right);
the root of n > 1 leaves splits at k, the largest power of two below n; the root
of the empty tree is SHA-256 of the empty string. This is the tree of
Certificate Transparency, Trillian and Sigstore Rekor, so their tools and proofs
apply to segment bodies.

Inclusion proofs (RFC 9162 section 2.1.3, the same as RFC 6962 section 2.1.1):
the audit path of leaf ``index`` in a tree of ``tree_size`` leaves is the list
of sibling subtree roots from the leaf up to the root. Each element is the root
of a fixed range of leaves (:func:`inclusion_ranges`), known from ``index`` and
``tree_size`` alone, so :class:`InclusionProofBuilder` computes a path while
the leaves stream past, with memory O(log n) hashes and one block of
:data:`BLOCK` leaf hashes a range being folded, never O(n).
:func:`root_from_inclusion_proof` is the RFC 9162 verification algorithm: it
refuses a path of the wrong length for ``(index, tree_size)``, so neither a
lying tree size nor an extra or missing element can pass.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_PROOF_HASHES",
    "InclusionProofBuilder",
    "MerkleFolder",
    "inclusion_proof",
    "inclusion_ranges",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "root_of_leaf_list",
    "root_of_lines",
    "verify_inclusion",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()
HASH_SIZE = 32
BLOCK = 1024
"""Leaves that :class:`MerkleFolder` gathers and hashes as one perfect subtree."""
MAX_PROOF_HASHES = 64
"""The longest audit path: a tree of at most 2**64 leaves is at most 64 levels deep."""


def leaf_hash(data: bytes) -> bytes:
    """Hash one leaf: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


class MerkleFolder:
    """The RFC 6962 root of leaf hashes that arrive one at a time or in runs.

    Leaves are gathered into blocks of :data:`BLOCK`; a full block is hashed a
    level at a time (:func:`root_of_leaf_list`) and merged as one perfect
    subtree into a binary counter of perfect subtrees, which :meth:`root`
    folds right to left with the leaves still gathered: exactly the RFC 6962
    split at the largest power of two. Memory: one block of leaf hashes and
    one hash per bit of the leaf count (at most 64), whatever the number of
    leaves.
    """

    __slots__ = ("_block", "_folded", "_stack")

    def __init__(self) -> None:
        self._stack: list[bytes] = []
        self._folded = 0
        self._block: list[bytes] = []

    @property
    def count(self) -> int:
        """The number of leaves added so far."""
        return self._folded + len(self._block)

    def add(self, leaf: bytes) -> None:
        """Append one leaf hash (see :func:`leaf_hash`)."""
        self._block.append(leaf)
        if len(self._block) == BLOCK:
            self._fold_block()

    def extend(self, leaves: Sequence[bytes]) -> None:
        """Append many leaf hashes: the same as :meth:`add` for each."""
        start, end = 0, len(leaves)
        while start < end:
            take = min(BLOCK - len(self._block), end - start)
            self._block += leaves[start : start + take]
            start += take
            if len(self._block) == BLOCK:
                self._fold_block()

    def _fold_block(self) -> None:
        """Merge the full block as one perfect subtree (the count so far is a
        multiple of :data:`BLOCK`, so every pending subtree is larger)."""
        _push(self._stack, self._folded // BLOCK, root_of_leaf_list(self._block))
        self._folded += BLOCK
        self._block = []

    def root(self) -> bytes:
        """The root of the leaves added so far (:data:`EMPTY_ROOT` for none)."""
        stack = list(self._stack)
        for index, leaf in enumerate(self._block):
            _push(stack, index, leaf)
        if not stack:
            return EMPTY_ROOT
        *rest, digest = stack
        for left in reversed(rest):
            digest = hashlib.sha256(b"\x01" + left + digest).digest()
        return digest


def _push(stack: list[bytes], completed: int, digest: bytes) -> None:
    """Push a perfect subtree onto a binary counter of them, merging equal sizes:
    ``completed`` is how many subtrees of its size were pushed before it."""
    while completed & 1:
        digest = hashlib.sha256(b"\x01" + stack.pop() + digest).digest()
        completed >>= 1
    stack.append(digest)


def root_from_leaf_hashes(leaves: Iterable[bytes]) -> bytes:
    """Compute the RFC 6962 root of a sequence of leaf hashes in one pass."""
    folder = MerkleFolder()
    for leaf in leaves:
        folder.add(leaf)
    return folder.root()


def root_of_leaf_list(leaves: Sequence[bytes]) -> bytes:
    """The RFC 6962 root of leaf hashes held in memory, a level at a time.

    Pairing neighbours level by level and lifting an unpaired last node as it
    is gives RFC 6962's root (its split at the largest power of two falls on a
    pair boundary of every level below it); one list comprehension a level
    instead of a Python loop a node.
    """
    if not leaves:
        return EMPTY_ROOT
    sha = hashlib.sha256
    level = list(leaves)
    while len(level) > 1:
        pairs = iter(level)  # an odd last node is left out here, lifted below
        upper = [
            sha(b"\x01" + left + right).digest() for left, right in zip(pairs, pairs, strict=False)
        ]
        if len(level) & 1:
            upper.append(level[-1])
        level = upper
    return level[0]


def root_of_lines(lines: Sequence[bytes]) -> bytes:
    """Compute the RFC 6962 root whose leaves are ``lines`` (bytes, no newline)."""
    sha = hashlib.sha256
    return root_of_leaf_list([sha(b"\x00" + line).digest() for line in lines])


def _check_position(index: int, tree_size: int) -> None:
    if not (0 <= index < tree_size <= 2**MAX_PROOF_HASHES):
        raise ValueError(f"leaf index {index} is not in a tree of {tree_size} leaves")


def inclusion_ranges(index: int, tree_size: int) -> list[tuple[int, int]]:
    """The leaf ranges ``[start, end)`` whose roots form the audit path of leaf
    ``index`` in a tree of ``tree_size`` leaves, in path order (leaf to root).

    RFC 9162 section 2.1.3.1: in ``D[lo:hi]`` split at ``k``, the largest power
    of two below ``hi - lo``; the sibling of the half holding ``index`` is an
    element of the path, then the walk goes on in that half.

    Raises:
        ValueError: ``index`` is not a leaf of such a tree.
    """
    _check_position(index, tree_size)
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, tree_size
    while hi - lo > 1:
        split = lo + (1 << ((hi - lo - 1).bit_length() - 1))
        if index < split:
            ranges.append((split, hi))
            hi = split
        else:
            ranges.append((lo, split))
            lo = split
    ranges.reverse()
    return ranges


class InclusionProofBuilder:
    """The audit path of one leaf, computed from leaf hashes that arrive in order.

    Each leaf is folded into the path element whose range holds it (the leaf
    at ``index`` itself into none), so memory is one :class:`MerkleFolder` per
    path element: O(log n) hashes, and at most one block of :data:`BLOCK` leaf
    hashes in each folder still filling.
    """

    __slots__ = ("_count", "_folders", "_ranges", "index", "tree_size")

    def __init__(self, index: int, tree_size: int) -> None:
        """Prepare the path of leaf ``index`` in a tree of ``tree_size`` leaves.

        Raises:
            ValueError: ``index`` is not a leaf of such a tree.
        """
        self.index = index
        self.tree_size = tree_size
        self._ranges = inclusion_ranges(index, tree_size)
        self._folders = [MerkleFolder() for _ in self._ranges]
        self._count = 0

    def add(self, leaf: bytes) -> None:
        """Take the next leaf hash (see :func:`leaf_hash`).

        Raises:
            ValueError: more than ``tree_size`` leaves.
        """
        position = self._count
        if position >= self.tree_size:
            raise ValueError(f"more than {self.tree_size} leaves")
        self._count += 1
        for (start, end), folder in zip(self._ranges, self._folders, strict=True):
            if start <= position < end:
                folder.add(leaf)
                return

    def proof(self) -> list[bytes]:
        """The audit path, leaf to root.

        Raises:
            ValueError: fewer than ``tree_size`` leaves were added.
        """
        if self._count != self.tree_size:
            raise ValueError(f"{self._count} leaves added, the tree has {self.tree_size}")
        return [folder.root() for folder in self._folders]


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The RFC 9162 audit path of leaf ``index`` among ``leaves`` (leaf hashes).

    Raises:
        ValueError: ``index`` is not a position in ``leaves``.
    """
    builder = InclusionProofBuilder(index, len(leaves))
    for leaf in leaves:
        builder.add(leaf)
    return builder.proof()


def root_from_inclusion_proof(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes]
) -> bytes:
    """The root that leaf hash ``leaf`` at ``index`` and audit path ``proof`` imply
    for a tree of ``tree_size`` leaves (RFC 9162 section 2.1.3.2).

    The caller compares the result with the root it trusts (or calls
    :func:`verify_inclusion`). A path must have exactly the length the
    position implies, every element 32 bytes.

    Raises:
        ValueError: ``index`` outside the tree, a hash that is not 32 bytes, or
            a path too long or too short for ``(index, tree_size)``.
    """
    _check_position(index, tree_size)
    if len(leaf) != HASH_SIZE or any(len(node) != HASH_SIZE for node in proof):
        raise ValueError(f"every hash must be {HASH_SIZE} bytes")
    if len(proof) > MAX_PROOF_HASHES:
        raise ValueError(f"an audit path has at most {MAX_PROOF_HASHES} hashes")
    fn, sn = index, tree_size - 1
    digest = leaf
    for node in proof:
        if sn == 0:
            raise ValueError("the audit path is longer than the tree is deep")
        if fn & 1 or fn == sn:
            digest = node_hash(node, digest)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            digest = node_hash(digest, node)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("the audit path is shorter than the tree is deep")
    return digest


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree of
    ``tree_size`` leaves whose root is ``root`` (False for any malformed input)."""
    try:
        return root_from_inclusion_proof(leaf, index, tree_size, proof) == root
    except ValueError:
        return False
