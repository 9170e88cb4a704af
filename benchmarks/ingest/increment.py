"""How many bytes a new version costs: add 1% more images, then remove 1%.

    .venv/bin/python benchmarks/ingest/increment.py [--images DIR]

Copies the generated image folder to a scratch place, ingests it, adds 1% new files
(copies of existing images with one pixel changed, spread over every class), ingests
again, deletes 1% of the files from one folder, then 1% spread over all folders, ingesting
after each; prints bytes written per version.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import tempfile
from pathlib import Path

from PIL import Image

from conveyor import Workspace

DEFAULT = Path(__file__).parents[1] / ".data" / "ingest" / "images-50000" / "images"


def tweak(png: bytes, rng: random.Random) -> bytes:
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.putpixel((0, 0), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=DEFAULT)
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "images"
        shutil.copytree(args.images, source)
        files = sorted(source.glob("*/*.png"))
        ws = Workspace.init(Path(tmp) / "ws")
        first = ws.datasets.ingest(source, "bench")
        rows = []
        rows.append(("v1: ingest", first.version.rows, first.written_bytes, first.version))
        for n, original in enumerate(rng.sample(files, len(files) // 100)):
            target = original.parent / f"added-{n:05d}.png"
            target.write_bytes(tweak(original.read_bytes(), rng))
        added = ws.datasets.ingest(source, "bench")
        rows.append(("v2: +1% files", added.version.rows, added.written_bytes, added.version))
        one_class = sorted(source.glob(f"{files[0].parent.name}/*.png"))
        for path in one_class[: len(files) // 100]:  # e.g. a bad batch found in one folder
            path.unlink()
        clustered = ws.datasets.ingest(source, "bench")
        rows.append(
            (
                "v3: -1% files, one folder",
                clustered.version.rows,
                clustered.written_bytes,
                clustered.version,
            )
        )
        remaining = sorted(source.glob("*/*.png"))
        for path in rng.sample(remaining, len(files) // 100):
            path.unlink()
        spread = ws.datasets.ingest(source, "bench")
        rows.append(
            ("v4: -1% files, all over", spread.version.rows, spread.written_bytes, spread.version)
        )
        report = [
            {
                "version": name,
                "rows": count,
                "written_bytes": written,
                "version_bytes": v.manifest.bytes,
                "written_fraction": round(written / v.manifest.bytes, 4),
                "shards": len(v.manifest.shards),
            }
            for name, count, written, v in rows
        ]
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
