"""Request payloads to the model's input batch, validated, with errors that name the field.

`POST /predict/{name}` takes JSON rows (`[...]` or `{"rows": [...]}`), each row a list of
numbers, an object of named columns, or for image models a base64 string (or an object
holding one under the preprocessing's column, "image" by default); or images uploaded
as multipart parts or as a raw `image/*` body. Rows then go through the model's stored
`Preprocessing`, the same code training used, and are checked against the signature.

The common case (rows of numbers) costs one `np.array` call; the row-by-row walk that
finds the bad field only runs once that call has failed.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from conveyor.core.errors import InvalidInputError
from conveyor.registry.signature import TensorSpec
from conveyor.serving.source import ServedModel

_NUMERIC = {"f", "i", "u"}
NUMPY_DTYPES = {
    "float32": np.float32,
    "float16": np.float16,
    "float64": np.float64,
    "int64": np.int64,
    "int32": np.int32,
    "int8": np.int8,
    "uint8": np.uint8,
    "bool": np.bool_,
}


def parse_json(body: bytes) -> Any:
    if not body:
        raise InvalidInputError("the request body is empty", 'send JSON: {"rows": [...]}', "body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidInputError(f"the body is not valid JSON ({e})", "send JSON", "body") from e


def rows_of(doc: Any) -> list[Any]:
    """The rows of a /predict document: a list, or an object with "rows" (or "instances")."""
    rows = doc
    if isinstance(doc, dict):
        key = "rows" if "rows" in doc else "instances" if "instances" in doc else None
        if key is None:
            raise InvalidInputError(
                "the JSON object has no 'rows'", 'send {"rows": [row, ...]}', "rows"
            )
        rows = doc[key]
    if not isinstance(rows, list):
        raise InvalidInputError("'rows' must be a list of rows", 'e.g. {"rows": [[...]]}', "rows")
    if not rows:
        raise InvalidInputError("'rows' is empty", "send at least one row", "rows")
    return rows


def model_input(model: ServedModel, rows: list[Any], booleans: bool = True) -> np.ndarray:
    """JSON rows -> the model's input batch (preprocessed, shape- and dtype-checked).

    numpy reads JSON booleans as 0 and 1; `booleans=False` (the body holds no `true` or
    `false`, a check the caller does on the raw bytes at C speed) skips the walk that
    finds them.
    """
    kind = model.preprocessing.kind
    if kind == "image":
        images = [_image_of(model, row, f"rows[{i}]") for i, row in enumerate(rows)]
        return images_input(model, images, [f"rows[{i}]" for i in range(len(rows))])
    if kind == "tabular":
        x = _table(rows, model.preprocessing.columns, booleans)
        x = model.preprocessing.apply(x)
    elif kind == "none":
        x = _numbers(rows, model.signature.input, booleans)
    else:
        raise InvalidInputError(
            f"{model.ref} takes {kind} inputs, which this server cannot preprocess",
            "send the model's input tensor to /v2/models/{name}/infer",
        )
    check_shape(x, model.signature.input, "rows")
    return x


def images_input(model: ServedModel, images: list[bytes], where: Sequence[str]) -> np.ndarray:
    """Encoded images -> the model's input batch; an unreadable one is named by `where`."""
    prep = model.preprocessing
    if prep.kind != "image":
        raise InvalidInputError(
            f"{model.ref} takes {prep.kind} rows, not images", 'send JSON {"rows": [...]}', "body"
        )
    decoded = []
    for data, field in zip(images, where, strict=True):
        try:
            decoded.append(prep.decode(data))
        except Exception as e:  # noqa: BLE001 - any decoder failure is a bad upload
            raise InvalidInputError(
                f"{field}: not a readable image ({e})", "send a PNG or JPEG file", field
            ) from None
    if len({a.shape for a in decoded}) > 1:
        raise InvalidInputError(
            "the images differ in size and the model has no fixed input size",
            "resize them to one size",
            where[0],
        )
    x = prep.normalize(np.stack(decoded), "HWC")
    check_shape(x, model.signature.input, where[0] if len(where) == 1 else "rows")
    return x


def check_shape(x: np.ndarray, spec: TensorSpec, field: str) -> None:
    """Rows must match the signature on every axis after the batch axis."""
    want = spec.shape[1:]
    got = x.shape[1:]
    if len(got) == len(want):
        for w, g in zip(want, got, strict=True):  # a loop: cheaper than any() per request
            if w is not None and w != g:
                break
        else:
            return
    shown = ["any" if w is None else w for w in want]
    raise InvalidInputError(
        f"{field}: each row has shape {list(got)}, the model's input '{spec.name}' takes {shown}",
        "send rows of that shape",
        field,
    )


def _image_of(model: ServedModel, row: Any, field: str) -> bytes:
    column = model.preprocessing.column or "image"
    if isinstance(row, dict):
        if column not in row:
            raise InvalidInputError(
                f"{field}: no '{column}' field", f'send {{"{column}": "<base64>"}}', field
            )
        row, field = row[column], f"{field}.{column}"
    if not isinstance(row, str):
        raise InvalidInputError(
            f"{field}: an image must be a base64 string", "base64-encode the file", field
        )
    try:
        return base64.b64decode(row, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError(
            f"{field}: not valid base64", "base64-encode the file", field
        ) from None


def _numbers(rows: list[Any], spec: TensorSpec, booleans: bool) -> np.ndarray:
    dtype = NUMPY_DTYPES.get(spec.dtype)
    if dtype is None:
        raise InvalidInputError(
            f"input '{spec.name}' has dtype {spec.dtype}", "use /v2 with BYTES tensors", "rows"
        )
    try:
        raw = np.array(rows)
    except (ValueError, TypeError):
        raw = None
    if raw is None or raw.dtype.kind not in _NUMERIC or booleans:
        error = _explain(rows, len(spec.shape) - 1)
        if raw is None or raw.dtype.kind not in _NUMERIC or error is not None:
            raise error or InvalidInputError("rows are not numbers", None, "rows")
    return raw.astype(dtype, copy=False)


def _table(rows: list[Any], columns: list[str], booleans: bool) -> np.ndarray:
    """Rows as objects of named columns (or lists in column order) -> float32 (n, k)."""
    try:
        first = rows[0]
        values = [[row[c] for c in columns] for row in rows] if isinstance(first, dict) else rows
        raw = np.array(values)
    except (KeyError, TypeError, ValueError):
        raw = None
    fits = raw is not None and raw.dtype.kind in _NUMERIC and raw.shape[1:] == (len(columns),)
    if fits and not booleans and raw is not None:
        return raw.astype(np.float32, copy=False)
    return _explain_table(rows, columns)


def _explain_table(rows: list[Any], columns: list[str]) -> np.ndarray:
    """The slow path: walk the rows, name the first bad field, or fill nulls with NaN
    (standardised to the training mean, as training did)."""
    out = np.empty((len(rows), len(columns)), np.float32)
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            for j, c in enumerate(columns):
                if c not in row:
                    raise InvalidInputError(
                        f"rows[{i}]: missing field '{c}'",
                        f"every row needs {', '.join(columns)}",
                        f"rows[{i}].{c}",
                    )
                out[i, j] = _number(row[c], f"rows[{i}].{c}", allow_null=True)
        elif isinstance(row, list):
            if len(row) != len(columns):
                raise InvalidInputError(
                    f"rows[{i}]: {len(row)} values, the model takes {len(columns)} "
                    f"({', '.join(columns)})",
                    "send one value per column, in that order",
                    f"rows[{i}]",
                )
            for j, value in enumerate(row):
                out[i, j] = _number(value, f"rows[{i}][{j}]", allow_null=True)
        else:
            raise InvalidInputError(
                f"rows[{i}]: a row must be an object of columns or a list of values",
                f"e.g. {{{', '.join(repr(c) + ': 0.0' for c in columns[:3])}}}",
                f"rows[{i}]",
            )
    return out


def _explain(rows: list[Any], ndim: int) -> InvalidInputError | None:
    """Why rows of numbers do not make a tensor: the first non-number or odd length
    (None if they do)."""
    first_len: int | None = None
    for i, row in enumerate(rows):
        field = f"rows[{i}]"
        if ndim == 0:
            _number(row, field)
            continue
        if not isinstance(row, list):
            return InvalidInputError(
                f"{field}: expected a list of numbers, got {_kind(row)}",
                "send each row as a list of numbers",
                field,
            )
        error = _explain_nested(row, field, ndim)
        if error is not None:
            return error
        if first_len is None:
            first_len = len(row)
        elif len(row) != first_len:
            return InvalidInputError(
                f"{field}: {len(row)} values where rows[0] has {first_len}",
                "send rows of one length",
                field,
            )
    return None


def _explain_nested(value: Any, field: str, ndim: int) -> InvalidInputError | None:
    if ndim == 0:
        try:
            _number(value, field)
        except InvalidInputError as e:
            return e
        return None
    if not isinstance(value, list):
        return InvalidInputError(f"{field}: expected a list, got {_kind(value)}", None, field)
    lengths = set()
    for j, item in enumerate(value):
        error = _explain_nested(item, f"{field}[{j}]", ndim - 1)
        if error is not None:
            return error
        if isinstance(item, list):
            lengths.add(len(item))
    if len(lengths) > 1:
        return InvalidInputError(f"{field}: ragged lists", "send lists of one length", field)
    return None


def _number(value: Any, field: str, allow_null: bool = False) -> float:
    if value is None and allow_null:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(
            f"{field}: expected a number, got {_kind(value)}", "send a number", field
        )
    return float(value)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return {bool: "a boolean", dict: "an object", list: "a list"}.get(
        type(value), type(value).__name__
    )
