"""DATA4(c): a ``transaction_id`` repeated within a file.

The first occurrence (smallest line number) is kept; every later occurrence is rejected with
rule :data:`DUPLICATE_RULE`, naming the line of the first. Only rows that pass every other rule
take part: a row rejected for another reason is not loaded, so it makes no later row a
duplicate, and a row gets one reject only (its first failing rule).

Two levels, one algorithm (vectorised: dictionary-encode the ids and compare each code with the
running maximum, O(n), no sort and no Python loop per row):

* :func:`find_duplicates` inside one chunk (``etl.core.process`` calls it on the valid rows);
* :func:`duplicates_across_chunks` over the (already de-duplicated) chunks of a file, which run
  in parallel and so can only be compared once all are done (Finalize).

Shipped to Lambda: Python 3.9 compatible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as _pc

pc: Any = _pc

DUPLICATE_RULE = "duplicate"
# The output column whose values must be unique within a file.
ID_COLUMN = "transaction_id"

IdsLike = Union[pa.Array, pa.ChunkedArray, Sequence[Any]]


def duplicate_reason(value: str, first_line: int, column: str = ID_COLUMN) -> str:
    """The reject reason of a later occurrence (the rule code leads, as in the other reasons'
    column prefix, so the CSV reader and the rejects table can tell it apart)."""
    return f"{column}: {value!r} duplicates the transaction id of line {first_line} ({DUPLICATE_RULE})"


def _codes(ids: IdsLike) -> np.ndarray:
    """Integer codes, equal iff the ids are equal; nulls get -1 (never duplicates)."""
    arr = ids if isinstance(ids, (pa.Array, pa.ChunkedArray)) else pa.array(list(ids), pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], arr.type)
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64)
    enc = pc.dictionary_encode(arr)
    return np.asarray(enc.indices.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def find_duplicates(ids: IdsLike, lines: np.ndarray | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(later, first_line)``: positions of the rows whose id appeared on an earlier line, and
    for each the line of the first occurrence. ``lines`` are the rows' line numbers (unique;
    any order, ascending is the fast path). Nulls are ignored. ``later`` is sorted ascending.

    No sort on the fast path: ``dictionary_encode`` numbers the distinct values in order of
    first appearance, so in line order a row is a first occurrence iff its code exceeds every
    code before it, and code ``k``'s first row is the ``k``-th first occurrence.
    """
    codes = _codes(ids)
    line_arr = np.asarray(lines, dtype=np.int64)
    if codes.shape != line_arr.shape:
        raise ValueError(f"{codes.size} ids but {line_arr.size} lines")
    empty = np.zeros(0, dtype=np.int64)
    if codes.size < 2:
        return empty, empty
    if np.all(line_arr[1:] > line_arr[:-1]):
        return _later_in_order(codes, line_arr)
    order = np.argsort(line_arr, kind="stable")
    # re-number the codes by first appearance in line order
    reordered = codes[order]
    later_o, first_o = _later_in_order(_codes(pa.array(reordered, mask=reordered < 0)), line_arr[order])
    later = order[later_o]
    by_pos = np.argsort(later, kind="stable")
    return later[by_pos], first_o[by_pos]


def codes_of(ids: IdsLike) -> np.ndarray:
    """Integer codes of ``ids`` (equal iff the ids are equal, nulls -1): computed once for all
    rows of a chunk, e.g. on a worker thread while the rows are validated."""
    return _codes(ids)


def later_occurrences(codes: np.ndarray, lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`find_duplicates` from precomputed codes of rows in line order (any numbering,
    e.g. :func:`codes_of` over a superset of the rows): ``(later, first_line)``."""
    n = codes.size
    empty = np.zeros(0, dtype=np.int64)
    if n < 2:
        return empty, empty
    pos = np.arange(n, dtype=np.int64)
    present = codes >= 0
    first_pos = np.full(int(codes.max()) + 1 if present.any() else 1, n, dtype=np.int64)
    np.minimum.at(first_pos, codes[present], pos[present])
    later = np.flatnonzero(present & (first_pos[np.where(present, codes, 0)] != pos))
    return later, np.asarray(lines, dtype=np.int64)[first_pos[codes[later]]]


def _later_in_order(codes: np.ndarray, lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`find_duplicates` for rows in line order with codes numbered by first appearance
    (nulls = -1)."""
    seen_max = np.maximum.accumulate(codes)
    prev_max = np.empty_like(seen_max)
    prev_max[0] = -1
    prev_max[1:] = seen_max[:-1]
    present = codes >= 0
    first = present & (codes > prev_max)
    later = np.flatnonzero(present & ~first)
    first_rows = np.flatnonzero(first)  # first_rows[k] = row of code k's first occurrence
    return later, lines[first_rows[codes[later]]]


@dataclass(frozen=True)
class ChunkDuplicates:
    """Rows of one chunk to reject: ``positions`` index that chunk's (ids, lines) arrays."""

    chunk: int  # index into the ``chunks`` argument
    positions: np.ndarray
    lines: np.ndarray
    first_lines: np.ndarray


def duplicates_across_chunks(
    chunks: Sequence[tuple[IdsLike, np.ndarray | Sequence[int]]],
) -> list[ChunkDuplicates]:
    """Given each chunk's ``(transaction_id, line)`` arrays, the rows to reject per chunk
    (only chunks with any), keeping the first occurrence by line over the whole file."""
    if not chunks:
        return []
    id_parts: list[pa.Array] = []
    line_parts: list[np.ndarray] = []
    for ids, lines in chunks:
        arr = ids if isinstance(ids, (pa.Array, pa.ChunkedArray)) else pa.array(list(ids), pa.string())
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks() if arr.num_chunks else pa.array([], pa.string())
        id_parts.append(arr.cast(pa.string()))
        line_parts.append(np.asarray(lines, dtype=np.int64))
    sizes = np.array([len(p) for p in id_parts], dtype=np.int64)
    all_lines = np.concatenate(line_parts) if line_parts else np.zeros(0, dtype=np.int64)
    later, first_line = find_duplicates(pa.concat_arrays(id_parts), all_lines)
    if later.size == 0:
        return []
    offsets = np.concatenate(([0], np.cumsum(sizes)))
    owner = np.searchsorted(offsets, later, side="right") - 1
    out = []
    for k in np.unique(owner).tolist():
        sel = owner == k
        pos = later[sel] - offsets[k]
        out.append(ChunkDuplicates(int(k), pos, all_lines[later[sel]], first_line[sel]))
    return out
