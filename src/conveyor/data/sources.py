"""Reading what a user ingests: a folder of files, or a CSV, JSONL or Parquet table.

Sources are any fsspec URL or local path. Unreadable or corrupt inputs never stop an
ingest: they are returned as rejects (path or row, and the reason).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import fsspec
import pyarrow as pa

from conveyor.core.errors import ConveyorError

IMAGE_FORMATS = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
TABLE_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
SourceKind = Literal["images", "files", "csv", "jsonl", "parquet"]


class SourceError(ConveyorError):
    """The thing to ingest is missing, unreadable or of an unknown format."""


@dataclass(frozen=True)
class Reject:
    """An input that could not be ingested, and why."""

    where: str
    reason: str


@dataclass
class Source:
    url: str
    fs: Any
    path: str
    kind: SourceKind
    files: list[tuple[str, str | None]] = field(default_factory=list)  # (relative path, label)

    @property
    def labelled(self) -> bool:
        return any(label is not None for _, label in self.files)


def open_source(url: str, storage_options: dict[str, Any] | None = None) -> Source:
    """Find out what `url` is: a folder of files or a table file."""
    try:
        fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
        is_dir, exists = fs.isdir(path), fs.exists(path)
    except (OSError, ValueError, ImportError) as e:
        raise SourceError(f"cannot open {url} ({e})", "check the path or URL") from e
    if not exists:
        raise SourceError(f"{url} does not exist", "check the path or URL")
    if "://" not in url:  # lineage must lead back to the files wherever it is read from
        url = str(Path(url).expanduser().resolve())
    if is_dir:
        files = _list_files(fs, path)
        if not files:
            raise SourceError(f"{url} holds no files", "point at a folder with files in it")
        images = all(PurePosixPath(rel).suffix.lower() in IMAGE_FORMATS for rel, _ in files)
        return Source(url, fs, path, "images" if images else "files", files)
    suffix = PurePosixPath(path).suffix.lower()
    kind = TABLE_FORMATS.get(suffix)
    if kind is None:
        raise SourceError(
            f"unknown format '{suffix or path}' for {url}",
            "ingest a folder of files, or a .csv, .tsv, .jsonl or .parquet file",
        )
    return Source(url, fs, path, kind)  # type: ignore[arg-type]


def _list_files(fs: Any, root: str) -> list[tuple[str, str | None]]:
    """Every file under root, sorted; the first subfolder of a file is its label."""
    root = root.rstrip("/")
    out = []
    for full in sorted(fs.find(root)):
        rel = full[len(root) :].lstrip("/")
        parts = rel.split("/")
        if any(part.startswith(".") for part in parts):
            continue  # hidden files and folders (.DS_Store, .git) are not data
        out.append((rel, parts[0] if len(parts) > 1 else None))
    return out


# -- folders of files ---------------------------------------------------------------------


def file_schema(kind: SourceKind, labelled: bool) -> pa.Schema:
    fields = [pa.field("path", pa.string(), nullable=False)]
    if labelled:
        fields.append(pa.field("label", pa.string()))
    fields.append(pa.field("sha256", pa.string(), nullable=False))
    if kind == "images":
        fields += [
            pa.field("image", pa.binary(), nullable=False),
            pa.field("width", pa.int32(), nullable=False),
            pa.field("height", pa.int32(), nullable=False),
            pa.field("format", pa.string(), nullable=False),
        ]
    else:
        fields += [
            pa.field("data", pa.binary(), nullable=False),
            pa.field("size", pa.int64(), nullable=False),
            pa.field("format", pa.string(), nullable=False),
        ]
    return pa.schema(fields)


def read_files(
    fs: Any, root: str, kind: SourceKind, labelled: bool, items: list[tuple[str, str | None]]
) -> tuple[pa.RecordBatch, list[Reject]]:
    """Read, hash and (for images) fully decode a chunk of files. Runs in worker processes."""
    schema = file_schema(kind, labelled)
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    rejects: list[Reject] = []
    for rel, label in items:
        try:
            data = fs.cat_file(f"{root.rstrip('/')}/{rel}")
        except OSError as e:
            rejects.append(Reject(rel, f"unreadable: {e}"))
            continue
        row: dict[str, Any] = {
            "path": rel,
            "label": label,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        if kind == "images":
            decoded = _decode_image(data)
            if isinstance(decoded, str):
                rejects.append(Reject(rel, decoded))
                continue
            row |= {"image": data, "width": decoded[0], "height": decoded[1], "format": decoded[2]}
        else:
            row |= {
                "data": data,
                "size": len(data),
                "format": PurePosixPath(rel).suffix[1:].lower(),
            }
        for name in schema.names:
            columns[name].append(row[name])
    return pa.RecordBatch.from_pydict(columns, schema=schema), rejects


def _decode_image(data: bytes) -> tuple[int, int, str] | str:
    """Width, height and format of a fully decodable image, or the reason it is not one."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # a full decode: truncated or corrupt files are caught here, not in training
            return img.width, img.height, (img.format or "unknown").lower()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        return f"not a readable image: {e}"


# -- tables -------------------------------------------------------------------------------


def read_table(source: Source, rejects: list[Reject]) -> Iterator[pa.RecordBatch]:
    """Stream a table file as record batches; malformed CSV rows go to `rejects`."""
    try:
        if source.kind == "csv":
            yield from _read_csv(source, rejects)
        elif source.kind == "jsonl":
            import pyarrow.json as pj

            with source.fs.open(source.path, "rb") as f:
                yield from pj.read_json(f).to_batches(max_chunksize=65536)
        else:
            import pyarrow.parquet as pq

            with source.fs.open(source.path, "rb") as f:
                yield from pq.ParquetFile(f).iter_batches(batch_size=65536)
    except pa.ArrowInvalid as e:
        raise SourceError(
            f"cannot read {source.url} as {source.kind}: {str(e).splitlines()[0]}",
            "fix the file, or check it is the format its name says",
        ) from e


def _read_csv(source: Source, rejects: list[Reject]) -> Iterator[pa.RecordBatch]:
    import pyarrow.csv as pcsv

    def bad_row(row: Any) -> str:
        rejects.append(Reject(f"line {row.number}" if row.number else "a row", row.text[:200]))
        return "skip"

    delimiter = "\t" if source.path.lower().endswith(".tsv") else ","
    with source.fs.open(source.path, "rb") as f:
        reader = pcsv.open_csv(
            f,
            read_options=pcsv.ReadOptions(block_size=16 << 20),
            parse_options=pcsv.ParseOptions(delimiter=delimiter, invalid_row_handler=bad_row),
        )
        yield from reader
