"""DATA4(a): the content digest computed beside the planning scan equals hashlib's over the bytes."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.core.boundaries import plan_chunks
from etl.core.content import PIECE_SIZE, ContentHasher, HashingReader, content_digest, hashing


def oracle(data: bytes, piece: int) -> str:
    """The documented definition, spelled out with hashlib alone."""
    digests = b"".join(hashlib.sha256(data[i : i + piece]).digest() for i in range(0, len(data), piece))
    return hashlib.sha256(digests).hexdigest()


def split(data: bytes, sizes: list[int]) -> list[bytes]:
    out, i, k = [], 0, 0
    while i < len(data):
        n = max(1, sizes[k % len(sizes)])
        out.append(data[i : i + n])
        i, k = i + n, k + 1
    return out


def test_reference_is_the_documented_definition():
    data = os.urandom(3 * PIECE_SIZE + 12345)
    assert content_digest(data) == oracle(data, PIECE_SIZE)
    assert content_digest(b"") == hashlib.sha256(b"").hexdigest()
    # one piece: the outer hash is over that piece's digest
    assert content_digest(b"abc") == hashlib.sha256(hashlib.sha256(b"abc").digest()).hexdigest()


@pytest.mark.parametrize("workers", [0, 1, 2, 3])
@pytest.mark.parametrize("piece", [1, 7, 64, 1000])
def test_hasher_equals_hashlib_for_many_block_splits(workers, piece):
    rnd = random.Random(piece * 10 + workers)
    data = bytes(rnd.getrandbits(8) for _ in range(5000))
    want = oracle(data, piece)
    for sizes in (
        [1],
        [3, 5],
        [piece],
        [piece - 1 or 1, piece + 1],
        [999],
        [len(data)],
        [rnd.randint(1, 400) for _ in range(9)],
    ):
        h = ContentHasher(piece_size=piece, workers=workers)
        for block in split(data, sizes):
            h.update(block)
        assert h.hexdigest() == want, sizes
        assert h.size == len(data)


@settings(max_examples=150, deadline=None)
@given(
    st.binary(max_size=3000),
    st.integers(min_value=1, max_value=300),
    st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=10),
    st.integers(min_value=0, max_value=2),
)
def test_property_any_split_any_piece_size(data, piece, sizes, workers):
    h = ContentHasher(piece_size=piece, workers=workers)
    for block in split(data, sizes):
        h.update(memoryview(block))
    assert h.hexdigest() == oracle(data, piece) == content_digest(data, piece)


def test_different_bytes_different_digest_same_bytes_same_digest():
    a = b"h\n" + b"x,1\n" * 1000
    assert content_digest(a, 64) == content_digest(bytes(a), 64)
    assert content_digest(a, 64) != content_digest(a + b"\n", 64)
    assert content_digest(a, 64) != content_digest(a[:-1] + b"\r", 64)


def test_hashing_beside_the_scan_leaves_the_plan_unchanged():
    header = b"a,b\n"
    body = header + b"".join(b'%d,"x\nyy"\n' % i for i in range(20000))
    blocks = split(body, [4096, 777, 10000])
    h = ContentHasher()
    plan = plan_chunks(hashing(iter(blocks), h), len(header), len(body), 10_000, 1 << 20)
    assert plan == plan_chunks(iter(blocks), len(header), len(body), 10_000, 1 << 20)
    assert h.hexdigest() == content_digest(body)


def test_reader_wrapper_hashes_the_decompressed_stream():
    data = b"a,b\n" + b"1,2\n" * 100_000
    stream = gzip.GzipFile(fileobj=io.BytesIO(gzip.compress(data, mtime=1)), mode="rb")
    h = ContentHasher(piece_size=1000)
    r = HashingReader(stream, h)
    got = b""
    while block := r.read(4096):
        got += block
    assert got == data
    assert h.hexdigest() == oracle(data, 1000)
    # another compression (level, mtime) of the same CSV: same content digest
    other = gzip.decompress(gzip.compress(data, compresslevel=1, mtime=99))
    assert content_digest(other, 1000) == h.hexdigest()
