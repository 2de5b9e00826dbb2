"""Pure-Python reader for R's lazy-load data format (`Rdata.rdx` + `Rdata.rdb`).

Holds just enough of R's XDR serialization (R Internals, "Serialization formats"; R's
src/main/serialize.c) to read data packages such as janeaustenr without R:

- `Rdata.rdx` is a gzip'd serialized named list; its `variables` element maps each object name
  to an (offset, length) pair into `Rdata.rdb`, `compressed` names the codec.
- each `.rdb` record is a 4-byte big-endian uncompressed length, then (codec type byte for
  xz/bzip2/none) the compressed serialized object.

Supported items: NULL / global env / empty env markers, back-references to symbols, symbols,
pairlists, CHARSXP (NA = None), logical / integer / real / character vectors and lists, with
attributes and tags. Mapping to Python: character vector -> list[str | None], logical / integer
vector -> list[int | None] (logicals as bool), real -> list[float], list -> list, or dict when it
has a `names` attribute; other attributes are dropped. Anything else (environments, closures,
ALTREP, S4, ...) raises ValueError. It does not write R data (the tests hold a tiny writer).
"""

import bz2
import gzip
import lzma
import struct
import zlib
from pathlib import Path

# SEXP types (R Internals, section 1.1) and serialization pseudo-types (serialize.c)
SYMSXP, LISTSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP = 1, 2, 9, 10, 13, 14, 16, 19
REFSXP, NILVALUE_SXP, GLOBALENV_SXP, EMPTYENV_SXP = 255, 254, 253, 242
NA_INTEGER = -(2**31)  # R's NA for integers and logicals
# CHARSXP encoding bits live in the "levels" field (flags >> 12)
LATIN1_MASK, BYTES_MASK, UTF8_MASK, ASCII_MASK = 1 << 2, 1 << 1, 1 << 3, 1 << 6


class Symbol(str):
    """An R symbol (a name), kept distinct from a plain string value."""


class _Reader:
    """Cursor over one XDR-serialized object; `read_item` is the recursive decoder."""

    def __init__(self, buf: bytes):
        self.buf, self.pos = buf, 0
        self.refs = []  # reference table: symbols, in first-seen order (REFSXP index is 1-based)

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise ValueError(f"truncated R serialization: need {n} bytes at offset {self.pos}")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def length(self) -> int:
        n = self.int()
        if n == -1:  # long vector: two int32 halves follow
            hi, lo = struct.unpack(">II", self.take(8))
            n = (hi << 32) | lo
        return n

    def header(self):
        fmt = self.take(2)
        if fmt != b"X\n":
            raise ValueError(f"unsupported R serialization format {fmt!r} (only XDR 'X\\n' is read)")
        version, _writer, _min_reader = self.int(), self.int(), self.int()
        if version == 3:
            self.take(self.int())  # native encoding name, e.g. b"UTF-8"
        elif version != 2:
            raise ValueError(f"unsupported R serialization version {version}")

    def read_item(self):
        flags = self.int()
        kind = flags & 0xFF
        has_attr, has_tag = bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if kind in (NILVALUE_SXP, GLOBALENV_SXP, EMPTYENV_SXP):
            return None  # environments are only markers here; we never need their contents
        if kind == REFSXP:
            idx = flags >> 8 or self.int()  # packed index, or in the next int when it is zero
            return self.refs[idx - 1]
        if kind == SYMSXP:
            sym = Symbol(self.read_item() or "")  # its print name is a CHARSXP
            self.refs.append(sym)
            return sym
        if kind == LISTSXP:
            return self.read_pairlist(flags)
        if kind == CHARSXP:
            return self.read_charsxp(flags)
        if kind in (LGLSXP, INTSXP):
            n = self.length()
            vals = [None if v == NA_INTEGER else v for v in struct.unpack(f">{n}i", self.take(4 * n))]
            value = [None if v is None else bool(v) for v in vals] if kind == LGLSXP else vals
        elif kind == REALSXP:
            n = self.length()
            value = list(struct.unpack(f">{n}d", self.take(8 * n)))  # NA / NaN stay float NaN
        elif kind == STRSXP:
            value = [self.read_item() for _ in range(self.length())]
        elif kind == VECSXP:
            value = [self.read_item() for _ in range(self.length())]
        else:
            raise ValueError(f"unsupported R item type {kind} (flags 0x{flags:x}) at offset {self.pos - 4}")
        attrs = self.read_item() if has_attr else None  # attributes follow the data, as a pairlist
        names = attrs.get("names") if isinstance(attrs, dict) else None
        if kind == VECSXP and names is not None:
            return dict(zip(names, value))
        return value

    def read_pairlist(self, flags: int):
        # a pairlist is a chain of (attr?, tag?, car, cdr) cells; walk the cdr chain iteratively
        keys, vals = [], []
        while True:
            if flags & (1 << 9):
                self.read_item()  # attributes on a pairlist cell: not needed
            keys.append(self.read_item() if flags & (1 << 10) else None)
            vals.append(self.read_item())
            flags = self.int()  # the cdr: another cell, or the NULL that ends the chain
            if flags & 0xFF != LISTSXP:
                self.pos -= 4
                self.read_item()  # usually NILVALUE; anything else is a dotted pair we drop
                break
        if all(k is not None for k in keys):
            return {str(k): v for k, v in zip(keys, vals)}
        return vals

    def read_charsxp(self, flags: int):
        n = self.int()
        if n == -1:
            return None  # NA_character_
        raw = self.take(n)
        levels = flags >> 12
        if levels & LATIN1_MASK:
            return raw.decode("latin-1")
        if levels & (UTF8_MASK | ASCII_MASK):
            return raw.decode("utf-8")
        try:  # native or "bytes" encoding: UTF-8 in practice, latin-1 as a lossless fallback
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")


def unserialize(buf: bytes):
    """Decode one XDR-serialized R object (the bytes of a `.rds` / lazy-load record)."""
    reader = _Reader(buf)
    reader.header()
    return reader.read_item()


def _decompress(record: bytes, compressed) -> bytes:
    """Undo R's R_compress1/2/3 framing: 4-byte big-endian length, [type byte], payload."""
    (size,) = struct.unpack(">I", record[:4])
    if compressed is True or compressed == 1:  # zlib, no type byte
        out = zlib.decompress(record[4:])
    else:
        codec, payload = record[4:5], record[5:]
        if codec == b"Z":  # raw LZMA2 stream, xz preset 6 options (serialize.c: init_filters)
            out = lzma.decompress(payload, format=lzma.FORMAT_RAW,
                                  filters=[{"id": lzma.FILTER_LZMA2, "preset": 6}])
        elif codec == b"2":
            out = bz2.decompress(payload)
        elif codec == b"1":
            out = zlib.decompress(payload)
        elif codec == b"0":
            out = payload
        else:
            raise ValueError(f"unknown lazy-load codec byte {codec!r}")
    if len(out) != size:
        raise ValueError(f"lazy-load record inflated to {len(out)} bytes, header says {size}")
    return out


def _read_index(rdx_path) -> dict:
    index = unserialize(gzip.decompress(Path(rdx_path).read_bytes()))
    if not isinstance(index, dict) or "variables" not in index:
        raise ValueError(f"{rdx_path}: not a lazy-load index (no `variables` element)")
    return index


def _load(rdx_path: Path, index: dict, name: str):
    offset, length = (int(v) for v in index["variables"][name])
    with open(rdx_path.with_suffix(".rdb"), "rb") as f:
        f.seek(offset)
        record = f.read(length)
    compressed = index.get("compressed", [True])
    compressed = compressed[0] if isinstance(compressed, list) else compressed
    return unserialize(_decompress(record, compressed))


def load_object(rdx_path, name: str):
    """Read one object `name` from a lazy-load database (`X.rdx`, with `X.rdb` beside it)."""
    rdx_path = Path(rdx_path)
    index = _read_index(rdx_path)
    if name not in index["variables"]:
        raise KeyError(f"{name!r} not in {rdx_path}; has {sorted(index['variables'])}")
    return _load(rdx_path, index, name)


def read_lazyload(rdx_path) -> dict:
    """Read every object of a lazy-load database into {name: value}."""
    rdx_path = Path(rdx_path)
    index = _read_index(rdx_path)
    return {name: _load(rdx_path, index, name) for name in index["variables"]}
