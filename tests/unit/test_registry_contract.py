"""Signature, Preprocessing, model refs and gate files: what serving and users rely on."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conveyor.core.errors import ConveyorError
from conveyor.registry import Preprocessing, PreprocessingError, Signature, TensorSpec
from conveyor.registry.gates import GateSpecError, parse_gate
from conveyor.registry.preprocessing import _decode_pillow, resize_bilinear
from conveyor.registry.refs import ModelRef, parse_model_ref
from conveyor.registry.signature import SignatureError


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def test_signature_and_preprocessing_round_trip_through_json() -> None:
    sig = Signature(
        inputs=[TensorSpec("image", "float32", [None, 1, 8, 8])],
        outputs=[TensorSpec("logits", "float32", [None, 3])],
        labels=["a", "b", "c"],
    )
    assert Signature.from_dict(json.loads(json.dumps(sig.to_dict()))) == sig
    pre = Preprocessing.image("RGB", [4, 6], mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2])
    data = json.loads(json.dumps(pre.to_dict()))
    assert data["kind"] == "image" and data["size"] == [4, 6] and data["layout"] == "CHW"
    assert Preprocessing.from_dict(data) == pre


def test_bad_signatures_and_specs_say_what_is_wrong() -> None:
    with pytest.raises(SignatureError, match="dtype"):
        TensorSpec("x", "float128", [None, 3])
    with pytest.raises(SignatureError, match="one label per class"):
        Signature(
            [TensorSpec("x", "float32", [None, 2])], [TensorSpec("y", "float32", [None, 3])], ["a"]
        )
    with pytest.raises(PreprocessingError, match="mode"):
        Preprocessing.image("CMYK", [8, 8])
    with pytest.raises(PreprocessingError, match="unknown preprocessing field"):
        Preprocessing.from_dict({"kind": "none", "colour": 1})


def test_image_preprocessing_gives_scaled_chw_floats_from_png_bytes() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    out = Preprocessing.image("L", [8, 8]).apply([_png(pixels), _png(pixels)])
    assert out.shape == (2, 1, 8, 8) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], pixels / 255, atol=1e-6)


def test_the_loader_decoder_and_the_runner_decoder_see_the_same_pixels() -> None:
    from conveyor.data.loader.decode import decode_image

    rng = np.random.default_rng(1)
    for mode, shape in (("L", (9, 7)), ("RGB", (9, 7, 3))):
        data = _png(rng.integers(0, 256, shape, dtype=np.uint8))
        assert np.array_equal(decode_image(data, mode), _decode_pillow(data, mode))


def test_resize_matches_the_recipes_torch_resize_within_one_level() -> None:
    import torch

    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
    for h, w in ((32, 32), (8, 5), (40, 7)):
        ours = resize_bilinear(image, h, w).astype(int)
        tensor = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0).float()
        theirs = torch.nn.functional.interpolate(tensor, size=(h, w), mode="bilinear")
        expected = theirs.squeeze(0).round().clamp(0, 255).permute(1, 2, 0).numpy().astype(int)
        assert np.abs(ours - expected).max() <= 1
        assert (ours != expected).mean() < 0.01


def test_tabular_preprocessing_takes_columns_records_or_arrays_and_fills_missing() -> None:
    pre = Preprocessing.tabular(["a", "b"], mean=[1.0, 2.0], std=[2.0, 4.0])
    by_column = pre.apply({"a": [3, None], "b": [2, 6]})
    by_record = pre.apply([{"a": 3, "b": 2}, {"a": None, "b": 6}])
    by_array = pre.apply(np.array([[3, 2], [np.nan, 6]]))
    expected = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    for out in (by_column, by_record, by_array):
        np.testing.assert_array_equal(out, expected)
    with pytest.raises(PreprocessingError, match="missing feature column"):
        pre.apply({"a": [1]})


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("digits", ModelRef("digits")),
        ("digits@latest", ModelRef("digits")),
        ("digits@v3", ModelRef("digits", number=3)),
        ("digits@production", ModelRef("digits", alias="production")),
        ("digits:production", ModelRef("digits", alias="production")),
    ],
)
def test_model_refs(spec: str, expected: ModelRef) -> None:
    assert parse_model_ref(spec) == expected


def test_bad_model_refs_are_errors_with_a_hint() -> None:
    with pytest.raises(ConveyorError, match="use digits@v3"):
        parse_model_ref("digits@V 3")


def test_gate_files_are_validated_field_by_field(tmp_path: Path) -> None:
    good = tmp_path / "gate.yaml"
    good.write_text(
        "data: digits@v3\nchecks:\n  - {kind: metric, metric: accuracy, min: 0.9}\n"
        "  - {kind: latency, p99_ms: 20}\n  - {kind: approval}\n"
    )
    gate = parse_gate(good)
    assert [c.kind for c in gate.checks] == ["metric", "latency", "approval"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("checks:\n  - {kind: metric, metrik: accuracy}\n")
    with pytest.raises(GateSpecError, match=r"checks\.0\.metric\.metrik"):
        parse_gate(bad)
    with pytest.raises(GateSpecError, match="no gate file"):
        parse_gate(tmp_path / "missing.yaml")
