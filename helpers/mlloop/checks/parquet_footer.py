"""Column names and row count of a parquet file, read from its footer without pyarrow.

pyarrow imports numpy (a heavy start-up the CLI must not pay on every ``mlloop check``), while
``df_meta.parquet`` and the manifests only need their schema checked. A parquet file ends with
``<FileMetaData><4-byte length>PAR1``; FileMetaData is Thrift compact protocol, of which this
reads just enough: field 2 (the schema) and field 3 (num_rows).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"PAR1"
MAX_FOOTER_BYTES = 64 * 1024 * 1024


class ParquetError(ValueError):
    pass


@dataclass(frozen=True)
class ParquetInfo:
    columns: list[str]   # top-level column names, in order
    num_rows: int


def read_parquet_info(path: Path) -> ParquetInfo:
    """Top-level columns and row count; ``ParquetError`` with a plain reason if unreadable."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 12:
            raise ParquetError("too short to be a parquet file")
        fh.seek(0)
        if fh.read(4) != MAGIC:
            raise ParquetError("does not start with the parquet magic bytes PAR1")
        fh.seek(size - 8)
        tail = fh.read(8)
        if tail[4:] != MAGIC:
            raise ParquetError("does not end with PAR1 (truncated?)")
        length = struct.unpack("<I", tail[:4])[0]
        if length == 0 or length > min(MAX_FOOTER_BYTES, size - 12):
            raise ParquetError("its footer length is invalid (truncated or not written by a parquet writer)")
        fh.seek(size - 8 - length)
        footer = fh.read(length)
    try:
        meta = _Compact(footer).struct(stop_after=3)
    except (IndexError, struct.error, RecursionError) as exc:
        raise ParquetError(f"its footer cannot be decoded ({type(exc).__name__})") from None
    schema = meta.get(2)
    if not isinstance(schema, list) or not schema or not all(isinstance(e, dict) for e in schema):
        raise ParquetError("its footer has no schema")
    return ParquetInfo(_top_level_names(schema), int(meta.get(3) or 0))


def _top_level_names(schema: list[dict]) -> list[str]:
    # schema[0] is the root; its num_children (field 5) top-level columns follow depth-first.
    names, i = [], 1

    def skip(index: int) -> int:
        children = schema[index].get(5) or 0
        index += 1
        for _ in range(children):
            if index >= len(schema):
                raise ParquetError("its schema is inconsistent")
            index = skip(index)
        return index

    for _ in range(schema[0].get(5) or 0):
        if i >= len(schema):
            raise ParquetError("its schema is inconsistent")
        raw = schema[i].get(4)
        names.append(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw))
        i = skip(i)
    return names


class _Compact:
    """A minimal Thrift compact-protocol reader: structs become {field_id: value}."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def byte(self) -> int:
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > 70:
                raise IndexError("varint too long")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, kind: int):
        if kind in (1, 2):
            return kind == 1
        if kind == 3:
            return struct.unpack("b", bytes([self.byte()]))[0]
        if kind in (4, 5, 6):
            return self.zigzag()
        if kind == 7:
            v = struct.unpack("<d", self.data[self.pos:self.pos + 8])[0]
            self.pos += 8
            return v
        if kind == 8:
            n = self.varint()
            v = self.data[self.pos:self.pos + n]
            if len(v) != n:
                raise IndexError("binary runs past the footer")
            self.pos += n
            return v
        if kind in (9, 10):
            head = self.byte()
            size, elem = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            return [self.byte() == 1 if elem in (1, 2) else self.value(elem) for _ in range(size)]
        if kind == 11:
            size = self.varint()
            if not size:
                return {}
            kinds = self.byte()
            return {self._key(self.value(kinds >> 4)): self.value(kinds & 0x0F) for _ in range(size)}
        if kind == 12:
            return self.struct()
        raise IndexError(f"unknown thrift type {kind}")

    @staticmethod
    def _key(k):
        return k if isinstance(k, (int, bytes, str, bool, float)) else repr(k)

    def struct(self, stop_after: int | None = None) -> dict:
        out, last = {}, 0
        while True:
            head = self.byte()
            if head == 0:
                return out
            delta, kind = head >> 4, head & 0x0F
            fid = last + delta if delta else self.zigzag()
            last = fid
            out[fid] = self.value(kind)
            if stop_after is not None and fid >= stop_after:
                return out
