"""Silero VAD v6 16 kHz weights: read out of ``silero_vad.onnx``, kept as a small safetensors file.

Standard library only: ``setup.py`` loads this file by path at build time (before numpy or affectlite can be
imported) to turn the 2.3 MB ONNX of the silero-vad wheel (8 kHz and 16 kHz branches, graph) into the 1.2 MB of
16 kHz float32 tensors affectlite runs; :mod:`affectlite.vad_silero` reads either file.

The ONNX reader handles only what reading Constant tensors needs: protobuf wire format (varint, fixed32/64,
length-delimited) and the ONNX field numbers ModelProto.graph=7; GraphProto.node=1; NodeProto.output=2,
op_type=4, attribute=5; AttributeProto.t=5, g=6, graphs=11; TensorProto.dims=1, data_type=2, float_data=4,
raw_data=9. The 16 kHz branch's Constant nodes are named ``BRANCH + <PyTorch parameter name>``.
"""

from __future__ import annotations

import json
import struct

BRANCH = "If_0_then_branch__Inline_0__"
#: Our tensor names -> (the ONNX Constant's parameter name, shape), in file order.
TENSORS: dict[str, tuple[str, tuple[int, ...]]] = {
    "stft": ("stft.forward_basis_buffer", (258, 1, 256)),
    "conv1.weight": ("encoder.0.reparam_conv.weight", (128, 129, 3)),
    "conv1.bias": ("encoder.0.reparam_conv.bias", (128,)),
    "conv2.weight": ("encoder.1.reparam_conv.weight", (64, 128, 3)),
    "conv2.bias": ("encoder.1.reparam_conv.bias", (64,)),
    "conv3.weight": ("encoder.2.reparam_conv.weight", (64, 64, 3)),
    "conv3.bias": ("encoder.2.reparam_conv.bias", (64,)),
    "conv4.weight": ("encoder.3.reparam_conv.weight", (128, 64, 3)),
    "conv4.bias": ("encoder.3.reparam_conv.bias", (128,)),
    "lstm.weight_ih": ("decoder.rnn.weight_ih", (512, 128)),
    "lstm.weight_hh": ("decoder.rnn.weight_hh", (512, 128)),
    "lstm.bias_ih": ("decoder.rnn.bias_ih", (512,)),
    "lstm.bias_hh": ("decoder.rnn.bias_hh", (512,)),
    "out.weight": ("decoder.decoder.2.weight", (1, 128, 1)),
    "out.bias": ("decoder.decoder.2.bias", (1,)),
}

#: ``{name: (shape, little-endian float32 bytes)}``
Tensors = dict[str, tuple[tuple[int, ...], bytes]]


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """``(field, wire_type, a, b)`` of one message: varint values in ``a``, payload ``buf[a:b]`` otherwise."""
    out = []
    i = start
    while i < end:
        key, i = _varint(buf, i)
        field, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
            out.append((field, wt, v, i))
        elif wt == 1:
            out.append((field, wt, i, i + 8))
            i += 8
        elif wt == 2:
            n, i = _varint(buf, i)
            out.append((field, wt, i, i + n))
            i += n
        elif wt == 5:
            out.append((field, wt, i, i + 4))
            i += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wt}")
    if i != end:
        raise ValueError("protobuf message overruns its length")
    return out


def _tensor(buf: bytes, a: int, b: int) -> tuple[tuple[int, ...], bytes]:
    dims: list[int] = []
    dtype = 0
    raw: bytes | None = None
    floats: list[bytes] = []  # float_data: packed (one payload) or one fixed32 per value, little-endian either way
    for f, wt, x, y in _fields(buf, a, b):
        if f == 1 and wt == 0:
            dims.append(x)
        elif f == 1 and wt == 2:  # packed dims
            j = x
            while j < y:
                d, j = _varint(buf, j)
                dims.append(d)
        elif f == 2 and wt == 0:
            dtype = x
        elif f == 4 and wt in (2, 5):
            floats.append(buf[x:y])
        elif f == 9 and wt == 2:
            raw = buf[x:y]
    if dtype != 1:  # TensorProto.FLOAT
        raise ValueError(f"tensor data type {dtype}, expected 1 (float32)")
    data = raw if raw is not None else b"".join(floats)
    count = 1
    for d in dims:
        count *= d
    if len(data) != 4 * count:
        raise ValueError(f"tensor of {len(data)} bytes, shape {dims}")
    return tuple(dims), data


def _constants(buf: bytes, a: int, b: int, out: dict[str, tuple[int, int]]) -> None:
    """Collect ``{output name: tensor span}`` of the Constant nodes of a graph and its subgraphs."""
    for f, wt, x, y in _fields(buf, a, b):
        if f != 1 or wt != 2:  # GraphProto.node
            continue
        outputs, op, attrs = [], b"", []
        for nf, nwt, nx, ny in _fields(buf, x, y):
            if nf == 2 and nwt == 2:
                outputs.append(buf[nx:ny].decode("utf-8", "replace"))
            elif nf == 4 and nwt == 2:
                op = buf[nx:ny]
            elif nf == 5 and nwt == 2:
                attrs.append((nx, ny))
        for ax, ay in attrs:
            for af, awt, vx, vy in _fields(buf, ax, ay):
                if awt != 2:
                    continue
                if af == 5 and op == b"Constant" and outputs:
                    out[outputs[0]] = (vx, vy)
                elif af in (6, 11):  # a subgraph (If branches)
                    _constants(buf, vx, vy, out)


def read_onnx(data: bytes) -> Tensors:
    """The 16 kHz tensors of a Silero VAD v6 ONNX file. Raises ValueError (damaged or another model)."""
    consts: dict[str, tuple[int, int]] = {}
    for f, wt, x, y in _fields(data, 0, len(data)):
        if f == 7 and wt == 2:  # ModelProto.graph
            _constants(data, x, y, consts)
    out: Tensors = {}
    for name, (onnx_name, shape) in TENSORS.items():
        span = consts.get(BRANCH + onnx_name)
        if span is None:
            raise ValueError(f"no constant {BRANCH + onnx_name}")
        dims, raw = _tensor(data, *span)
        if dims != shape:
            raise ValueError(f"{onnx_name}: shape {list(dims)}, expected {list(shape)}")
        out[name] = (dims, raw)
    return out


def pack(tensors: Tensors) -> bytes:
    """The tensors as a safetensors file (F32, in :data:`TENSORS` order; byte-for-byte deterministic)."""
    header: dict[str, object] = {}
    blobs = []
    pos = 0
    for name in TENSORS:
        shape, raw = tensors[name]
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [pos, pos + len(raw)]}
        blobs.append(raw)
        pos += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # keep the data 8-byte aligned
    return struct.pack("<Q", len(head)) + head + b"".join(blobs)


def unpack(data: bytes) -> Tensors:
    """The tensors of a :func:`pack` file. Raises ValueError (damaged, missing tensor or wrong shape)."""
    if len(data) < 8:
        raise ValueError("file too short")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError("header longer than the file")
    header = json.loads(data[8:8 + n])
    out: Tensors = {}
    for name, (_, shape) in TENSORS.items():
        meta = header.get(name) if isinstance(header, dict) else None
        if not isinstance(meta, dict) or meta.get("dtype") != "F32" or tuple(meta.get("shape", ())) != shape:
            raise ValueError(f"{name}: missing or not F32 {list(shape)}")
        a, b = meta["data_offsets"]
        raw = data[8 + n + a:8 + n + b]
        count = 1
        for d in shape:
            count *= d
        if len(raw) != 4 * count:
            raise ValueError(f"{name}: {len(raw)} bytes, expected {4 * count}")
        out[name] = (shape, raw)
    return out
