"""Single-file checkpoints, fj.save and fj.restore (API.md section 9): bit-exact round trips for
every dtype, the documented safetensors layout, every bad input (an error naming the file and
the variable, and no variable changed). fj.Checkpoint's numbered, asynchronous checkpoints on
orbax: tests/compiler/test_checkpointing.py."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from flowjit.ir.errors import CheckpointError
from flowjit.ir.types import DTYPE_NAMES, bfloat16
from flowjit.runtime.variables import VariableCell

import flowjit as fj


_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
# +0, -0, +inf, -inf, quiet NaN with a payload, negative quiet NaN, signalling NaN, and the
# smallest subnormal, as bit patterns of each float width.
_SPECIAL_BITS = {
    "f16": [0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E01, 0xFE03, 0x7C01, 0x0001],
    "bf16": [0x0000, 0x8000, 0x7F80, 0xFF80, 0x7FC1, 0xFFC3, 0x7F81, 0x0001],
    "f32": [0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00001, 0xFFC00003, 0x7F800001, 1],
    "f64": [
        0,
        0x8000000000000000,
        0x7FF0000000000000,
        0xFFF0000000000000,
        0x7FF8000000000001,
        0xFFF8000000000003,
        0x7FF0000000000001,
        1,
    ],
}


def bits(array: object) -> np.ndarray:
    """The raw bits of an array, so NaN payloads and -0.0 compare exactly."""
    array = np.asarray(array)
    return array.view(_UINT[array.dtype.itemsize])


def random_values(dtype: np.dtype, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random bit patterns of ``dtype`` (NaNs and infinities included for floats)."""
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    size = int(np.prod(shape)) * dtype.itemsize
    return np.frombuffer(rng.bytes(size), dtype).reshape(shape).copy()


def snapshot(cells: list[VariableCell]) -> list[np.ndarray]:
    return [bits(cell).copy() for cell in cells]


def assert_holds(cell: VariableCell, expected: np.ndarray) -> None:
    assert cell.value.dtype == expected.dtype and cell.shape == expected.shape
    np.testing.assert_array_equal(bits(cell), bits(expected))


def assert_unchanged(cells: list[VariableCell], before: list[np.ndarray]) -> None:
    for cell, old in zip(cells, before, strict=True):
        np.testing.assert_array_equal(bits(cell), old, err_msg=cell.name)


def read_layout(raw: bytes) -> tuple[dict, int]:
    """The header and the offset of the data, read by the safetensors spec alone."""
    (size,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + size]), 8 + size


# -- round trips -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "dtype_name",  # (64-bit variables need jax_enable_x64, tests/conftest.py)
    [pytest.param(n, marks=[pytest.mark.x64] * (d.itemsize == 8)) for n, d in DTYPE_NAMES.items()],
)
def test_round_trip_is_bit_exact(tmp_path, dtype_name):
    dtype = DTYPE_NAMES[dtype_name]
    rng = np.random.default_rng(len(dtype_name) * 31 + dtype.itemsize)
    expected = {
        "matrix": random_values(dtype, (5, 7), rng),
        "scalar": random_values(dtype, (), rng),
        "empty": random_values(dtype, (0, 3), rng),
    }
    if dtype_name in _SPECIAL_BITS:
        expected["special"] = np.array(_SPECIAL_BITS[dtype_name], _UINT[dtype.itemsize]).view(dtype)
    path = tmp_path / "model.safetensors"
    fj.save(path, [VariableCell(value, name=name) for name, value in expected.items()])
    targets = [VariableCell(np.zeros(v.shape, dtype), name=n) for n, v in expected.items()]
    fj.restore(path, targets)
    for cell in targets:
        assert_holds(cell, expected[cell.name])


@pytest.mark.x64  # (64-bit variables among them)
def test_all_dtypes_in_one_file_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    expected = {name: random_values(dt, (3, 5), rng) for name, dt in DTYPE_NAMES.items()}
    cells = [VariableCell(value, name=name) for name, value in expected.items()]
    fj.save(str(tmp_path / "all"), cells)
    for cell in cells:
        cell.set_value(np.ones(cell.shape, cell.dtype))
    fj.restore(str(tmp_path / "all"), cells)
    for cell in cells:
        assert_holds(cell, expected[cell.name])


def test_file_is_documented_safetensors(tmp_path):
    rng = np.random.default_rng(1)
    w = random_values(np.dtype(np.float32), (4, 3), rng)
    h = random_values(bfloat16, (5,), rng)
    n = random_values(np.dtype(np.int32), (2, 2), rng)
    path = tmp_path / "x.safetensors"
    fj.save(path, [VariableCell(w, name="w"), VariableCell(h, name="h"), VariableCell(n, name="n")])
    raw = path.read_bytes()
    header, data_start = read_layout(raw)
    assert data_start % 8 == 0  # the header is space-padded so the data starts aligned
    metadata = header.pop("__metadata__")
    assert metadata["format"] == "flowjit.checkpoint" and metadata["version"] == "2"
    expected = {
        "w": ("F32", w.astype("<f4").tobytes()),
        "h": ("BF16", h.view(np.uint16).astype("<u2").tobytes()),
        "n": ("I32", n.astype("<i4").tobytes()),
    }
    assert sorted(header) == sorted(expected)
    spans = []
    for name, (code, data) in expected.items():
        begin, end = header[name]["data_offsets"]
        assert header[name]["dtype"] == code
        assert header[name]["shape"] == list({"w": w, "h": h, "n": n}[name].shape)
        assert raw[data_start + begin : data_start + end] == data
        assert metadata[f"sha256:{name}"] == hashlib.sha256(data).hexdigest()
        spans.append((begin, end))
    # The tensors tile the data exactly, as safetensors requires.
    spans.sort()
    assert spans[0][0] == 0 and spans[-1][1] == len(raw) - data_start
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    # The header checksum covers the canonical JSON of each tensor's dtype and shape and of the
    # metadata without that checksum.
    meaning = {
        "tensors": {name: [info["dtype"], info["shape"]] for name, info in header.items()},
        "__metadata__": {k: v for k, v in metadata.items() if k != "header_sha256"},
    }
    canonical = json.dumps(meaning, sort_keys=True, separators=(",", ":"))
    assert metadata["header_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()


def test_the_safetensors_library_reads_it(tmp_path):
    from safetensors.numpy import load_file

    h = np.array([1.5, -0.0, np.nan], bfloat16)
    fj.save(tmp_path / "x", [VariableCell(h, name="h"), VariableCell(np.int32(7), name="n")])
    loaded = load_file(tmp_path / "x")
    np.testing.assert_array_equal(bits(loaded["h"]), bits(h))
    assert loaded["n"].shape == () and int(loaded["n"]) == 7


def test_dict_form_names_tensors_by_key(tmp_path):
    a = VariableCell(np.arange(4, dtype=np.float32), name="a")
    b = VariableCell(np.int32(9), name="b")
    path = tmp_path / "d"
    fj.save(path, {"encoder/w": a, "step": b})
    header, _ = read_layout(path.read_bytes())
    assert sorted(k for k in header if k != "__metadata__") == ["encoder/w", "step"]
    other_a = VariableCell(np.zeros(4, np.float32), name="unrelated")
    other_b = VariableCell(np.int32(0), name="also unrelated")
    fj.restore(path, {"encoder/w": other_a, "step": other_b})
    assert_holds(other_a, np.arange(4, dtype=np.float32))
    assert_holds(other_b, np.array(9, np.int32))


def test_nested_dicts_and_modules_are_saved_by_path(tmp_path):
    class Block(fj.Module):
        def __init__(self, scale):
            self.norm = {"scale": fj.Variable(np.full(2, scale, np.float32))}

    class Net(fj.Module):
        def __init__(self):
            self.blocks = [Block(1.0), Block(2.0)]

    net, step = Net(), VariableCell(np.int32(7), name="step")
    fj.save(tmp_path / "n", {"model": net, "opt": {"step": step, "slots": [net.variables[0]]}})
    header, _ = read_layout((tmp_path / "n").read_bytes())
    assert sorted(k for k in header if k != "__metadata__") == [
        "model/blocks/0/norm/scale",
        "model/blocks/1/norm/scale",
        "opt/slots/0",
        "opt/step",
    ]
    fj.save(tmp_path / "m", net)  # a module alone: its own paths
    for v in net.variables:
        v.assign(np.zeros(2, np.float32))
    fj.restore(tmp_path / "m", net)
    assert_holds(net.blocks[1].norm["scale"], np.full(2, 2.0, np.float32))
    with pytest.raises(CheckpointError, match=r"the key 1\.5 under 'a'"):
        fj.save(tmp_path / "x", {"a": {1.5: step}})
    with pytest.raises(CheckpointError, match="'a/b' is a int, not a Variable"):
        fj.save(tmp_path / "x", {"a": {"b": 3}})
    assert not (tmp_path / "x").exists()


@pytest.mark.x64  # (an int64 variable)
def test_restore_a_subset_leaves_other_variables_alone(tmp_path):
    a = VariableCell(np.full(3, 2.5, np.float32), name="a")
    b = VariableCell(np.full(2, 7, np.int64), name="b")
    fj.save(tmp_path / "s", [a, b])
    a.set_value(np.zeros(3, np.float32))
    b.set_value(np.zeros(2, np.int64))
    fj.restore(tmp_path / "s", [a])
    assert_holds(a, np.full(3, 2.5, np.float32))
    assert_holds(b, np.zeros(2, np.int64))


def test_save_replaces_an_existing_file(tmp_path):
    w = VariableCell(np.ones(3, np.float32), name="w")
    fj.save(tmp_path / "r", [w])
    w.set_value(np.full(3, 4.0, np.float32))
    fj.save(tmp_path / "r", [w])
    w.set_value(np.zeros(3, np.float32))
    fj.restore(tmp_path / "r", [w])
    assert_holds(w, np.full(3, 4.0, np.float32))
    assert os.listdir(tmp_path) == ["r"]


def test_failed_save_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    w = VariableCell(np.ones(3, np.float32), name="w")
    path = tmp_path / "f.safetensors"
    fj.save(path, [w])
    before = path.read_bytes()

    def failing_fsync(fd):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    w.set_value(np.zeros(3, np.float32))
    with pytest.raises(OSError, match="disk on fire"):
        fj.save(path, [w])
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [path.name]


# -- bad input: an error naming file and variable, and no variable changed ------------------------
@pytest.fixture
def saved(tmp_path):
    """A checkpoint of w (f32), h (bf16), n (i32), and fresh variables of the same types holding
    other values, to restore into."""
    rng = np.random.default_rng(3)
    types = {"w": ((4, 8), np.dtype(np.float32)), "h": ((16,), bfloat16), "n": ((3,), np.int32)}
    path = tmp_path / "ckpt.safetensors"
    fj.save(
        path,
        [VariableCell(random_values(np.dtype(t), s, rng), name=n) for n, (s, t) in types.items()],
    )
    targets = [
        VariableCell(random_values(np.dtype(t), s, rng), name=n) for n, (s, t) in types.items()
    ]
    return path, targets


def expect_restore_error(path, targets, names: list[str]) -> CheckpointError:
    """Restoring fails with a CheckpointError naming ``path`` and ``names``; nothing changed."""
    before = snapshot(targets)
    with pytest.raises(CheckpointError) as err:
        fj.restore(path, targets)
    message = str(err.value)
    assert str(path) in message
    for name in names:
        assert repr(name) in message
    assert_unchanged(targets, before)
    return err.value


def covering_tensor(raw: bytes, cut: int) -> str:
    """The tensor whose bytes include file offset ``cut`` (by the spec, not by flowjit)."""
    header, data_start = read_layout(raw)
    for name, info in header.items():
        begin, end = info.get("data_offsets", (0, 0)) if name != "__metadata__" else (0, 0)
        if data_start + begin <= cut < data_start + end:
            return name
    raise AssertionError(f"no tensor covers offset {cut}")


def test_truncated_file_is_an_error_naming_the_cut_tensor(saved):
    path, targets = saved
    raw = path.read_bytes()
    _, data_start = read_layout(raw)
    for cut in [data_start + 1, (data_start + len(raw)) // 2, len(raw) - 1]:
        path.write_bytes(raw[:cut])
        error = expect_restore_error(path, targets, [covering_tensor(raw, cut)])
        assert "truncated" in str(error)


@pytest.mark.parametrize("keep", ["nothing", "half the length", "the length", "half the header"])
def test_file_truncated_before_its_data_is_an_error_naming_every_variable(saved, keep):
    path, targets = saved
    raw = path.read_bytes()
    _, data_start = read_layout(raw)
    cut = {"nothing": 0, "half the length": 4, "the length": 8, "half the header": data_start // 2}
    path.write_bytes(raw[: cut[keep]])
    expect_restore_error(path, targets, ["w", "h", "n"])


@pytest.mark.parametrize("name", ["w", "h", "n"])
def test_flipped_data_byte_is_an_error_naming_that_tensor(saved, name):
    path, targets = saved
    raw = bytearray(path.read_bytes())
    header, data_start = read_layout(bytes(raw))
    begin, end = header[name]["data_offsets"]
    raw[data_start + (begin + end) // 2] ^= 0x10
    path.write_bytes(bytes(raw))
    error = expect_restore_error(path, targets, [name])
    assert "checksum" in str(error)


# (text to find, offset from it): a byte of a name, of a dtype, a shape digit, an offset digit,
# a hex digit of the header checksum; None: the length field, and the header's last byte.
_HEADER_SPOTS = {
    "name": ('"w":', 1),
    "dtype": ('"BF16"', 2),
    "shape": ('"shape":[', 9),
    "offset": ('"data_offsets":[', 16),
    "checksum": ('"header_sha256":"', 20),
    "length": (None, 0),
    "last": (None, -1),
}


@pytest.mark.parametrize("spot", list(_HEADER_SPOTS))
def test_flipped_header_byte_is_an_error(saved, spot):
    path, targets = saved
    raw = bytearray(path.read_bytes())
    (size,) = struct.unpack("<Q", raw[:8])
    text, delta = _HEADER_SPOTS[spot]
    if text is None:
        offset = delta % (8 + size)
    else:
        offset = 8 + raw[8 : 8 + size].decode().index(text) + delta
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))
    expect_restore_error(path, targets, ["w", "h", "n"])


def test_missing_variable_is_an_error_naming_it(saved):
    path, targets = saved
    extra = VariableCell(np.zeros(2, np.float32), name="bias")
    error = expect_restore_error(path, [*targets, extra], ["bias"])
    assert "not in the checkpoint" in str(error)


def test_shape_mismatch_is_an_error_naming_the_variable(saved):
    path, targets = saved
    # The last one, so that restoring the valid ones first would show as a change.
    targets[-1] = VariableCell(np.ones((1, 3), np.int32), name="n")
    error = expect_restore_error(path, targets, ["n"])
    assert "i32[3]" in str(error) and "i32[1,3]" in str(error)


def test_dtype_mismatch_is_an_error_naming_the_variable(saved):
    path, targets = saved
    targets[1] = VariableCell(np.ones(16, np.float32), name="h")
    error = expect_restore_error(path, targets, ["h"])
    assert "bf16[16]" in str(error) and "f32[16]" in str(error)


def plain_safetensors(metadata: dict | None) -> bytes:
    """A valid safetensors file of one f32[2] tensor "w", written by hand from the spec."""
    header = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + np.ones(2, "<f4").tobytes()


@pytest.mark.parametrize(
    "content",
    [
        b"hello, this is a text file and not a checkpoint at all\n" * 20,
        b'{"w": [1, 2, 3]}',
        plain_safetensors(None),
        plain_safetensors({"format": "pt"}),
    ],
    ids=["text", "json", "safetensors without metadata", "safetensors of another tool"],
)
def test_not_a_checkpoint_is_an_error(tmp_path, content):
    path = tmp_path / "other.bin"
    path.write_bytes(content)
    w = VariableCell(np.zeros(2, np.float32), name="w")
    expect_restore_error(path, [w], ["w"])


def test_missing_file_is_file_not_found(tmp_path):
    w = VariableCell(np.zeros(2, np.float32), name="w")
    with pytest.raises(FileNotFoundError):
        fj.restore(tmp_path / "absent", [w])
    assert_holds(w, np.zeros(2, np.float32))


def test_duplicate_names_are_an_error(saved, tmp_path):
    path, targets = saved
    twin = VariableCell(np.zeros(3, np.int32), name="n")
    new_path = tmp_path / "dup"
    with pytest.raises(CheckpointError, match="two variables are named 'n'") as err:
        fj.save(new_path, [*targets, twin])
    assert str(new_path) in str(err.value)
    assert not new_path.exists()
    expect_restore_error(path, [*targets, twin], ["n"])


def test_variables_argument_must_be_a_list_or_dict(tmp_path):
    w = VariableCell(np.zeros(2, np.float32), name="w")
    with pytest.raises(CheckpointError, match="wrap a single variable in a list"):
        fj.save(tmp_path / "x", w)
    with pytest.raises(CheckpointError, match="is a ndarray, not a Variable"):
        fj.save(tmp_path / "x", {"w": np.zeros(2)})
    with pytest.raises(CheckpointError, match="item 1 of the list is a ndarray, not a Variable"):
        fj.save(tmp_path / "x", [w, np.zeros(2)])
    assert os.listdir(tmp_path) == []


def test_a_bare_file_name_saves_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    w = VariableCell(np.arange(3, dtype=np.int16), name="w")
    fj.save("model.safetensors", [w])
    assert os.listdir(tmp_path) == ["model.safetensors"]
    w.set_value(np.zeros(3, np.int16))
    fj.restore("model.safetensors", [w])
    assert_holds(w, np.arange(3, dtype=np.int16))


# -- hostile headers (issue 20, item 7) ---------------------------------------------------------
# numpy's limit on the dimensions of an array, which flowjit's checkpoints follow.
NUMPY_MAX_RANK = 64


def forged(path: Path, entry: dict, data: bytes = b"\0" * 4, **metadata: str) -> Path:
    """A checkpoint of one tensor "w" with header ``entry`` and bytes ``data``, its checksums
    right, written from docs/checkpoints.md alone as format version 1 (flowjit's hand-written
    files, before the safetensors library wrote them; still read): whatever it holds, only its
    meaning can be wrong."""
    meta = {"format": "flowjit.checkpoint", "version": "1", **metadata}
    meta["sha256:w"] = hashlib.sha256(data).hexdigest()
    header = {"w": entry, "__metadata__": meta}
    canonical = json.dumps(header, sort_keys=True, separators=(",", ":"))
    meta["header_sha256"] = hashlib.sha256(canonical.encode()).hexdigest()
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    return path


def f32_entry(shape: list, offsets: list | None = None, dtype: object = "F32") -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": offsets or [0, 4]}


def test_a_forged_checkpoint_of_the_most_dimensions_restores(tmp_path):
    """(So that the errors below come from the limits, not from the forging.)"""
    shape = [1] * NUMPY_MAX_RANK
    path = forged(tmp_path / "c", f32_entry(shape), np.float32(2.5).tobytes())
    w = VariableCell(np.zeros(shape, np.float32), name="w")
    fj.restore(path, [w])
    assert_holds(w, np.full(shape, 2.5, np.float32))


@pytest.mark.parametrize("rank, dim", [(NUMPY_MAX_RANK + 1, 1), (160_000, 1)])
def test_a_shape_of_more_dimensions_is_an_error_naming_the_tensor(tmp_path, rank, dim):
    """160,000 dimensions of 1 were numpy's ValueError."""
    path = forged(tmp_path / "c", f32_entry([dim] * rank))
    w = VariableCell(np.zeros(2, np.float32), name="w")
    error = expect_restore_error(path, [w], ["w"])
    assert f"its shape has {rank} dimensions; a tensor has at most 64" in str(error)


@pytest.mark.parametrize(
    "shape", [[2**63], [2**40, 2**40], [10**4000], [2**62] * 160_000, [2**61, 1]]
)
def test_a_shape_of_too_many_bytes_is_an_error(tmp_path, shape):
    """160,000 dimensions of 2**62 once took 140 s (the element count's product); safetensors
    refuses a shape whose bytes overflow, or do not match the data offsets, as it opens it."""
    path = forged(tmp_path / "c", f32_entry(shape))
    w = VariableCell(np.zeros(2, np.float32), name="w")
    error = expect_restore_error(path, [w], ["w"])
    assert "not a valid safetensors file" in str(error) and len(str(error)) < 600


@pytest.mark.parametrize(
    "entry",
    [
        f32_entry([1], dtype=["F32"] * 1_000_000),
        f32_entry([1], dtype="F" * 1_000_000),
        f32_entry([1], offsets=[0] * 1_000_000),
        f32_entry([[1] * 1_000_000]),
        f32_entry([1], dtype="F8_E4M3"),
    ],
    ids=["dtype-list", "long-dtype", "long-offsets", "nested-shape", "dtype-flowjit-lacks"],
)
def test_a_malformed_entry_is_a_short_error_naming_the_tensor(tmp_path, entry):
    """A dtype that is a list was a TypeError (unhashable); the others quoted the whole value."""
    path = forged(tmp_path / "c", entry)
    w = VariableCell(np.zeros(1, np.float32), name="w")
    error = expect_restore_error(path, [w], ["w"])
    assert len(str(error)) < 600, str(error)[:1000]


def test_an_entry_with_a_key_safetensors_ignores_restores(tmp_path):
    """Its data and checksums are right; safetensors reads past the extra key."""
    entry = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": "y" * 1_000_000}
    path = forged(tmp_path / "c", entry, np.float32(3.0).tobytes())
    w = VariableCell(np.zeros(1, np.float32), name="w")
    fj.restore(path, [w])
    assert_holds(w, np.full(1, 3.0, np.float32))


@pytest.mark.parametrize(
    "header",
    [b'{"w": ' + b"9" * 5000 + b"}", b"[" * 100_000 + b"]" * 100_000],
    ids=["5000-digit-integer", "lists-nested-100000-deep"],
)
def test_a_header_json_cannot_read_is_an_error(tmp_path, header):
    """Were a ValueError (int() of too many digits) and a RecursionError."""
    header += b" " * (-len(header) % 8)
    path = tmp_path / "c"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    w = VariableCell(np.zeros(1, np.float32), name="w")
    error = expect_restore_error(path, [w], ["w"])
    assert "not a valid safetensors file" in str(error) and "JSON" in str(error)


@pytest.mark.parametrize("kind", ["fifo", "symlink to /dev/zero"])
def test_a_file_that_is_not_a_regular_file_is_an_error(tmp_path, kind):
    """A FIFO would block the read forever, and /dev/zero never ends."""
    path = tmp_path / "c"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.symlink("/dev/zero", path)
    w = VariableCell(np.zeros(1, np.float32), name="w")
    error = expect_restore_error(path, [w], ["w"])
    assert "not a regular file" in str(error)
