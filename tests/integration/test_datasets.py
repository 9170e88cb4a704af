"""Datasets end to end through the Python API, on both backends."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from conveyor import Workspace
from conveyor.core.errors import ConveyorError
from tests.datagen import csv_file, image_folder

SMALL_SHARDS = 64 * 1024


@pytest.fixture
def images(tmp_path: Path) -> Path:
    root = image_folder(tmp_path / "images", 600, classes=4)
    (root / "class0" / "dup.png").write_bytes((root / "class1" / "img000001.png").read_bytes())
    (root / "class2" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def test_ingest_a_folder_of_images(workspace: Workspace, images: Path) -> None:
    result = workspace.datasets.ingest(images, "pics", shard_bytes=SMALL_SHARDS)
    v = result.version
    assert result.created and v.ref == "pics@v1"
    assert v.rows == 601  # 600 images and one copy; the broken file is rejected
    assert [(r.where, r.reason.split(":")[0]) for r in result.rejects] == [
        ("class2/broken.png", "not a readable image")
    ]
    assert result.duplicates == 1 and v.manifest.duplicates["exact"] == 1
    table = v.to_arrow()
    assert set(table.column_names) >= {"path", "label", "sha256", "image", "width", "height"}
    assert sorted(set(table.column("label").to_pylist())) == [f"class{i}" for i in range(4)]
    row = table.filter(
        pl.Series(table.column("path").to_pylist()).eq("class3/img000003.png").to_arrow()
    )
    assert row.column("image")[0].as_py() == (images / "class3" / "img000003.png").read_bytes()
    assert v.manifest.columns["width"]["min"] == 16
    assert v.manifest.columns["label"]["values"]["class0"] == 151
    assert len(v.manifest.shards) > 1


def test_ingesting_the_same_data_again_makes_no_version(workspace: Workspace, images: Path) -> None:
    first = workspace.datasets.ingest(images, "pics")
    again = workspace.datasets.ingest(images, "pics")
    assert not again.created
    assert again.version.ref == first.version.ref
    assert [v.ref for v in workspace.datasets.log("pics")] == ["pics@v1"]


def test_one_percent_more_rows_writes_about_one_percent_more_bytes(
    workspace: Workspace, images: Path
) -> None:
    v1 = workspace.datasets.ingest(images, "pics", shard_bytes=SMALL_SHARDS).version
    image_folder(images, 6, classes=4, seed=99, start=10_000)  # +1%, spread over all classes
    result = workspace.datasets.ingest(images, "pics", shard_bytes=SMALL_SHARDS)
    v2 = result.version
    assert v2.ref == "pics@v2" and v2.rows == v1.rows + 6
    assert result.new_rows == 6
    assert result.reused_shards == len(v1.manifest.shards)
    assert result.written_bytes < 0.03 * v2.manifest.bytes
    assert [s.ref for s in v2.lineage()] == ["pics@v2", "pics@v1"]


def test_removing_rows_rewrites_only_the_shards_that_held_them(
    workspace: Workspace, images: Path
) -> None:
    v1 = workspace.datasets.ingest(images, "pics", shard_bytes=SMALL_SHARDS).version
    gone = images / "class0" / "img000000.png"  # sorted first: lives in the first shard
    gone.unlink()
    result = workspace.datasets.ingest(images, "pics", shard_bytes=SMALL_SHARDS)
    assert result.version.rows == v1.rows - 1
    assert result.reused_shards == len(v1.manifest.shards) - 1
    kept = {s.digest for s in v1.manifest.shards} & {s.digest for s in result.version.shards()}
    assert len(kept) == len(v1.manifest.shards) - 1
    diff = workspace.datasets.diff("pics@v1", "pics@v2")
    assert (diff.rows_added, diff.rows_removed) == (0, 1)


def test_tables_from_csv_jsonl_and_parquet(workspace: Workspace, tmp_path: Path) -> None:
    csv = csv_file(tmp_path / "t.csv", 1000, missing_every=10)
    v = workspace.datasets.ingest(csv, "table").version
    assert v.rows == 1000
    assert v.manifest.columns["x"]["nulls"] == 100
    assert str(v.schema.field("city").type) == "string"
    frame = pl.read_csv(csv)
    frame.write_ndjson(tmp_path / "t.jsonl")
    frame.write_parquet(tmp_path / "t.parquet")
    assert workspace.datasets.ingest(tmp_path / "t.jsonl", "from-jsonl").version.rows == 1000
    assert workspace.datasets.ingest(tmp_path / "t.parquet", "from-pq").version.rows == 1000


def test_malformed_csv_rows_are_rejected_not_fatal(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3,4,5\n6,7\n")
    result = workspace.datasets.ingest(path, "bad")
    assert result.version.rows == 2
    assert len(result.rejects) == 1 and "3,4,5" in result.rejects[0].reason


def test_prepare_ops_make_versions_with_lineage(workspace: Workspace, images: Path) -> None:
    ds = workspace.datasets
    ds.ingest(images, "pics", shard_bytes=SMALL_SHARDS)
    deduped = ds.dedupe("pics@v1")
    assert deduped.rows == 600
    split = ds.split(
        "pics@latest", {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1, stratify="label"
    )
    assert split.manifest.splits() == {"train": 480, "val": 60, "test": 60}
    train = split.to_arrow(split="train")
    assert train.num_rows == 480
    assert sorted(set(train.column("label").to_pylist())) == [f"class{i}" for i in range(4)]
    again = ds.split("pics@v2", {"train": 0.8, "val": 0.1, "test": 0.1}, seed=1, stratify="label")
    assert [s.digest for s in again.shards()] == [s.digest for s in split.shards()]
    steps = split.lineage()
    assert [s.operation for s in steps] == ["split", "dedupe", "ingest"]
    assert steps[-1].params["source"] == str(images)


def test_table_prepare_ops(workspace: Workspace, tmp_path: Path) -> None:
    ds = workspace.datasets
    ds.ingest(csv_file(tmp_path / "t.csv", 1000, missing_every=10), "t")
    filled = ds.fill("t", ["x"], "median")
    assert filled.manifest.columns["x"]["nulls"] == 0
    dropped = ds.drop_missing("t@v1", ["x"])
    assert dropped.rows == 900
    kept = ds.filter("t@v1", "city = 'paris' AND label = 1")
    table = kept.to_arrow()
    assert set(table.column("city").to_pylist()) == {"paris"}
    assert 0 < kept.rows < 1000


def test_shards_are_plain_parquet(workspace: Workspace, tmp_path: Path) -> None:
    version = workspace.datasets.ingest(csv_file(tmp_path / "t.csv", 100), "t").version
    exported = workspace.datasets.export("t@v1", tmp_path / "out")
    assert pl.read_parquet(exported).height == 100
    path = workspace.objects.path_of(version.shards()[0].digest)
    if workspace.objects.is_local:  # any Parquet reader reads the store itself
        assert pl.read_parquet(path).height == 100


def test_export_files_gives_the_original_bytes_back(
    workspace: Workspace, images: Path, tmp_path: Path
) -> None:
    workspace.datasets.ingest(images, "pics")
    workspace.datasets.export("pics", tmp_path / "back", "files")
    original = images / "class1" / "img000001.png"
    assert (tmp_path / "back" / "class1" / "img000001.png").read_bytes() == original.read_bytes()


@pytest.mark.parametrize(
    ("source", "name", "needle"),
    [
        ("missing-folder", "x", "does not exist"),
        ("notes.txt", "x", "unknown format"),
        ("t.csv", "../evil", "not a valid dataset name"),
    ],
)
def test_bad_input_is_a_clear_error(
    workspace: Workspace, tmp_path: Path, source: str, name: str, needle: str
) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    csv_file(tmp_path / "t.csv", 5)
    with pytest.raises(ConveyorError, match=needle):
        workspace.datasets.ingest(tmp_path / source, name)


def test_bad_version_specs(workspace: Workspace, tmp_path: Path) -> None:
    workspace.datasets.ingest(csv_file(tmp_path / "t.csv", 5), "t")
    with pytest.raises(ConveyorError, match="bad version"):
        workspace.datasets.get("t@3")
    with pytest.raises(ConveyorError, match="no dataset version t@v9"):
        workspace.datasets.get("t@v9")


def test_the_manifest_describes_itself_without_the_database(
    workspace: Workspace, images: Path
) -> None:
    version = workspace.datasets.ingest(images, "pics").version
    manifest = json.loads(workspace.objects.get_bytes(version.digest))
    assert manifest["format"] == "conveyor.dataset/1"
    assert manifest["name"] == "pics" and manifest["version"] == 1
    assert manifest["operation"]["params"]["source"] == str(images)
    assert all(workspace.objects.exists(s["digest"]) for s in manifest["shards"])


def test_ingest_from_a_bucket(tmp_path: Path, s3_bucket: str, s3_endpoint: str) -> None:
    import boto3

    csv = csv_file(tmp_path / "t.csv", 300)
    boto3.client("s3", endpoint_url=s3_endpoint).upload_file(str(csv), s3_bucket, "raw/t.csv")
    ws = Workspace.init(tmp_path / "ws", objects=f"s3://{s3_bucket}/ws",
                        objects_options={"endpoint_url": s3_endpoint})  # fmt: skip
    version = ws.datasets.ingest(f"s3://{s3_bucket}/raw/t.csv", "remote").version
    assert version.rows == 300
    assert version.lineage()[0].params["source"] == f"s3://{s3_bucket}/raw/t.csv"


def test_near_duplicate_images_are_found(workspace: Workspace, tmp_path: Path) -> None:
    from PIL import Image, ImageEnhance
    from sklearn.datasets import load_digits

    root = tmp_path / "digits"
    for i, (pixels, label) in enumerate(zip(*load_digits(return_X_y=True), strict=True)):
        if i >= 300:
            break
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray((pixels.reshape(8, 8) * 15).astype("uint8")).resize((32, 32))
        image.save(folder / f"{i:04d}.png")
        if i < 10:  # a slightly brighter copy, saved as JPEG: same picture, other bytes
            ImageEnhance.Brightness(image).enhance(1.1).save(folder / f"{i:04d}-copy.jpg")
    workspace.datasets.ingest(root, "digits")
    exact = workspace.datasets.dedupe("digits")
    assert exact.rows == 310  # no byte-identical files
    near = workspace.datasets.dedupe("digits@v1", near=True, max_distance=4)
    paths = set(near.to_arrow(columns=["path"]).column("path").to_pylist())
    copies = [p for p in paths if p.endswith("-copy.jpg")]
    both = [p for p in copies if p.replace("-copy.jpg", ".png") in paths]
    assert both == []  # of each picture and its copy, only one is left
    assert near.rows >= 280  # distinct digits stay


def test_map_applies_a_user_function(workspace: Workspace, tmp_path: Path) -> None:
    workspace.datasets.ingest(csv_file(tmp_path / "t.csv", 500), "t")
    doubled = workspace.datasets.map("t", "tests.mapfns:double_label")
    table = doubled.to_arrow()
    assert table.column("label2").to_pylist() == [2 * v for v in table.column("label").to_pylist()]
    assert doubled.lineage()[0].params["function"] == "tests.mapfns:double_label"
    with pytest.raises(ConveyorError, match="failed on batch 0"):
        workspace.datasets.map("t", "tests.mapfns:broken")
    assert [v.ref for v in workspace.datasets.log("t")] == ["t@v2", "t@v1"]


def test_a_script_without_a_main_guard_is_told_what_to_add(tmp_path: Path) -> None:
    # ingest reads files in spawned processes, which import the script again
    import subprocess
    import sys

    image_folder(tmp_path / "imgs", 600, classes=2, size=8)
    script = tmp_path / "ingest_script.py"
    script.write_text(
        "from conveyor import Workspace\n"
        f"ws = Workspace.init({str(tmp_path / 'ws')!r})\n"
        f"ws.datasets.ingest({str(tmp_path / 'imgs')!r}, 'pics', workers=2)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode != 0
    told = [line for line in done.stderr.splitlines() if line.startswith("conveyor.core.errors")]
    assert told and 'if __name__ == "__main__":' in told[-1], done.stderr[-2000:]
