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


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator")
def test_glibc_takes_the_setting_that_keeps_freed_memory() -> None:
    # What it saves (page faults an image) depends on the machine's allocator state and
    # is measured by benchmarks/loader/freed_memory.py; here, only that glibc took it.
    # In a fresh process, so this test process's allocator is left as it was.
    code = "from conveyor.data.loader import decode; print(decode.keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
