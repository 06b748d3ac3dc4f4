"""The python-backend models' request handling, per request: one malformed request gets its own
error and the requests the dynamic batcher put beside it still get their answers.

Unit tests load ``model.py`` with a small stand-in for ``triton_python_backend_utils``; the last test
sends the same bad input to the real server.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from guard.models import paths, repository

REPO = paths.triton_repo("cpu")


def _fake_pb_utils() -> types.ModuleType:
    pb = types.ModuleType("triton_python_backend_utils")

    class Tensor:
        def __init__(self, name: str, array: np.ndarray) -> None:
            self.name, self.array = name, np.asarray(array)

        def as_numpy(self) -> np.ndarray:
            return self.array

    class TritonError:
        def __init__(self, message: str) -> None:
            self.message = message

    class InferenceResponse:
        def __init__(self, output_tensors=None, error=None) -> None:
            self.outputs, self.error = output_tensors or [], error

    pb.Tensor, pb.TritonError, pb.InferenceResponse = Tensor, TritonError, InferenceResponse
    pb.TritonModelException = RuntimeError
    pb.get_input_tensor_by_name = lambda request, name: request.get(name)
    return pb


def _load(model: str, parameters: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _fake_pb_utils())
    spec = importlib.util.spec_from_file_location(f"served_{model}", REPO / model / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    instance = module.TritonPythonModel()
    instance.initialize({"model_config": json.dumps(
        {"parameters": {k: {"string_value": v} for k, v in parameters.items()}})})
    return module, instance


def _request(module, **arrays: np.ndarray) -> dict:
    return {name: module.pb_utils.Tensor(name, a) for name, a in arrays.items()}


GOOD_IDS = np.array([[101, 7592, 2088, 102]], np.int64)


@pytest.fixture
def encoder(monkeypatch):
    if not (REPO / repository.ENCODER_MODEL / "1" / "encoder-int8.onnx").is_file():
        pytest.skip("the encoder is not built (guard models build)")
    return _load(repository.ENCODER_MODEL, {"intra_op_threads": "1", "allow_spinning": "0"}, monkeypatch)


@pytest.mark.parametrize(("ids", "mask", "says"), [
    ([[101, 30522, 102]], None, "token ids"),      # past the vocabulary: ORT failed the whole batch
    ([[101, -1, 102]], None, "token ids"),         # wrapped silently to the last id
    (np.zeros((1, 0)), None, "empty sequence"),    # failed alone, pooled zeros beside others
    ([[101, 7592, 102]], [[1, 5, 1]], "0/1"),       # re-weighted the pooling
    ([[101, 7592, 102]], [[0, 0, 0]], "0/1"),       # pooled to zeros the heads then scored
])
def test_a_bad_encoder_request_fails_alone(encoder, ids, mask, says):
    module, model = encoder
    ids = np.asarray(ids, np.int64)
    mask = np.ones_like(ids) if mask is None else np.asarray(mask, np.int64)
    good = _request(module, INPUT_IDS=GOOD_IDS, ATTENTION_MASK=np.ones_like(GOOD_IDS))
    bad = _request(module, INPUT_IDS=ids, ATTENTION_MASK=mask)
    alone = model.execute([good])[0].outputs[0].as_numpy()
    first, second, third = model.execute([good, bad, good])
    assert second.error is not None and says in second.error.message
    for r in (first, third):
        assert r.error is None and np.allclose(r.outputs[0].as_numpy(), alone, atol=1e-6)


def test_a_bad_heads_request_fails_alone(monkeypatch):
    heads_file = REPO / repository.HEADS_MODEL / "1" / repository.HEADS_FILE
    if not heads_file.is_file():
        pytest.skip("the heads are not placed (guard models build)")
    module, model = _load(repository.HEADS_MODEL, {}, monkeypatch)
    if not model.heads.needs_ids:
        pytest.skip("these heads read no token ids")
    pooled = np.random.default_rng(0).normal(size=(1, 7, 384)).astype(np.float32)
    good = _request(module, POOLED=pooled, INPUT_IDS=GOOD_IDS)
    bad_id = _request(module, POOLED=pooled, INPUT_IDS=np.array([[101, 300000, 102]]))
    bad_rows = _request(module, POOLED=np.concatenate([pooled, pooled]), INPUT_IDS=GOOD_IDS)
    alone = model.execute([good])[0].outputs[0].as_numpy()
    out = model.execute([good, bad_id, bad_rows, good])
    assert "token ids" in out[1].error.message and "rows" in out[2].error.message
    for r in (out[0], out[3]):
        assert r.error is None and np.allclose(r.outputs[0].as_numpy(), alone)


@pytest.mark.triton
def test_the_server_answers_a_bad_request_with_its_own_error(triton_server):
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    try:
        def infer(ids: np.ndarray):
            inputs = [grpcclient.InferInput("INPUT_IDS", list(ids.shape), "INT64"),
                      grpcclient.InferInput("ATTENTION_MASK", list(ids.shape), "INT64")]
            inputs[0].set_data_from_numpy(ids)
            inputs[1].set_data_from_numpy(np.ones_like(ids))
            return client.infer(repository.ENCODER_MODEL, inputs)

        with pytest.raises(grpcclient.InferenceServerException, match="token ids"):
            infer(np.array([[101, 30522, 102]], np.int64))
        assert infer(GOOD_IDS).as_numpy("POOLED").shape == (1, 7, 384)
    finally:
        client.close()
