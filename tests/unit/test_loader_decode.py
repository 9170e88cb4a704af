"""Image decoding: the fast path (OpenCV) gives exactly what Pillow gives."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conveyor.data.loader import decode


def encoded(mode: str, fmt: str, size: tuple[int, int] = (12, 9)) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(0)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode=mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    reference = np.array(Image.open(io.BytesIO(buffer.getvalue())))
    return buffer.getvalue(), reference.reshape(size[1], size[0], -1)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_png_decodes_to_the_exact_pixels_in_hwc(mode: str) -> None:
    data, reference = encoded(mode, "PNG")
    array = decode.decode_image(data, None)
    assert array.dtype == np.uint8
    assert np.array_equal(array, reference)


def test_formats_opencv_lacks_fall_back_to_pillow() -> None:
    data, _ = encoded("RGB", "GIF")
    array = decode.decode_image(data, "RGB")
    assert array.shape == (9, 12, 3)
    gif = np.array(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(array, gif)


def test_mode_conversion() -> None:
    data, _ = encoded("RGB", "PNG")
    assert decode.decode_image(data, "L").shape == (9, 12, 1)


def test_batches_stack_in_either_layout() -> None:
    arrays = [np.zeros((9, 12, 3), dtype=np.uint8) for _ in range(4)]
    assert tuple(decode.images_to_tensor(arrays, "HWC").shape) == (4, 9, 12, 3)
    assert tuple(decode.images_to_tensor(arrays, "CHW").shape) == (4, 3, 9, 12)
    mixed = [*arrays, np.zeros((5, 5, 3), dtype=np.uint8)]
    assert isinstance(decode.images_to_tensor(mixed, "CHW"), list)


def test_pngs_the_fast_paths_skip_still_match_pillow() -> None:
    rng = np.random.default_rng(1)
    palette = Image.fromarray(rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)).quantize(16)
    deep = Image.fromarray(rng.integers(0, 65535, (9, 12), dtype=np.uint16))
    for image, mode in [(palette, "RGB"), (palette, None), (deep, "L")]:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        with Image.open(io.BytesIO(buffer.getvalue())) as img:
            expected = np.array(img.convert(mode) if mode else img)
        got = decode.decode_image(buffer.getvalue(), mode)
        assert np.array_equal(got.reshape(expected.shape), expected), (image.mode, mode)


def test_an_rgb_png_asked_for_in_grey_is_converted_as_pillow_does() -> None:
    data, _ = encoded("RGB", "PNG")
    expected = np.array(Image.open(io.BytesIO(data)).convert("L"))
    assert np.array_equal(decode.decode_image(data, "L")[:, :, 0], expected)


FAULTS_PER_IMAGE = """
import resource, sys
import numpy as np
from conveyor.data.loader import decode
if sys.argv[1] == "tuned":
    decode.keep_freed_memory()
def batch():  # what a worker does per batch: 64 fresh 196 KB images, stacked, all freed
    images = [np.ones((256, 256, 3), np.uint8) for _ in range(64)]
    del images
batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    batch()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / (5 * 64))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator")
def test_loader_workers_reuse_freed_memory_instead_of_faulting_it_in_again() -> None:
    def faults(mode: str) -> float:
        out = subprocess.run(
            [sys.executable, "-c", FAULTS_PER_IMAGE, mode], capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        return float(out.stdout)

    assert faults("default") > 40  # each image's 48 pages are handed back and faulted anew
    assert faults("tuned") < 1
