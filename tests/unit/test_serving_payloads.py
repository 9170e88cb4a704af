"""Payloads to model inputs: preprocessing as in training, errors that name the field."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from conveyor.core.errors import InvalidInputError, ServingError
from conveyor.registry.preprocessing import Preprocessing
from conveyor.registry.signature import Signature, TensorSpec
from conveyor.serving import payloads, v2
from conveyor.serving.answers import Answerer
from conveyor.serving.source import ModelRef, ServedModel, StaticSource, parse_ref, parse_weighted


def model(
    prep: Preprocessing, shape: list[int | None], labels: list[str] | None = None
) -> ServedModel:
    classes = len(labels) if labels else 3
    outputs = [TensorSpec("logits", "float32", [None, classes])]
    signature = Signature([TensorSpec("x", "float32", shape)], outputs, labels or [])
    return ServedModel("m", 1, signature, prep)


TABLE = model(Preprocessing.tabular(["a", "b"], [1.0, 10.0], [2.0, 5.0]), [None, 2])
TENSOR = model(Preprocessing("none"), [None, 3])
IMAGE = model(Preprocessing.image("L", [4, 4], mean=[0.5], std=[0.25]), [None, 1, 4, 4])


def png(size: tuple[int, int] = (8, 8), value: int = 255) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", size, value).save(buffer, "PNG")
    return buffer.getvalue()


def test_tabular_rows_are_standardised_as_in_training() -> None:
    named = payloads.model_input(TABLE, [{"a": 3, "b": 20, "extra": "ignored"}])
    listed = payloads.model_input(TABLE, [[3, 20]])
    expected = np.array([[1.0, 2.0]], np.float32)
    np.testing.assert_allclose(named, expected)
    np.testing.assert_allclose(listed, expected)
    filled = payloads.model_input(TABLE, [{"a": None, "b": 20}])
    np.testing.assert_allclose(filled, [[0.0, 2.0]])  # null -> the training mean


def test_images_are_decoded_resized_and_normalised_like_training() -> None:
    data = png(value=255)
    x = payloads.model_input(IMAGE, [base64.b64encode(data).decode()])
    same = IMAGE.preprocessing.apply([data])
    assert x.shape == (1, 1, 4, 4)
    np.testing.assert_array_equal(x, same)
    np.testing.assert_allclose(x, 2.0)  # (1.0 - 0.5) / 0.25
    uploaded = payloads.images_input(IMAGE, [data], ["image"])
    np.testing.assert_array_equal(uploaded, x)


@pytest.mark.parametrize(
    ("target", "rows", "field", "words"),
    [
        (TABLE, [{"a": 1}], "rows[0].b", "missing field 'b'"),
        (TABLE, [{"a": 1, "b": "2"}], "rows[0].b", "the string '2'"),
        (TABLE, [[1, 2], [1]], "rows[1]", "1 values"),
        (TABLE, [7], "rows[0]", "object of columns"),
        (TENSOR, [[1, 2, 3], [1, 2]], "rows[1]", "2 values where rows[0] has 3"),
        (TENSOR, [[1, 2, "x"]], "rows[0][2]", "expected a number"),
        (TENSOR, [[1, 2, 3, 4]], "rows", "takes [3]"),
        (TENSOR, [{"x": 1}], "rows[0]", "an object"),
        (IMAGE, [{"img": "..."}], "rows[0]", "no 'image' field"),
        (IMAGE, ["not base64!"], "rows[0]", "not valid base64"),
        (IMAGE, [base64.b64encode(b"GIF8 nope").decode()], "rows[0]", "not a readable image"),
    ],
)
def test_bad_rows_name_the_field(
    target: ServedModel, rows: list[object], field: str, words: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        payloads.model_input(target, rows)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_booleans_are_refused_when_the_body_may_hold_them() -> None:
    with pytest.raises(InvalidInputError) as caught:
        payloads.model_input(TENSOR, [[1, True, 3]], booleans=True)
    assert caught.value.field == "rows[0][1]"


@pytest.mark.parametrize(
    ("doc", "words"), [({"x": 1}, "no 'rows'"), ({"rows": {}}, "list"), ([], "empty")]
)
def test_documents_without_rows_are_refused(doc: object, words: str) -> None:
    with pytest.raises(InvalidInputError, match=words):
        payloads.rows_of(doc)


def test_v2_request_and_response() -> None:
    request = {
        "id": "7",
        "inputs": [
            {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [[1, 2, 3], [4, 5, 6]]}
        ],
    }
    x, request_id, raw = v2.infer_input(TENSOR, request)
    assert x.shape == (2, 3) and x.dtype == np.float32 and request_id == "7" and raw == []
    answer = v2.infer_response(TENSOR, np.zeros((2, 3), np.float32), "7")
    assert answer["outputs"][0] == {
        "name": "logits",
        "datatype": "FP32",
        "shape": [2, 3],
        "data": [0.0] * 6,
    }
    meta = v2.model_metadata(TENSOR, [1], "onnx")
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "y"}, "inputs[0].name"),
        ({"datatype": "INT64"}, "inputs[0].datatype"),
        ({"shape": [2, 2]}, "inputs[0].data"),
        ({"shape": "2x3"}, "inputs[0].shape"),
        ({"data": ["a"] * 6}, "inputs[0].data"),
    ],
)
def test_v2_errors_name_the_field(change: dict[str, object], field: str) -> None:
    tensor = {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": list(range(6)), **change}
    with pytest.raises(InvalidInputError) as caught:
        v2.infer_input(TENSOR, {"inputs": [tensor]})
    assert caught.value.field == field


def test_v2_bytes_inputs_to_image_models_are_preprocessed() -> None:
    encoded = base64.b64encode(png()).decode()
    x, _, raw = v2.infer_input(
        IMAGE, {"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": [encoded]}]}
    )
    assert x.shape == (1, 1, 4, 4) and raw == [png()]


def test_answers_are_softmaxed_labels() -> None:
    answerer = Answerer(model(Preprocessing("none"), [None, 3], ["cat", "dog", "eel"]))
    preds = answerer.predictions(np.array([[0.0, 5.0, 0.0], [9.0, 0.0, 0.0]], np.float32))
    assert [p["label"] for p in preds] == ["dog", "cat"]
    assert 0.98 < preds[0]["score"] < 1.0
    full = answerer.predictions(np.array([[0.0, 0.0, 0.0]], np.float32), all_scores=True)
    assert full[0]["scores"] == pytest.approx({"cat": 1 / 3, "dog": 1 / 3, "eel": 1 / 3})


def test_references_and_weights_parse_or_say_how() -> None:
    assert parse_ref("digits:production") == ModelRef("digits", "production")
    assert parse_ref("digits@v3").pinned == 3 and parse_ref("digits@3").pinned == 3
    assert parse_ref("digits").selector == "production"
    with pytest.raises(ServingError, match="NAME@vN"):
        parse_ref("bad name!")
    canary = parse_weighted("digits@v4:10%")
    assert (canary.name, canary.version, canary.weight) == ("digits", 4, pytest.approx(0.1))
    assert parse_weighted("digits@4:0.25").weight == 0.25
    with pytest.raises(ServingError):
        parse_weighted("digits@v4:150%")


def test_static_source_follows_its_aliases() -> None:
    source = StaticSource()
    source.add(TENSOR, alias="production")
    assert source.resolve("m", "production") == 1 and source.resolve("m", "latest") == 1
    with pytest.raises(ServingError, match="promote"):
        source.resolve("m", "staging")


def test_a_rows_answer_does_not_depend_on_its_batch() -> None:
    answerer = Answerer(model(Preprocessing("none"), [None, 3], ["cat", "dog", "eel"]))
    logits = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    together = answerer.predictions(logits)
    alone = [answerer.predictions(logits[i : i + 1])[0] for i in range(40)]
    assert together == alone
