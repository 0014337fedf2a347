"""Array digests: independent of chunking, sensitive to any changed or moved element."""

from __future__ import annotations

import hashlib

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

from oceandata.ingest.checksums import array_digest, file_sha256


def digest(values: np.ndarray, chunks) -> str:
    var = xr.Variable(tuple("abc"[: values.ndim]), da.from_array(values, chunks=chunks))
    return dask.compute(array_digest(var))[0]


@pytest.fixture
def field() -> np.ndarray:
    return np.random.default_rng(42).normal(size=(7, 5, 9)).astype("f4")


@pytest.mark.parametrize("chunks", [(3, 2, 4), (1, 5, 9), (7, 1, 1), (2, 3, 5)])
def test_digest_does_not_depend_on_chunks(field, chunks) -> None:
    assert digest(field, chunks) == digest(field, field.shape)


def test_digest_changes_with_one_element_a_swap_or_a_nan(field) -> None:
    reference = digest(field, (3, 2, 4))
    changed = field.copy()
    changed[6, 4, 8] = np.nextafter(changed[6, 4, 8], np.float32(np.inf))  # one ulp
    swapped = field.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    masked = field.copy()
    masked[3, 2, 1] = np.nan
    digests = {digest(a, (3, 2, 4)) for a in (changed, swapped, masked)}
    assert reference not in digests and len(digests) == 3


def test_dtype_and_shape_are_part_of_the_digest(field) -> None:
    assert digest(field, (3, 2, 4)).startswith("<f4:7x5x9:")
    assert digest(field.reshape(5, 7, 9), (5, 7, 9)) != digest(field, field.shape)
    assert digest(field.astype("f8"), field.shape) != digest(field, field.shape)


def test_file_sha256_matches_hashlib(tmp_path) -> None:
    path = tmp_path / "x.bin"
    data = np.random.default_rng(1).bytes(9 * 2**20 + 17)  # crosses the 4 MiB blocks
    path.write_bytes(data)
    seen: list[int] = []
    assert file_sha256(path, on_bytes=seen.append) == hashlib.sha256(data).hexdigest()
    assert sum(seen) == len(data)


def test_large_blocks_hashed_in_slabs_give_the_same_digest(field, monkeypatch) -> None:
    import oceandata.ingest.checksums as checksums

    whole = digest(field, field.shape)
    monkeypatch.setattr(checksums, "_SLAB", 40)  # slabs of a single (5, 9) row
    assert digest(field, field.shape) == whole


def test_tapped_write_and_extended_digest_equal_a_recomputation(field) -> None:
    from oceandata.ingest.checksums import WriteTally, extend_digest

    first, second = field[:4], field[4:]
    tally = WriteTally()
    head = xr.Variable(("a", "b", "c"), da.from_array(first, chunks=(3, 2, 4)))
    tapped = tally.tap("x", head, {}, shape=first.shape)
    np.testing.assert_array_equal(tapped.compute(), first)  # chunks pass unchanged
    before = f"<f4:4x5x9:{tally.sum('x'):016x}"
    assert before == digest(first, first.shape)
    grown = WriteTally()
    tail = xr.Variable(("a", "b", "c"), da.from_array(second, chunks=(2, 5, 3)))
    grown.tap("x", tail, {}, shape=field.shape, offset=(4, 0, 0)).compute()
    assert extend_digest(before, grown.sum("x"), field.shape) == digest(field, (3, 2, 4))
    with pytest.raises(ValueError, match="cannot extend"):
        extend_digest(before, 0, (7, 9, 5))


def test_tapped_digest_covers_the_encoded_values() -> None:
    from oceandata.ingest.checksums import WriteTally

    values = np.array([[1.5, np.nan], [np.nan, -2.0]], dtype="f4")
    encoding = {"_FillValue": np.float32(1e20), "dtype": "f4"}
    tally = WriteTally()
    tally.tap("v", xr.Variable(("a", "b"), da.from_array(values, chunks=1)), encoding,
              shape=values.shape).compute()
    stored = np.where(np.isnan(values), np.float32(1e20), values)  # what the store holds
    assert f"<f4:2x2:{tally.sum('v'):016x}" == digest(stored, stored.shape)


def test_every_nan_bit_pattern_digests_as_the_store_reads_it_back(tmp_path) -> None:
    """A chunk that is all NaN is not stored by zarr (it equals the fill value) and reads
    back as the standard NaN: a source's sign-bit NaN must not change the digest."""
    from oceandata.ingest.checksums import WriteTally

    values = np.full((4, 3), np.nan, dtype="f4")
    values[:2] = -values[:2]  # 0xffc00000, as MATLAB and x86's 0/0 write it
    values[3, 2] = 7.0
    assert np.signbit(values[0, 0])
    tally = WriteTally()
    var = xr.Variable(("a", "b"), da.from_array(values, chunks=2))
    tapped = tally.tap("v", var, {}, shape=values.shape)
    xr.Dataset({"v": (("a", "b"), tapped)}).to_zarr(
        tmp_path / "s.zarr", encoding={"v": {"chunks": (2, 2)}}, zarr_format=3)
    back = xr.open_zarr(tmp_path / "s.zarr")["v"].values
    assert not np.signbit(back[0, 0])  # the all-NaN chunk came back as the standard NaN
    assert f"<f4:4x3:{tally.sum('v'):016x}" == digest(back, back.shape)
