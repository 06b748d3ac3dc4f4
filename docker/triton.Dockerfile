# NVIDIA Triton with guard's numpy heads importable by the python backend (harm_heads imports
# guard.models.heads, the same code the in-process detector runs). The encoder runs on the
# onnxruntime backend with TensorRT FP16; its ONNX comes from `guard models build` (models service).
#
# The image's Python is 3.10 (Ubuntu 22.04) and guard as a package needs 3.11, so guard is not
# pip-installed here: its source goes on PYTHONPATH. The stub imports only guard.models.heads and
# what that imports (numpy, no 3.11-only syntax); tests/test_compose.py holds that to 3.10.
FROM nvcr.io/nvidia/tritonserver:24.08-py3
WORKDIR /opt/guard
COPY guard ./guard
ENV PYTHONPATH=/opt/guard
RUN pip install --no-cache-dir "numpy<2"
