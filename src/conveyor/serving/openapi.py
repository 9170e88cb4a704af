"""OpenAPI entries for the hot-path routes, which are plain Starlette endpoints.

FastAPI documents the routes it owns; these two are written out here so /docs shows
every route a client can call.
"""

from __future__ import annotations

from typing import Any

_ERROR = {
    "description": "An error; `field` names the part of the payload at fault",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "error": {"type": "string"},
                    "field": {"type": "string"},
                    "request_id": {"type": "string"},
                },
            }
        }
    },
}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype", "data"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"type": "string", "example": "FP32"},
        "data": {"type": "array", "items": {}},
    },
}
_V2_INFER: dict[str, Any] = {
    "post": {
        "tags": ["v2"],
        "summary": "Open Inference Protocol v2 infer",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["inputs"],
                        "properties": {
                            "id": {"type": "string"},
                            "inputs": {"type": "array", "items": _TENSOR},
                        },
                    }
                }
            },
        },
        "responses": {
            "200": {
                "description": "The model's outputs",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "model_name": {"type": "string"},
                                "model_version": {"type": "string"},
                                "id": {"type": "string"},
                                "outputs": {"type": "array", "items": _TENSOR},
                            },
                        }
                    }
                },
            },
            "4XX": _ERROR,
            "503": _ERROR,
        },
    }
}

HOT_PATHS: dict[str, Any] = {
    "/predict/{name}": {
        "post": {
            "tags": ["predict"],
            "summary": "Predict labels and scores for JSON rows or uploaded images",
            "parameters": [
                _NAME,
                {
                    "name": "scores",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["all"]},
                    "description": "`all` adds every class's score",
                },
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "rows": {
                                    "type": "array",
                                    "description": "lists of numbers, objects of named "
                                    "columns, or base64 images",
                                    "items": {},
                                }
                            },
                        },
                        "example": {"rows": [[0.1, 0.2, 0.3]]},
                    },
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"image": {"type": "string", "format": "binary"}},
                        }
                    },
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            "responses": {
                "200": {
                    "description": "One prediction per row",
                    "content": {
                        "application/json": {
                            "example": {
                                "model": "digits",
                                "version": 3,
                                "request_id": "1f-2",
                                "predictions": [{"label": "7", "score": 0.98}],
                            }
                        }
                    },
                },
                "4XX": _ERROR,
                "503": _ERROR,
            },
        }
    },
    "/v2/models/{name}/infer": {**_V2_INFER, "parameters": [_NAME]},
    "/v2/models/{name}/versions/{version}/infer": {**_V2_INFER, "parameters": [_NAME, _VERSION]},
}
