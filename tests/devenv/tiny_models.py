"""A tiny python-backend model repository for testing the Triton launcher without real models."""

from __future__ import annotations

import textwrap
from pathlib import Path

CONFIG = """\
name: "add_sub"
backend: "python"
max_batch_size: 8
input [
  { name: "A", data_type: TYPE_FP32, dims: [ 4 ] },
  { name: "B", data_type: TYPE_FP32, dims: [ 4 ] }
]
output [
  { name: "SUM", data_type: TYPE_FP32, dims: [ 4 ] },
  { name: "DIFF", data_type: TYPE_FP32, dims: [ 4 ] },
  { name: "NUMPY_MAJOR", data_type: TYPE_INT32, dims: [ 1 ] }
]
instance_group [ { kind: KIND_CPU, count: 1 } ]
dynamic_batching { max_queue_delay_microseconds: 500 }
parameters { key: "FINALIZE_MARKER", value: { string_value: "%s" } }
"""

MODEL = textwrap.dedent(
    """\
    import json
    from pathlib import Path

    import numpy as np
    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def initialize(self, args):
            params = json.loads(args["model_config"])["parameters"]
            self.marker = Path(params["FINALIZE_MARKER"]["string_value"])

        def execute(self, requests):
            major = np.array([[int(np.__version__.split(".")[0])]], dtype=np.int32)
            responses = []
            for request in requests:
                a = pb_utils.get_input_tensor_by_name(request, "A").as_numpy()
                b = pb_utils.get_input_tensor_by_name(request, "B").as_numpy()
                outputs = [
                    pb_utils.Tensor("SUM", (a + b).astype(np.float32)),
                    pb_utils.Tensor("DIFF", (a - b).astype(np.float32)),
                    pb_utils.Tensor("NUMPY_MAJOR", np.repeat(major, len(a), axis=0)),
                ]
                responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
            return responses

        def finalize(self):
            self.marker.write_text("finalized")
    """
)


def make_repository(root: Path, marker: Path) -> Path:
    model = root / "add_sub"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(CONFIG % marker)
    (model / "1" / "model.py").write_text(MODEL)
    return root
