"""Contender: MosaicML Streaming's MDSWriter (run with benchmarks/.envs/mds/bin/python).

    python contender_mds.py --kind images|csv --source PATH --out DIR

Images: one sample per file, {"image": the PNG's bytes as they are ("bytes"), "label":
"int"}. CSV: one sample per row, parsed with the csv module into typed columns (int64,
float64, str). Shards are zstd-compressed (MDSWriter's default 64 MiB size limit). The
timed part lists or parses the input, writes every sample and closes the writer.
"""

from __future__ import annotations

import csv
from pathlib import Path

import streaming
from _common import (
    CSV_COLUMNS,
    Timer,
    contender_args,
    emit,
    list_images,
    parse_row,
    tree_bytes,
    tree_files,
)
from streaming import MDSWriter

MDS_ENCODING = {"int": "int64", "float": "float64", "str": "str"}


def write_images(source: Path, out: Path) -> int:
    columns = {"image": "bytes", "label": "int"}
    count = 0
    with MDSWriter(out=str(out), columns=columns, compression="zstd") as writer:
        for path, label in list_images(source):
            writer.write({"image": path.read_bytes(), "label": label})
            count += 1
    return count


def write_csv(source: Path, out: Path) -> int:
    columns = {name: MDS_ENCODING[kind] for name, kind in CSV_COLUMNS}
    count = 0
    with (
        MDSWriter(out=str(out), columns=columns, compression="zstd") as writer,
        source.open(newline="", encoding="utf-8") as f,
    ):
        reader = csv.reader(f)
        header = next(reader)
        if header != [name for name, _ in CSV_COLUMNS]:
            raise SystemExit(f"contender_mds: unexpected CSV header {header}")
        for fields in reader:
            writer.write(parse_row(fields))
            count += 1
    return count


def main() -> None:
    args = contender_args(__doc__.splitlines()[0])
    write = write_images if args.kind == "images" else write_csv
    with Timer() as timer:
        items = write(args.source, args.out)
    emit(
        {
            "contender": "mds",
            "kind": args.kind,
            "seconds": timer.seconds,
            "items": items,
            "output_bytes": tree_bytes(args.out),
            "output_files": tree_files(args.out),
            "version": streaming.__version__,
        }
    )


if __name__ == "__main__":
    main()
