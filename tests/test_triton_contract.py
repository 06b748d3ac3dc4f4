"""The Triton model repositories are a contract between the configs, the model code and the client.

Parses every ``config.pbtxt`` of both flavours with Triton's own protobuf schema and checks them
against the constants the client (guard.detectors.semantic) and the builder (guard.models.build)
use, plus the ensemble wiring. No server needed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from guard.detectors import semantic
from guard.models import build, paths, repository
from guard.types import CATEGORIES

FLAVOURS = ("cpu", "gpu")
MODELS = (repository.ENCODER_MODEL, repository.HEADS_MODEL, repository.CLASSIFIER_MODEL)
INT64, FP32 = mc.DataType.Value("TYPE_INT64"), mc.DataType.Value("TYPE_FP32")
STRING = mc.DataType.Value("TYPE_STRING")


def _configs(flavour: str) -> dict[str, mc.ModelConfig]:
    repo = paths.triton_repo(flavour)  # type: ignore[arg-type]
    out = {}
    for path in sorted(repo.glob("*/config.pbtxt")):
        cfg = text_format.Parse(path.read_text(), mc.ModelConfig())
        assert cfg.name == path.parent.name, f"{path}: name {cfg.name!r} != folder"
        out[cfg.name] = cfg
    return out


def _tensors(items) -> dict[str, tuple[int, list[int]]]:  # noqa: ANN001 - protobuf repeated field
    return {t.name: (t.data_type, list(t.dims)) for t in items}


def _param(cfg: mc.ModelConfig, key: str) -> str:
    return cfg.parameters[key].string_value


@pytest.fixture(params=FLAVOURS)
def configs(request: pytest.FixtureRequest) -> dict[str, mc.ModelConfig]:
    return _configs(request.param)


def test_every_flavour_has_the_same_models() -> None:
    for flavour in FLAVOURS:
        assert set(_configs(flavour)) == set(MODELS), flavour


def test_client_tensors(configs: dict[str, mc.ModelConfig]) -> None:
    clf = configs[semantic.DEFAULT_MODEL]
    assert _tensors(clf.input) == {name: (INT64, [-1]) for name in semantic.INPUTS}
    assert _tensors(clf.output) == {semantic.OUTPUT: (FP32, [len(CATEGORIES)]),
                                    semantic.VERSION_OUTPUT: (STRING, [1])}
    assert mc.DataType.Name(INT64) == f"TYPE_{semantic.INPUT_DTYPE}"
    assert mc.DataType.Name(FP32) == f"TYPE_{semantic.OUTPUT_DTYPE}"
    for cfg in configs.values():
        assert cfg.max_batch_size == semantic.MAX_BATCH, cfg.name


def test_encoder_and_heads_tensors(configs: dict[str, mc.ModelConfig]) -> None:
    enc, heads = configs[repository.ENCODER_MODEL], configs[repository.HEADS_MODEL]
    assert _tensors(enc.input) == {build.INPUT_IDS: (INT64, [-1]), build.ATTENTION_MASK: (INT64, [-1])}
    assert _tensors(enc.output) == {build.POOLED: (FP32, [build.N_POOLED, build.HIDDEN])}
    assert _tensors(heads.input) == {build.POOLED: (FP32, [build.N_POOLED, build.HIDDEN]),
                                     build.INPUT_IDS: (INT64, [-1])}
    assert all(i.allow_ragged_batch for i in heads.input if i.name == build.INPUT_IDS)
    assert _tensors(heads.output) == {semantic.OUTPUT: (FP32, [len(CATEGORIES)]),
                                      semantic.VERSION_OUTPUT: (STRING, [1])}
    assert list(enc.dynamic_batching.preferred_batch_size) == [8, 16, 32]
    assert enc.dynamic_batching.max_queue_delay_microseconds == 2000
    assert heads.backend == "python" and _param(heads, "heads_file") == repository.HEADS_FILE


def test_ensemble_wiring(configs: dict[str, mc.ModelConfig]) -> None:
    """Every step reads tensors that exist (ensemble inputs or earlier outputs) with matching types."""
    clf = configs[repository.CLASSIFIER_MODEL]
    assert clf.platform == "ensemble"
    available = _tensors(clf.input)
    for step in clf.ensemble_scheduling.step:
        model = configs[step.model_name]
        model_in, model_out = _tensors(model.input), _tensors(model.output)
        assert set(step.input_map) == set(model_in), step.model_name
        for model_tensor, ensemble_tensor in step.input_map.items():
            assert ensemble_tensor in available, (step.model_name, ensemble_tensor)
            assert available[ensemble_tensor] == model_in[model_tensor], (step.model_name, model_tensor)
        for model_tensor, ensemble_tensor in step.output_map.items():
            available[ensemble_tensor] = model_out[model_tensor]
    for name, spec in _tensors(clf.output).items():
        assert available.get(name) == spec, name


def test_cpu_flavour_specifics() -> None:
    cfgs = _configs("cpu")
    enc = cfgs[repository.ENCODER_MODEL]
    assert enc.backend == "python"
    assert all(i.allow_ragged_batch for i in enc.input), "the python model pads ragged requests itself"
    assert _param(enc, "model_file") == repository.ENCODER_FILE["cpu"]
    assert _param(enc, "intra_op_threads") and _param(enc, "inter_op_threads")
    assert int(_param(enc, "max_seq_len")) == build.MAX_SEQ_LEN
    for name in (repository.ENCODER_MODEL, repository.HEADS_MODEL):
        assert (paths.triton_repo("cpu") / name / "1" / "model.py").is_file()


def test_gpu_flavour_specifics() -> None:
    enc = _configs("gpu")[repository.ENCODER_MODEL]
    assert enc.backend == "onnxruntime"
    assert [g.kind for g in enc.instance_group] == [mc.ModelInstanceGroup.Kind.Value("KIND_GPU")]
    (trt,) = enc.optimization.execution_accelerators.gpu_execution_accelerator
    assert trt.name == "tensorrt" and trt.parameters["precision_mode"] == "FP16"
    for key in ("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes"):
        names = {part.split(":")[0] for part in trt.parameters[key].split(",")}
        assert names == {build.INPUT_IDS, build.ATTENTION_MASK}, key
    max_batch, max_len = trt.parameters["trt_profile_max_shapes"].split(",")[0].split(":")[1].split("x")
    assert (int(max_batch), int(max_len)) == (semantic.MAX_BATCH, build.MAX_SEQ_LEN)


def test_heads_model_code_is_shared() -> None:
    """The GPU image gets a copy (no symlinks out of the repository); keep them identical."""
    rel = Path(repository.HEADS_MODEL) / "1" / "model.py"
    assert (paths.triton_repo("gpu") / rel).read_bytes() == (paths.triton_repo("cpu") / rel).read_bytes()


def _tuple_constants(src: str) -> dict[str, object]:
    """The module-level ``A, B = "a", "b"`` assignments of a python model."""
    consts: dict[str, object] = {}
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Tuple):
            names = [t.id for t in node.targets[0].elts if isinstance(t, ast.Name)]
            consts.update(zip(names, ast.literal_eval(node.value), strict=True))
    return consts


def test_python_models_use_the_contract_names() -> None:
    """The self-contained python models declare the same tensor names as the builder and client."""
    def src(model: str) -> str:
        return (paths.triton_repo("cpu") / model / "1" / "model.py").read_text()

    assert _tuple_constants(src(repository.ENCODER_MODEL)) == {
        "INPUT_IDS": build.INPUT_IDS, "ATTENTION_MASK": build.ATTENTION_MASK, "POOLED": build.POOLED}
    assert _tuple_constants(src(repository.HEADS_MODEL)) == {
        "POOLED": build.POOLED, "INPUT_IDS": build.INPUT_IDS, "PROBS": semantic.OUTPUT,
        "HEADS_VERSION": semantic.VERSION_OUTPUT}


@pytest.mark.parametrize("int8", [False, True], ids=["fp32", "int8"])
def test_onnx_graph_names_match_the_configs(int8: bool) -> None:
    """The ORT backend (GPU) binds the graph's own tensor names, so they must be the config's."""
    from safetensors.numpy import load_file

    weights = load_file(str(paths.weights_dir() / "model.safetensors"))
    graph = build.build_graph(weights, int8=int8).graph
    enc = _configs("gpu")[repository.ENCODER_MODEL]
    assert [i.name for i in graph.input] == [i.name for i in enc.input]
    assert [o.name for o in graph.output] == [o.name for o in enc.output]
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT64 for i in graph.input)
