"""The pure transforms behind prepare operations, on small hand-made tables and images."""

from __future__ import annotations

import io
import random
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageEnhance

from conveyor.core.errors import ConveyorError
from conveyor.data import transforms as T
from conveyor.data.transforms import near

# -- helpers ---------------------------------------------------------------------------------


def shards_of(table: pa.Table, sizes: list[int]) -> list[pa.Table]:
    assert sum(sizes) == table.num_rows
    starts = np.cumsum([0, *sizes[:-1]])
    return [table.slice(int(s), n) for s, n in zip(starts, sizes, strict=True)]


def encode(image: Image.Image, fmt: str = "PNG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def digit_images(count: int) -> tuple[list[Image.Image], list[int]]:
    """scikit-learn's 8x8 digits as 32x32 grey images (the dataset ships with sklearn)."""
    from sklearn.datasets import load_digits

    pixels, labels = load_digits(return_X_y=True)
    images = [
        Image.fromarray((p.reshape(8, 8) * 15).astype(np.uint8)).resize((32, 32))
        for p in pixels[:count]
    ]
    return images, [int(v) for v in labels[:count]]


def greedy_reference(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """The definition, all pairs: drop an image within max_distance of an earlier kept one."""
    kept: list[int] = []
    keep = np.zeros(len(hashes), dtype=bool)
    for i, h in enumerate(hashes.tolist()):
        if h == int(T.INVALID_HASH):
            keep[i] = True
        elif all((h ^ k).bit_count() > max_distance for k in kept):
            kept.append(h)
            keep[i] = True
    return keep


def flip_bits(value: int, bits: list[int]) -> int:
    for b in bits:
        value ^= 1 << b
    return value


# -- row keys and exact duplicates -----------------------------------------------------------


def test_identical_rows_get_identical_keys_wherever_they_are() -> None:
    table = pa.table(
        {
            "path": ["a.png", "b.png", "a.png", "c.png"],
            "image": [b"\x89PNG1", b"\x89PNG2", b"\x89PNG1", b"\x89PNG1"],
            "width": pa.array([8, 8, 8, 8], pa.int32()),
        }
    )
    keys = T.row_keys(table)
    assert keys.shape == (4, 2) and keys.dtype == np.uint64
    assert (keys[0] == keys[2]).all()  # same content
    assert len({tuple(k) for k in keys.tolist()}) == 3  # row 3 differs only in its path
    # Another shard, another position, another chunking: the same key.
    moved = pa.concat_tables([table.slice(3, 1), table.slice(2, 1), table.slice(0, 2)])
    assert (T.row_keys(moved)[1] == keys[0]).all()
    assert (T.row_keys(table.slice(2, 1))[0] == keys[0]).all()


def test_keys_see_every_byte_of_binary_and_string_columns() -> None:
    base = pa.table({"s": ["ab"], "b": [b"\x00" * 1000]})
    cases = [
        pa.table({"s": ["ab"], "b": [b"\x00" * 999 + b"\x01"]}),  # last byte of the blob
        pa.table({"s": ["aB"], "b": [b"\x00" * 1000]}),
        pa.table({"s": pa.array([None], pa.string()), "b": [b"\x00" * 1000]}),
        pa.table({"s": [""], "b": [b"\x00" * 1000]}),
    ]
    keys = [tuple(T.row_keys(t)[0].tolist()) for t in [base, *cases]]
    assert len(set(keys)) == len(keys)
    # Values do not leak across columns: ("a", "bc") is not ("ab", "c").
    split = pa.table({"x": ["a", "ab"], "y": ["bc", "c"]})
    first, second = T.row_keys(split).tolist()
    assert first != second


def test_dictionary_encoded_columns_key_like_plain_ones() -> None:
    plain = pa.table({"label": ["cat", "dog", "cat"]})
    encoded = pa.table({"label": pa.array(["cat", "dog", "cat"]).dictionary_encode()})
    assert (T.row_keys(plain) == T.row_keys(encoded)).all()


def test_keys_agree_between_worker_processes() -> None:
    """Prepare computes keys in spawned workers and compares them in the parent."""
    table = pa.table(
        {"path": [f"img{i}.png" for i in range(50)], "image": [b"x" * i for i in range(50)]}
    )
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        remote = pool.submit(T.row_keys, table).result()
    assert (remote == T.row_keys(table)).all()


def test_rows_without_columns_are_all_the_same_content() -> None:
    keys = T.row_keys(pa.table({"a": [1, 2, 3]}).select([]))
    assert keys.shape == (3, 2) and (keys == keys[0]).all()
    assert len(T.first_occurrence_mask([keys])[0].nonzero()[0]) == 1
    assert T.row_keys(pa.table({"a": pa.array([], pa.int64())})).shape == (0, 2)


def test_exact_dedupe_keeps_the_first_copy_in_version_order() -> None:
    table = pa.table({"sha256": ["a", "b", "a", "c", "b", "a", "d"]})
    keys = [T.row_keys(t) for t in shards_of(table, [2, 0, 3, 2])]
    masks = T.first_occurrence_mask(keys)
    assert [m.tolist() for m in masks] == [[True, True], [], [False, True, False], [False, True]]
    assert all(m.dtype == np.bool_ for m in masks)


def test_exact_dedupe_of_nothing() -> None:
    assert T.first_occurrence_mask([]) == []
    empty = np.zeros((0, 2), dtype=np.uint64)
    assert [len(m) for m in T.first_occurrence_mask([empty, empty])] == [0, 0]


def test_exact_dedupe_rejects_keys_of_the_wrong_shape() -> None:
    with pytest.raises(ConveyorError, match=r"shape \(rows, 2\)"):
        T.first_occurrence_mask([np.zeros(3, dtype=np.uint64)])


# -- near-duplicate images -------------------------------------------------------------------


def test_a_reencoded_brighter_copy_of_a_digit_is_a_near_duplicate() -> None:
    images, _ = digit_images(60)
    originals = [encode(im) for im in images]
    copies = [encode(ImageEnhance.Brightness(im).enhance(1.1), "JPEG") for im in images[:20]]
    resized = [encode(im.resize((48, 48)), "JPEG", quality=90) for im in images[20:30]]
    column = pa.chunked_array([pa.array(originals, pa.binary()), pa.array(copies + resized)])
    hashes = T.perceptual_hashes(column)
    assert hashes.dtype == np.uint64 and len(hashes) == 90
    masks = T.near_duplicate_mask([hashes[:45], hashes[45:]], max_distance=4)
    keep = np.concatenate(masks)
    assert not keep[60:].any()  # every copy goes (its original came first)
    alone = np.concatenate(T.near_duplicate_mask([hashes[:60]], max_distance=4))
    assert (keep[:60] == alone).all()  # the copies cost no original its place
    assert keep[:60].sum() >= 55  # distinct digits stay (a few 8x8 digits really are alike)


def test_distinct_digits_are_kept() -> None:
    images, labels = digit_images(30)
    one_per_class = [encode(images[labels.index(c)]) for c in range(10)]
    hashes = T.perceptual_hashes(pa.array(one_per_class))
    assert T.near_duplicate_mask([hashes], max_distance=4)[0].all()


def test_unreadable_and_missing_images_are_never_duplicates() -> None:
    images, _ = digit_images(2)
    good = encode(images[0])
    column = pa.array([good, b"not an image", None, good[:40], b"not an image", good])
    hashes = T.perceptual_hashes(column)
    assert hashes[1] == hashes[2] == hashes[3] == hashes[4] == T.INVALID_HASH
    assert hashes[0] != T.INVALID_HASH
    keep = T.near_duplicate_mask([hashes], max_distance=10)[0]
    assert keep.tolist() == [True, True, True, True, True, False]


def test_a_real_hash_never_comes_near_the_invalid_one() -> None:
    images, _ = digit_images(200)
    hashes = T.perceptual_hashes(pa.array([encode(im) for im in images]))
    distance = np.array([(int(h) ^ int(T.INVALID_HASH)).bit_count() for h in hashes])
    assert distance.min() >= 32


def test_near_duplicates_do_not_chain() -> None:
    """A~B and B~C with A far from C: B goes (near A), C stays (nothing kept is near it)."""
    a = 0x0123_4567_89AB_CDEF
    b = flip_bits(a, [0, 1, 2])
    c = flip_bits(b, [10, 11, 12])
    d = flip_bits(a, [40])
    keep = T.near_duplicate_mask([np.array([a, b], np.uint64), np.array([c, d], np.uint64)], 4)
    assert [m.tolist() for m in keep] == [[True, False], [True, False]]


def test_identical_hashes_keep_only_the_first() -> None:
    hashes = np.array([7, 9, 7, 7, 9], dtype=np.uint64)
    assert T.near_duplicate_mask([hashes], 0)[0].tolist() == [True, True, False, False, False]


@pytest.mark.parametrize("max_distance", [0, 1, 3, 4, 8, 12])
def test_banding_finds_exactly_what_all_pairs_would(max_distance: int) -> None:
    """Clusters of close hashes at every distance up to 16 bits; checked against brute force."""
    rng = random.Random(max_distance)
    hashes: list[int] = []
    for _ in range(120):
        centre = rng.getrandbits(64)
        hashes.append(centre)
        for _ in range(rng.randrange(4)):
            hashes.append(flip_bits(centre, rng.sample(range(64), rng.randrange(17))))
    hashes.append(int(T.INVALID_HASH))
    rng.shuffle(hashes)
    array = np.array(hashes, dtype=np.uint64)
    sizes = [100, 0, 150, len(array) - 250]
    parts = np.split(array, np.cumsum(sizes)[:-1])
    got = np.concatenate(T.near_duplicate_mask(parts, max_distance))
    assert (got == greedy_reference(array, max_distance)).all()


def test_near_dedupe_scales_to_fifty_thousand_images() -> None:
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**64 - 1, size=50_000, dtype=np.uint64)  # never INVALID_HASH
    planted = [flip_bits(int(h), [3, 17, 40]) for h in hashes[:500]]
    hashes = np.concatenate([hashes, np.array(planted, dtype=np.uint64)])
    masks = T.near_duplicate_mask(np.array_split(hashes, 16), max_distance=4)
    keep = np.concatenate(masks)
    assert len(keep) == 50_500
    assert not keep[50_000:].any()  # every planted copy is found
    assert keep[:50_000].sum() >= 49_990  # random hashes are about 32 bits apart


@pytest.mark.parametrize("bad", [-1, 32, 64, 2.5, True])
def test_near_dedupe_distance_must_make_sense(bad: Any) -> None:
    with pytest.raises(ConveyorError, match="max distance"):
        T.near_duplicate_mask([np.zeros(2, dtype=np.uint64)], bad)


def test_popcount_fallback_matches_numpy() -> None:
    values = np.random.default_rng(1).integers(0, 2**64 - 1, size=1000, dtype=np.uint64)
    values[:2] = [0, 2**64 - 1]
    expected = [bin(int(v)).count("1") for v in values]
    assert near._popcount_table(values).tolist() == expected
    assert near._popcount(values).tolist() == expected


# -- missing values --------------------------------------------------------------------------


def missing_table() -> pa.Table:
    return pa.table(
        {
            "n": pa.array([4, None, 1, 10, None, 2], pa.int32()),
            "x": pa.array([1.0, None, float("nan"), 4.0, 2.0, None], pa.float32()),
            "city": ["paris", None, "lyon", "lyon", "paris", None],
            "blob": pa.array([b"a", b"b", None, b"b", b"a", b"a"]),
        }
    )


def test_fill_with_the_median_over_all_shards() -> None:
    table = missing_table()
    values = T.fill_values(table, ["n", "x"], "median")
    # n: 1 2 4 10 -> the lower median 2 (a value of the column: never 3.0, never rounded);
    # x: NaN is a value, not missing, and left out of statistics -> median of 1 2 4 = 2.0.
    assert values == {"n": 2, "x": 2.0}
    for shard in shards_of(table, [2, 4]):
        filled = T.apply_fill(shard, values)
        assert filled.schema == shard.schema
        assert filled.column("n").null_count == 0 and filled.column("x").null_count == 0
    filled = T.apply_fill(table, values)
    assert filled.column("n").to_pylist() == [4, 2, 1, 10, 2, 2]
    assert np.isnan(filled.column("x").to_pylist()[2])  # NaN is not filled


def test_median_of_an_integer_column_is_the_lower_middle_value() -> None:
    table = pa.table({"n": pa.array([1, 2, 3, 10, None], pa.int64())})
    assert T.fill_values(table, ["n"], "median") == {"n": 2}
    floats = pa.table({"x": [1.0, 2.0, 3.0, 10.0, None]})
    assert T.fill_values(floats, ["x"], "median") == {"x": 2.5}


def test_fill_mean_mode_and_constant() -> None:
    table = missing_table()
    assert T.fill_values(table, ["x"], "mean") == {"x": pytest.approx(7 / 3)}
    # mode: lyon and paris tie at 2 -> the smallest; b"a" is the most frequent blob.
    assert T.fill_values(table, ["city", "blob"], "mode") == {"city": "lyon", "blob": b"a"}
    assert T.fill_values(table, ["n"], "mode") == {"n": 1}
    assert T.fill_values(table, ["n", "city"], "constant", "7") == {"n": 7, "city": "7"}
    filled = T.apply_fill(table, {"city": "unknown"})
    assert filled.column("city").to_pylist()[1] == "unknown"


def test_the_mean_of_an_integer_column_is_refused_with_a_way_out() -> None:
    with pytest.raises(ConveyorError, match="mean") as caught:
        T.fill_values(missing_table(), ["n"], "mean")
    assert "median" in str(caught.value.hint)


@pytest.mark.parametrize(
    ("columns", "strategy", "value", "needle"),
    [
        (["nope"], "mode", None, "no column 'nope'"),
        (["citty"], "mode", None, "did you mean 'city'"),
        (["city"], "mean", None, "mean"),
        (["city"], "median", None, "median"),
        (["n"], "average", None, "unknown fill strategy"),
        (["n"], "constant", None, "needs a value"),
        (["n"], "constant", 2.5, "cannot fill column 'n'"),
        (["n"], "constant", "many", "cannot fill column 'n'"),
        (["n"], "constant", 2**40, "cannot fill column 'n'"),
        (["n"], "median", 3, "only used with strategy 'constant'"),
        ([], "mode", None, "no column to fill"),
    ],
)
def test_bad_fill_requests_are_clear_errors(
    columns: list[str], strategy: Any, value: Any, needle: str
) -> None:
    with pytest.raises(ConveyorError, match=needle):
        T.fill_values(missing_table(), columns, strategy, value)


def test_a_column_with_no_values_cannot_be_filled_from_itself() -> None:
    table = pa.table({"x": pa.array([None, None], pa.float64())})
    with pytest.raises(ConveyorError, match="no values") as caught:
        T.fill_values(table, ["x"], "median")
    assert "constant" in str(caught.value.hint)
    assert T.fill_values(table, ["x"], "constant", 0) == {"x": 0.0}


def test_apply_fill_never_truncates_into_the_column_type() -> None:
    with pytest.raises(ConveyorError, match="cannot fill column 'n'"):
        T.apply_fill(missing_table(), {"n": 2.5})
    with pytest.raises(ConveyorError, match="no column 'm'"):
        T.apply_fill(missing_table(), {"m": 1})


def test_drop_missing() -> None:
    table = missing_table()
    assert T.drop_missing(table, ["n"]).column("n").to_pylist() == [4, 1, 10, 2]
    assert T.drop_missing(table, ["n", "city"]).num_rows == 3
    assert T.drop_missing(table, None).column("n").to_pylist() == [4, 10]  # NaN stays
    with pytest.raises(ConveyorError, match="no column 'cty'"):
        T.drop_missing(table, ["cty"])
    with pytest.raises(ConveyorError, match="no column to look"):
        T.drop_missing(table, [])


# -- filter ----------------------------------------------------------------------------------


def image_table() -> pa.Table:
    return pa.table(
        {
            "path": ["a.png", "b.png", "c.png", "d.png"],
            "label": pa.array(["3", "1", None, "7"]),
            "image": pa.array([b"\x89PNG\x00a", b"\x89PNG\x00b", b"\x89PNG\x00c", b"\xff\xd8"]),
            "width": pa.array([8, 4, 16, 32], pa.int32()),
            "Pixel Count": [64, 16, 256, 1024],
        }
    )


def test_filter_keeps_matching_rows_and_binary_columns_intact() -> None:
    table = image_table()
    kept = T.filter_table(table, "label != '3' AND width >= 8")
    assert kept.schema == table.schema  # types unchanged, binary included
    assert kept.column("path").to_pylist() == ["d.png"]  # a null label is not != '3'
    assert kept.column("image").to_pylist() == [b"\xff\xd8"]


@pytest.mark.parametrize(
    ("expression", "paths"),
    [
        ("label IS NULL OR width < 8", ["b.png", "c.png"]),
        ("label IN ('1', '7')", ["b.png", "d.png"]),
        ("width BETWEEN 8 AND 16 AND path LIKE '%.png'", ["a.png", "c.png"]),
        ('"Pixel Count" > 100', ["c.png", "d.png"]),
        ("1 = 1", ["a.png", "b.png", "c.png", "d.png"]),
        ("NOT (width > 4)", ["b.png"]),
    ],
)
def test_filter_speaks_sql(expression: str, paths: list[str]) -> None:
    assert T.filter_table(image_table(), expression).column("path").to_pylist() == paths


@pytest.mark.parametrize(
    ("expression", "needle"),
    [
        ("nosuchcolumn > 1", "no column 'nosuchcolumn'"),
        ("widht > 1", "did you mean 'width'"),
        ("width >", "cannot read filter expression"),
        ("width + 1", "not true/false"),
        ("label > 3", "cannot evaluate"),
        ("width > AVG(width)", "other rows"),
        ("COUNT(*) > 2", "other rows"),
        ("ROW_NUMBER() OVER () <= 2", "other rows"),
        ("  ", "empty filter expression"),
    ],
)
def test_bad_filters_are_one_line_errors(expression: str, needle: str) -> None:
    with pytest.raises(ConveyorError, match=needle) as caught:
        T.filter_table(image_table(), expression)
    assert "\n" not in str(caught.value)


# -- splits ----------------------------------------------------------------------------------

FRACTIONS = {"train": 0.7, "val": 0.2, "test": 0.1}


def labelled_table(seed: int = 0) -> pa.Table:
    rng = random.Random(seed)
    sizes = {"cat": 503, "dog": 211, "eel": 37, "fox": 4}
    labels = [label for label, n in sizes.items() for _ in range(n)]
    rng.shuffle(labels)
    return pa.table({"id": list(range(len(labels))), "label": labels})


def test_stratified_split_gives_every_split_each_class_share() -> None:
    table = labelled_table()
    labels = table.column("label").to_numpy(zero_copy_only=False)
    splits = T.assign_splits(T.row_keys(table), FRACTIONS, seed=7, strata=labels)
    assert len(splits) == table.num_rows and set(splits) == set(FRACTIONS)
    for label, size in Counter(labels.tolist()).items():
        counts = Counter(splits[labels == label].tolist())
        for name, fraction in FRACTIONS.items():
            assert abs(counts[name] - fraction * size) < 1, (label, name, counts)
        assert sum(counts.values()) == size


def test_the_same_seed_gives_the_same_split_however_rows_are_sharded() -> None:
    table = labelled_table()
    keys = T.row_keys(table)
    labels = table.column("label").to_numpy(zero_copy_only=False)
    splits = T.assign_splits(keys, FRACTIONS, 3, labels)
    first = dict(zip(table.column("id").to_pylist(), splits, strict=True))
    shards = shards_of(table, [100, 300, 200, table.num_rows - 600])
    random.Random(1).shuffle(shards)
    shuffled = pa.concat_tables(shards)
    shuffled = shuffled.take(np.random.default_rng(2).permutation(shuffled.num_rows))
    again = T.assign_splits(
        T.row_keys(shuffled), FRACTIONS, 3, shuffled.column("label").to_numpy(zero_copy_only=False)
    )
    assert dict(zip(shuffled.column("id").to_pylist(), again, strict=True)) == first
    other = T.assign_splits(keys, FRACTIONS, 4, labels)
    assert (other != np.array([first[i] for i in range(table.num_rows)])).any()


def test_split_without_strata_cuts_all_rows_exactly() -> None:
    table = pa.table({"id": list(range(1001))})
    splits = T.assign_splits(T.row_keys(table), {"a": 0.5, "b": 0.25, "c": 0.25}, seed=0)
    assert Counter(splits.tolist()) == {"a": 501, "b": 250, "c": 250}


def test_duplicates_and_missing_strata_are_still_assigned() -> None:
    table = pa.table({"v": [1, 1, 1, 2, 2, 3] * 10, "label": ["x", None, "x", "y", None, "y"] * 10})
    keys = T.row_keys(table.select(["v"]))
    labels = table.column("label").to_numpy(zero_copy_only=False)
    splits = T.assign_splits(keys, {"train": 0.5, "test": 0.5}, 0, labels)
    assert len(splits) == 60 and set(splits) == {"train", "test"}
    nulls = Counter(splits[[v is None for v in labels]].tolist())
    assert nulls == {"train": 10, "test": 10}  # null labels are a class of their own
    reversed_splits = T.assign_splits(keys[::-1], {"train": 0.5, "test": 0.5}, 0, labels[::-1])
    values = table.column("v").to_pylist()
    forward = Counter(zip(values, splits.tolist(), strict=True))
    assert Counter(zip(values[::-1], reversed_splits.tolist(), strict=True)) == forward


def test_split_order_of_the_fractions_does_not_matter() -> None:
    keys = T.row_keys(pa.table({"id": list(range(200))}))
    one = T.assign_splits(keys, {"train": 0.8, "test": 0.2}, 5)
    two = T.assign_splits(keys, {"test": 0.2, "train": 0.8}, 5)
    assert (one == two).all()


@pytest.mark.parametrize(
    ("fractions", "needle"),
    [
        ({"train": 0.8, "test": 0.3}, "sum to 1.1"),
        ({"train": 0.8}, "sum to 0.8"),
        ({"train": 1.2, "test": -0.2}, "fraction of split"),
        ({"train": float("nan"), "test": 0.5}, "fraction of split"),
        ({"train": "0.5", "test": 0.5}, "fraction of split"),
        ({}, "no splits"),
    ],
)
def test_bad_fractions_are_clear_errors(fractions: dict[str, Any], needle: str) -> None:
    keys = T.row_keys(pa.table({"id": [1, 2, 3]}))
    with pytest.raises(ConveyorError, match=needle):
        T.assign_splits(keys, fractions, 0)


def test_fractions_within_a_millionth_of_one_are_fine() -> None:
    keys = T.row_keys(pa.table({"id": list(range(10))}))
    splits = T.assign_splits(keys, {"a": 1 / 3, "b": 1 / 3, "c": 0.3333334}, 0)
    assert Counter(splits.tolist()) == {"a": 3, "b": 4, "c": 3}


def test_split_strata_and_seed_are_checked() -> None:
    keys = T.row_keys(pa.table({"id": [1, 2, 3]}))
    with pytest.raises(ConveyorError, match="2 stratum values for 3 rows"):
        T.assign_splits(keys, {"a": 1.0}, 0, np.array(["x", "y"]))
    with pytest.raises(ConveyorError, match="seed"):
        T.assign_splits(keys, {"a": 1.0}, True)


# -- map -------------------------------------------------------------------------------------


def add_double(batch: pa.RecordBatch) -> pa.RecordBatch:
    doubled = pa.array(np.asarray(batch.column("id")) * 2)
    return pa.RecordBatch.from_arrays([*batch.columns, doubled], [*batch.schema.names, "double"])


def test_map_runs_over_batches_and_concatenates() -> None:
    table = pa.concat_tables(shards_of(pa.table({"id": list(range(2500))}), [700, 1800]))
    sizes: list[int] = []

    def spy(batch: pa.RecordBatch) -> pa.RecordBatch:
        assert isinstance(batch, pa.RecordBatch)
        sizes.append(batch.num_rows)
        return add_double(batch)

    out = T.apply_map(table, spy, batch_size=1000)
    assert sizes == [1000, 1000, 500]  # whole batches even across chunks
    assert out.column("double").to_pylist() == [2 * i for i in range(2500)]


def test_map_accepts_tables_and_dicts_and_may_change_the_row_count() -> None:
    table = pa.table({"id": list(range(10)), "image": [bytes([i]) for i in range(10)]})

    def evens(batch: pa.RecordBatch) -> dict[str, Any]:
        ids = batch.column("id").to_pylist()
        return {"id": [i for i in ids if i % 2 == 0], "size": [1 for i in ids if i % 2 == 0]}

    out = T.apply_map(table, evens, batch_size=3)
    assert out.column("id").to_pylist() == [0, 2, 4, 6, 8]
    as_table = T.apply_map(table, lambda b: pa.Table.from_batches([b]), batch_size=4)
    assert as_table.equals(table)


def test_a_failing_map_function_is_named_with_its_batch() -> None:
    def fragile(batch: pa.RecordBatch) -> pa.RecordBatch:
        if batch.column("id")[0].as_py() >= 20:
            raise KeyError("no such thing")
        return batch

    with pytest.raises(
        ConveyorError, match=r"fragile failed on batch 2 \(rows 20\.\.29\)"
    ) as caught:
        T.apply_map(pa.table({"id": list(range(40))}), fragile, batch_size=10)
    assert isinstance(caught.value.__cause__, KeyError)
    assert "KeyError" in str(caught.value)


def test_map_results_must_be_tables_with_one_schema() -> None:
    table = pa.table({"id": list(range(20))})
    with pytest.raises(ConveyorError, match=r"returned list, not a table") as caught:
        T.apply_map(table, lambda b: [1, 2, 3], batch_size=10)
    assert "batch 0" in str(caught.value)

    def drifting(batch: pa.RecordBatch) -> pa.Table:
        first = batch.column("id")[0].as_py() == 0
        return pa.table({"v": [1] * batch.num_rows if first else ["1"] * batch.num_rows})

    with pytest.raises(ConveyorError, match=r"batch 1.*v: string.*first batch returned.*v: int64"):
        T.apply_map(table, drifting, batch_size=10)
    with pytest.raises(ConveyorError, match="not a table of columns"):
        T.apply_map(table, lambda b: {"a": [1, 2], "b": [1]}, batch_size=10)


def test_dict_results_take_the_types_of_the_first_batch() -> None:
    """Python lists of whole numbers would infer int64 where the first batch gave doubles."""
    table = pa.table({"x": [1.5, 2.5, 3.0, 4.0]})

    def tidy(batch: pa.RecordBatch) -> dict[str, Any]:
        values = batch.column("x").to_pylist()
        return {"x": [int(v) if v.is_integer() else v for v in values]}

    out = T.apply_map(table, tidy, batch_size=2)
    assert out.schema == pa.schema([("x", pa.float64())])
    assert out.column("x").to_pylist() == [1.5, 2.5, 3.0, 4.0]


def test_map_of_an_empty_table_and_a_bad_batch_size() -> None:
    def never(batch: pa.RecordBatch) -> pa.RecordBatch:
        raise AssertionError("not called for an empty table")

    empty = pa.table({"id": pa.array([], pa.int64())})
    assert T.apply_map(empty, never, batch_size=10).num_rows == 0
    with pytest.raises(ConveyorError, match="batch size"):
        T.apply_map(empty, add_double, batch_size=0)
