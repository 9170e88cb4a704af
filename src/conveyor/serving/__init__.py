"""Serving: an inference API with dynamic batching, rollouts, auth, metrics and a
prediction log (spec: PREDICTIONS.md).

`conveyor serve digits:production` runs it; `serve(...)` does the same from Python and
`create_app(...)` builds the ASGI app for any server. Importing this package imports
neither FastAPI nor onnxruntime: the modules that need them are imported when used.
"""

from __future__ import annotations
