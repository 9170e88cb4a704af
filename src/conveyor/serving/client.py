"""`conveyor.Client`: call a Conveyor server (or any Open Inference Protocol v2 server).

    with conveyor.Client("http://127.0.0.1:8000", api_key="cvk_...") as client:
        result = client.predict("digits", images=[Path("7.png")])
        result[0]["label"], result.version

Answers of 429 and 503 are retried after their Retry-After (a few times, bounded);
other errors raise the same `ConveyorError` subclasses the server raised, with its
message (which names the bad field). Only httpx is imported.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from conveyor.core.errors import (
    AuthError,
    InvalidInputError,
    ModelNotServedError,
    PayloadTooLargeError,
    ServerBusyError,
    ServingError,
)

_MAX_RETRY_WAIT_S = 10.0


@dataclass(frozen=True)
class Predictions(Sequence[dict[str, Any]]):
    """One prediction per row (`label` and `score`, or `value`), and who answered."""

    model: str
    version: int
    request_id: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    def __getitem__(self, i: Any) -> Any:
        return self.rows[i]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    @property
    def labels(self) -> list[Any]:
        return [row.get("label") for row in self.rows]


class Client:
    """A small synchronous client with retries on 429/503."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
    ) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.retries = retries

    def predict(
        self,
        model: str,
        rows: Sequence[Any] | None = None,
        *,
        images: Sequence[bytes | str | Path] | None = None,
        all_scores: bool = False,
        request_id: str | None = None,
    ) -> Predictions:
        """Rows (lists of numbers or objects of named columns) or image files/bytes."""
        if (rows is None) == (images is None):
            raise ServingError("pass rows or images", "e.g. predict('wine', rows=[{...}])")
        params = {"scores": "all"} if all_scores else None
        headers = {"x-request-id": request_id} if request_id else None
        if images is not None:
            files = [("image", (f"image{i}", _read(im))) for i, im in enumerate(images)]
            response = self._send("POST", f"/predict/{model}", files=files, params=params,
                                  headers=headers)  # fmt: skip
        else:
            assert rows is not None
            response = self._send("POST", f"/predict/{model}", json={"rows": list(rows)},
                                  params=params, headers=headers)  # fmt: skip
        doc = response.json()
        return Predictions(doc["model"], int(doc["version"]), doc["request_id"],
                           doc["predictions"])  # fmt: skip

    def infer(self, model: str, inputs: Any, version: int | None = None) -> dict[str, Any]:
        """A v2 infer call with one input tensor (a numpy array or nested lists)."""
        import numpy as np

        array = np.asarray(inputs)
        meta = self.metadata(model)
        spec = meta["inputs"][0]
        body = {
            "inputs": [
                {
                    "name": spec["name"],
                    "shape": list(array.shape),
                    "datatype": spec["datatype"],
                    "data": array.reshape(-1).tolist(),
                }
            ]
        }
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        result: dict[str, Any] = self._send("POST", path, json=body).json()
        return result

    def metadata(self, model: str) -> dict[str, Any]:
        result: dict[str, Any] = self._send("GET", f"/v2/models/{model}").json()
        return result

    def ready(self) -> bool:
        try:
            return self._http.get("/v2/health/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(self.retries + 1):
            response = self._http.request(method, path, **kwargs)
            if response.status_code < 400:
                return response
            if response.status_code in (429, 503) and attempt < self.retries:
                wait = float(response.headers.get("retry-after", "1") or 1)
                time.sleep(min(wait, _MAX_RETRY_WAIT_S))
                continue
            raise _error(response)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read(image: bytes | str | Path) -> bytes:
    return image if isinstance(image, bytes) else Path(image).read_bytes()


def _error(response: httpx.Response) -> ServingError:
    try:
        doc = response.json()
        message = str(doc.get("error") or doc.get("detail") or response.text)
        where = doc.get("field")
    except ValueError:
        message, where = response.text or response.reason_phrase, None
    status = response.status_code
    if status in (401, 403):
        return AuthError(message, status=status)
    if status == 404:
        return ModelNotServedError(message)
    if status == 413:
        return PayloadTooLargeError(message)
    if status in (400, 422):
        return InvalidInputError(message, field=where)
    if status in (429, 503, 504):
        retry = float(response.headers.get("retry-after", "1") or 1)
        return ServerBusyError(message, retry_after=retry, status=status)
    error = ServingError(f"the server answered {status}: {message}")
    error.status = status
    return error
