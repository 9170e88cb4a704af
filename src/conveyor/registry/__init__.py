"""The model registry: versions with lineage, aliases moved through gates, export.

`ws.models.register(...)`, `ws.models.get("digits@production")`, `ws.models.promote(...)`.
The version manifest and the export folder are specified in MODEL.md beside this file.
Importing this package imports neither torch nor onnx; registering and exporting do.
"""

from __future__ import annotations

from conveyor.registry.preprocessing import Preprocessing, PreprocessingError
from conveyor.registry.signature import Signature, SignatureError, TensorSpec

__all__ = ["Preprocessing", "PreprocessingError", "Signature", "SignatureError", "TensorSpec"]
