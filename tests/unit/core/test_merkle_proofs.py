"""RFC 9162 inclusion proofs against independent reference vectors.

The leaves, node hashes, roots and audit paths below are copied from
transparency-dev/merkle (the Go library behind Trillian and Tessera), not
computed by this project:

- leaves and roots: ``testonly/constants.go`` at commit
  582a6ad190b6848f1d26f8bf08ddef29955d9db1 (``LeafInputs``, ``NodeHashes``,
  ``RootHashes``);
- audit paths: ``proof/verify_test.go`` at commit
  02194e9afb6c1d95b5381350007963aa70fff472 (``inclusionProofs``; its leaf
  numbers are 1-based, ours are 0-based indexes), and its corruption probes
  (``corruptInclusionProof``), each of which must fail.
"""

from __future__ import annotations

import hashlib

import pytest

from audit_archiver.core.merkle import (
    InclusionProofBuilder,
    inclusion_proof,
    inclusion_ranges,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    root_of_lines,
    verify_inclusion,
)

LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
# NodeHashes()[0]: the leaf hashes of LEAVES.
LEAF_HASHES = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
]
# RootHashes()[1:]: the root of the first n leaves, n = 1..8.
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# inclusionProofs of verify_test.go: (0-based index, tree size, audit path).
PATHS = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
EMPTY_TREE = hashlib.sha256(b"").digest()


def test_leaf_hashes_match_the_reference() -> None:
    assert [leaf_hash(leaf).hex() for leaf in LEAVES] == LEAF_HASHES


@pytest.mark.parametrize(("index", "size", "path"), PATHS)
def test_reference_paths_are_built(index: int, size: int, path: list[str]) -> None:
    hashes = [leaf_hash(leaf) for leaf in LEAVES[:size]]
    assert [node.hex() for node in inclusion_proof(hashes, index)] == path


@pytest.mark.parametrize(("index", "size", "path"), PATHS)
def test_reference_paths_verify(index: int, size: int, path: list[str]) -> None:
    proof = [bytes.fromhex(node) for node in path]
    leaf = leaf_hash(LEAVES[index])
    root = bytes.fromhex(ROOTS[size - 1])
    assert root_from_inclusion_proof(leaf, index, size, proof) == root
    assert verify_inclusion(leaf, index, size, proof, root)


def _corruptions(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> list[tuple[str, tuple[bytes, int, int, list[bytes], bytes]]]:
    """corruptInclusionProof of verify_test.go: (description, verify_inclusion arguments)."""
    probes = [
        ("leafIndex - 1", (leaf, index - 1, size, proof, root)),
        ("leafIndex + 1", (leaf, index + 1, size, proof, root)),
        ("leafIndex ^ 2", (leaf, index ^ 2, size, proof, root)),
        ("treeSize * 2", (leaf, index, size * 2, proof, root)),
        ("treeSize / 2", (leaf, index, size // 2, proof, root)),
        ("wrong leaf", (b"WrongLeaf", index, size, proof, root)),
        ("empty root", (leaf, index, size, proof, EMPTY_TREE)),
        ("random root", (leaf, index, size, proof, SOME_HASH)),
        ("trailing garbage", (leaf, index, size, [*proof, b""], root)),
        ("trailing root", (leaf, index, size, [*proof, root], root)),
        ("preceding garbage", (leaf, index, size, [b"", *proof], root)),
        ("preceding root", (leaf, index, size, [root, *proof], root)),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        probes.append((f"modified proof[{i}] bit 3", (leaf, index, size, flipped, root)))
    if proof:
        probes.append(("removed component", (leaf, index, size, proof[:-1], root)))
    if len(proof) > 1:
        inserted = [proof[0], SOME_HASH, *proof[1:]]
        probes.append(("inserted component", (leaf, index, size, inserted, root)))
    return probes


@pytest.mark.parametrize(("index", "size", "path"), PATHS)
def test_reference_corruptions_fail(index: int, size: int, path: list[str]) -> None:
    proof = [bytes.fromhex(node) for node in path]
    root = bytes.fromhex(ROOTS[size - 1])
    accepted = [
        what
        for what, arguments in _corruptions(index, size, proof, root, leaf_hash(LEAVES[index]))
        if verify_inclusion(*arguments)
    ]
    assert accepted == []


def test_swapped_sibling_order_fails() -> None:
    index, size, path = PATHS[2]
    proof = [bytes.fromhex(node) for node in path]
    root = bytes.fromhex(ROOTS[size - 1])
    leaf = leaf_hash(LEAVES[index])
    assert not verify_inclusion(leaf, index, size, [proof[1], proof[0], proof[2]], root)
    # Hashing a sibling on the wrong side gives another root.
    assert node_hash(proof[0], leaf) != node_hash(leaf, proof[0])


@pytest.mark.parametrize(
    ("index", "size"), [(0, 0), (1, 0), (2, 1), (-1, 4), (0, 2**64 + 1), (5, 5)]
)
def test_positions_outside_the_tree_are_refused(index: int, size: int) -> None:
    with pytest.raises(ValueError, match="not in a tree"):
        root_from_inclusion_proof(SOME_HASH, index, size, [])
    assert not verify_inclusion(SOME_HASH, index, size, [], EMPTY_TREE)


def test_short_hashes_and_long_paths_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        root_from_inclusion_proof(b"short", 0, 1, [])
    with pytest.raises(ValueError, match="at most 64"):
        root_from_inclusion_proof(SOME_HASH, 0, 2**64, [SOME_HASH] * 65)


def test_single_leaf_tree_root_is_the_leaf() -> None:
    leaf = leaf_hash(b"data")
    assert verify_inclusion(leaf, 0, 1, [], leaf)
    assert not verify_inclusion(leaf, 0, 1, [leaf], leaf)


def test_ranges_cover_every_other_leaf_once() -> None:
    for size in range(1, 70):
        for index in range(size):
            ranges = inclusion_ranges(index, size)
            covered = sorted(i for start, end in ranges for i in range(start, end))
            assert covered == [i for i in range(size) if i != index]


def _recursive_path(leaves: list[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]) exactly as RFC 9162 section 2.1.3.1 writes it."""
    if len(leaves) == 1:
        return []
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    if index < split:
        return [*_recursive_path(leaves[:split], index), root_of_lines(leaves[split:])]
    return [*_recursive_path(leaves[split:], index - split), root_of_lines(leaves[:split])]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 9, 31, 33, 100])
def test_every_path_matches_the_rfc_definition_and_verifies(size: int) -> None:
    lines = [f"line {i}".encode() for i in range(size)]
    hashes = [leaf_hash(line) for line in lines]
    root = root_of_lines(lines)
    for index in range(size):
        proof = inclusion_proof(hashes, index)
        assert proof == _recursive_path(lines, index)
        assert verify_inclusion(hashes[index], index, size, proof, root)


def test_a_path_can_fit_another_tree_size_so_the_size_must_come_from_the_seal() -> None:
    """The reason a proof checker takes the tree size from the signed seal: the
    RFC 9162 algorithm alone accepts the path of leaf 0 among 100 leaves for
    101 leaves too (both paths have the same shape)."""
    lines = [f"line {i}".encode() for i in range(100)]
    hashes = [leaf_hash(line) for line in lines]
    proof = inclusion_proof(hashes, 0)
    root = root_of_lines(lines)
    assert verify_inclusion(hashes[0], 0, 101, proof, root)
    assert not verify_inclusion(hashes[0], 0, 200, proof, root)


def test_builder_refuses_too_many_or_too_few_leaves() -> None:
    builder = InclusionProofBuilder(0, 2)
    builder.add(SOME_HASH)
    with pytest.raises(ValueError, match="1 leaves added"):
        builder.proof()
    builder.add(SOME_HASH)
    with pytest.raises(ValueError, match="more than 2"):
        builder.add(SOME_HASH)


@pytest.mark.parametrize("size", [2 * 1024 + 3, 3000])
def test_paths_of_trees_larger_than_a_folder_block(size: int) -> None:
    lines = [f"line {i}".encode() for i in range(size)]
    hashes = [leaf_hash(line) for line in lines]
    root = root_of_lines(lines)
    for index in sorted({0, 1, 1023, 1024, 2047, 2048, size - 1}):
        proof = inclusion_proof(hashes, index)
        assert proof == _recursive_path(lines, index)
        assert verify_inclusion(hashes[index], index, size, proof, root)
