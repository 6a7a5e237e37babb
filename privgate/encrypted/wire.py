"""Check a serialized TenSEAL CKKS tensor's structure before TenSEAL parses it.

TenSEAL 0.3.18 crashes the process (SIGSEGV) on some malformed tensor payloads, such as
empty bytes or a protobuf holding no ciphertext, instead of raising. A server parsing
untrusted bytes must therefore not hand them over unchecked. This module reads the
protobuf wire format of TenSEAL's `CKKSTensorProto` and lets through only:

    1: shape        packed uint32, exactly the expected shape
    2: ciphertexts  bytes, one per tensor element, each a SEAL-serialized object whose
                    header (magic 0xA15E, 16-byte header, known compression, declared
                    size equal to its length) checks out and whose size is bounded
    3: scale        double, exactly the expected scale
    4: batch_size   uint32, 1 .. slots

with no other field and no field repeated (but 2). SEAL then validates each
ciphertext against the context (`is_valid_for`) when TenSEAL loads it.
The errors name the field, never its content.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from privgate.encrypted.params import PayloadError

_SEAL_MAGIC = 0xA15E
_SEAL_HEADER = struct.Struct("<HBBBBHQ")  # magic, header size, major, minor, compr, reserved, size
_SEAL_COMPRESSION = (0, 1, 2)  # none, zlib, zstd
_WIRE_VARINT, _WIRE_FIXED64, _WIRE_BYTES = 0, 1, 2


@dataclass(frozen=True)
class TensorLayout:
    """What a tensor payload must be: its shape, scale, and bounds."""

    shape: tuple[int, ...]
    scale: float
    max_batch: int
    max_ciphertext_bytes: int


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    for _ in range(10):
        if at >= len(data):
            raise PayloadError(400, "the ciphertext payload is truncated")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7
    raise PayloadError(400, "the ciphertext payload is malformed (overlong varint)")


def check_tensor(data: bytes, layout: TensorLayout) -> int:
    """Check `data` is a CKKS tensor of `layout`; return its batch size (records).

    Raises:
        PayloadError: 400 for a malformed or truncated payload, 422 for a well-formed
            one of the wrong shape, scale or batch.
    """
    at, end = 0, len(data)
    shape: list[int] | None = None
    ciphertexts = 0
    scale: float | None = None
    batch: int | None = None
    while at < end:
        key, at = _varint(data, at)
        field, wire = key >> 3, key & 7
        if field == 1 and wire == _WIRE_BYTES and shape is None:
            length, at = _varint(data, at)
            stop = at + length
            if stop > end:
                raise PayloadError(400, "the ciphertext payload is truncated (shape)")
            shape = []
            while at < stop:
                dim, at = _varint(data, at)
                shape.append(dim)
            if at != stop:
                raise PayloadError(400, "the ciphertext payload is malformed (shape)")
        elif field == 2 and wire == _WIRE_BYTES:
            length, at = _varint(data, at)
            if at + length > end:
                raise PayloadError(400, "the ciphertext payload is truncated (ciphertext)")
            _check_seal_object(data, at, length, layout.max_ciphertext_bytes)
            at += length
            ciphertexts += 1
        elif field == 3 and wire == _WIRE_FIXED64 and scale is None:
            if at + 8 > end:
                raise PayloadError(400, "the ciphertext payload is truncated (scale)")
            (scale,) = struct.unpack_from("<d", data, at)
            at += 8
        elif field == 4 and wire == _WIRE_VARINT and batch is None:
            batch, at = _varint(data, at)
        else:
            raise PayloadError(400, "the ciphertext payload is not a CKKS tensor")
    if shape is None or scale is None or batch is None:
        raise PayloadError(400, "the ciphertext payload is not a batched CKKS tensor")
    if tuple(shape) != layout.shape:
        raise PayloadError(
            422,
            f"the payload holds a tensor of shape {shape}; this model takes {list(layout.shape)} "
            f"(one ciphertext per encoded feature, {layout.shape[-1]} features)",
        )
    expected = 1
    for dim in layout.shape:
        expected *= dim
    if ciphertexts != expected:
        raise PayloadError(
            400, f"the payload holds {ciphertexts} ciphertexts for a shape of {expected}"
        )
    if scale != layout.scale:
        raise PayloadError(422, "the payload's scale is not the model's")
    if not 1 <= batch <= layout.max_batch:
        raise PayloadError(
            422, f"the payload's batch must hold 1 to {layout.max_batch} records, not {batch}"
        )
    return batch


def _check_seal_object(data: bytes, at: int, length: int, bound: int) -> None:
    if length > bound:
        raise PayloadError(413, f"a ciphertext of {length} bytes exceeds the {bound}-byte bound")
    if length < _SEAL_HEADER.size:
        raise PayloadError(400, "a ciphertext is truncated (no SEAL header)")
    magic, header_size, major, _minor, compression, reserved, size = _SEAL_HEADER.unpack_from(
        data, at
    )
    if (
        magic != _SEAL_MAGIC
        or header_size != _SEAL_HEADER.size
        or major != 4
        or compression not in _SEAL_COMPRESSION
        or reserved != 0
    ):
        raise PayloadError(400, "a ciphertext is not a SEAL ciphertext")
    if size != length:
        raise PayloadError(400, "a ciphertext is truncated or padded (its SEAL size differs)")
