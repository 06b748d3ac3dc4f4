# NVIDIA Triton with guard's numpy heads importable by the python backend (harm_heads imports
# guard.models.heads, the same code the in-process detector runs). The encoder runs on the
# onnxruntime backend with TensorRT FP16; its ONNX comes from `guard models build` (models service).
FROM nvcr.io/nvidia/tritonserver:24.08-py3
WORKDIR /opt/guard
COPY pyproject.toml README.md ./
COPY guard ./guard
COPY streams ./streams
RUN pip install --no-cache-dir --no-deps . && pip install --no-cache-dir "numpy<2"
