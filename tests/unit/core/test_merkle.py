"""RFC 6962 roots against the Certificate Transparency reference test vectors."""

from __future__ import annotations

import hashlib

import pytest

from audit_archiver.core.merkle import (
    BLOCK,
    EMPTY_ROOT,
    MerkleFolder,
    leaf_hash,
    node_hash,
    root_of_leaf_list,
    root_of_lines,
)

CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


@pytest.mark.parametrize("size", range(1, 9))
def test_ct_reference_roots(size: int) -> None:
    assert root_of_lines(CT_LEAVES[:size]).hex() == CT_ROOTS[size - 1]


def test_empty_tree_is_hash_of_nothing() -> None:
    assert root_of_lines([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()


def _recursive_root(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(_recursive_root(leaves[:split]), _recursive_root(leaves[split:]))


@pytest.mark.parametrize("size", [1, 2, 3, 5, 16, 17, 31, 100, 1000, 1025, 3 * 1024 + 7])
def test_one_pass_root_equals_rfc6962_definition(size: int) -> None:
    leaves = [f"line {i}".encode() for i in range(size)]
    assert root_of_lines(leaves) == _recursive_root(leaves)


def test_level_root_equals_the_definition_for_every_small_size() -> None:
    leaves = [leaf_hash(f"line {i}".encode()) for i in range(130)]
    for size in range(131):
        expected = _recursive_root_of_hashes(leaves[:size]) if size else EMPTY_ROOT
        assert root_of_leaf_list(leaves[:size]) == expected, size


def _recursive_root_of_hashes(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(
        _recursive_root_of_hashes(leaves[:split]), _recursive_root_of_hashes(leaves[split:])
    )


@pytest.mark.parametrize(
    "pieces",
    [
        [BLOCK],
        [1, BLOCK],  # unaligned: one by one until the count is a multiple of BLOCK
        [BLOCK - 1, 1, BLOCK, 3],
        [5, 2 * BLOCK + 9, BLOCK, 0, 700],
        [3 * BLOCK],
    ],
)
def test_folder_extend_equals_adding_one_by_one(pieces: list[int]) -> None:
    total = sum(pieces)
    leaves = [leaf_hash(f"line {i}".encode()) for i in range(total)]
    folder = MerkleFolder()
    start = 0
    for size in pieces:
        folder.extend(leaves[start : start + size])
        start += size
        assert folder.count == start
        assert folder.root() == (_recursive_root_of_hashes(leaves[:start]) if start else EMPTY_ROOT)
    assert folder.root() == _recursive_root_of_hashes(leaves)
