"""ONNX Runtime sessions built once, with explicit providers and thread counts.

``prepare_model`` rewrites a verified model file for fast CPU inference and caches the result
under the cache directory, keyed by the source file's sha256 and the rewrite's options:

* graph inputs that no node consumes, or that merely shadow an initializer, are removed
  (the SFace file lists such stale inputs and onnxruntime warns or refuses);
* constant ``DequantizeLinear`` nodes (block-quantised weights) are evaluated once and
  replaced by float32 initializers, so they are not dequantised on every run;
* ``PRelu`` nodes with a constant slope are rewritten as ``x + (slope - 1) * min(x, 0)``
  (the same values; onnxruntime's CPU PRelu broadcasts a (C, 1, 1) slope slowly: about half
  of SFace's run time, against a sixth for Min/Mul/Add);
* optionally the batch dimension is made dynamic so many faces run in one call.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from service.config import RuntimeSettings
from service.errors import ModelUnavailable

log = logging.getLogger(__name__)

_PREPARE_VERSION = 1


@dataclass(frozen=True, slots=True)
class PrepareOptions:
    fold_dequantize: bool = True
    dynamic_batch: bool = False
    rewrite_prelu: bool = True

    def tag(self) -> str:
        tag = f"v{_PREPARE_VERSION}-fold{int(self.fold_dequantize)}-dyn{int(self.dynamic_batch)}"
        return tag + ("-prelu" if self.rewrite_prelu else "")


def strip_stale_inputs(model: onnx.ModelProto) -> int:
    """Remove graph inputs that no node consumes or that duplicate an initializer."""
    consumed = {name for node in model.graph.node for name in node.input}
    initializers = {init.name for init in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name in consumed and i.name not in initializers]
    removed = len(model.graph.input) - len(keep)
    if removed:
        del model.graph.input[:]
        model.graph.input.extend(keep)
    return removed


def dequantize(
    x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int, block_size: int
) -> np.ndarray:
    """ONNX DequantizeLinear (opset 21 semantics: per-tensor, per-axis and blocked) in numpy."""
    values = x.astype(np.float32)
    zp = np.zeros_like(scale, dtype=np.float32) if zero_point is None else zero_point.astype(np.float32)
    scale = scale.astype(np.float32)
    if scale.size == 1:
        out: np.ndarray = (values - zp.reshape(())) * scale.reshape(())
        return out
    axis = axis % x.ndim
    if block_size > 0:
        # Blocked: scale has x's rank with ceil(x.shape[axis] / block_size) along ``axis``.
        scale = np.repeat(scale, block_size, axis=axis).take(range(x.shape[axis]), axis=axis)
        zp = np.repeat(zp, block_size, axis=axis).take(range(x.shape[axis]), axis=axis)
        out = (values - zp) * scale
        return out
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    out = (values - zp.reshape(shape)) * scale.reshape(shape)
    return out


def fold_constant_dequantize(model: onnx.ModelProto) -> int:
    """Replace DequantizeLinear nodes whose inputs are all initializers by float32 initializers."""
    arrays = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    folded: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or not all(i in arrays for i in node.input if i):
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        zero_point = arrays[node.input[2]] if len(node.input) > 2 and node.input[2] else None
        value = dequantize(
            arrays[node.input[0]],
            arrays[node.input[1]],
            zero_point,
            int(attrs.get("axis", 1)),
            int(attrs.get("block_size", 0)),
        )
        model.graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        folded.append(node)
    if not folded:
        return 0
    keep_nodes = [n for n in model.graph.node if n not in folded]
    del model.graph.node[:]
    model.graph.node.extend(keep_nodes)
    # Drop quantised initializers nothing reads any more.
    consumed = {name for node in model.graph.node for name in node.input}
    outputs = {o.name for o in model.graph.output}
    keep_inits = [i for i in model.graph.initializer if i.name in consumed or i.name in outputs]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep_inits)
    return len(folded)


def rewrite_constant_prelu(model: onnx.ModelProto) -> int:
    """Replace ``PRelu(x, slope)`` with an initializer slope by ``x + (slope - 1) * min(x, 0)``.

    Exact up to float rounding (for x >= 0 both give x; for x < 0 both give slope * x), and the
    slope broadcasts against x the same way. Returns the number of nodes rewritten.
    """
    slopes = {init.name: init for init in model.graph.initializer}
    zero_name = "prepare__prelu_zero"
    nodes: list[onnx.NodeProto] = []
    added: list[onnx.TensorProto] = []
    rewritten = 0
    for node in model.graph.node:
        if node.op_type != "PRelu" or len(node.input) != 2 or node.input[1] not in slopes:
            nodes.append(node)
            continue
        x, slope_name = node.input
        y = node.output[0]
        slope = numpy_helper.to_array(slopes[slope_name]).astype(np.float32)
        added.append(numpy_helper.from_array(slope - 1.0, f"{y}__prelu_slope_m1"))
        nodes.extend(
            [
                onnx.helper.make_node("Min", [x, zero_name], [f"{y}__prelu_neg"], name=f"{node.name}__min"),
                onnx.helper.make_node(
                    "Mul", [f"{y}__prelu_neg", f"{y}__prelu_slope_m1"], [f"{y}__prelu_scaled"], name=f"{node.name}__mul"
                ),
                onnx.helper.make_node("Add", [x, f"{y}__prelu_scaled"], [y], name=f"{node.name}__add"),
            ]
        )
        rewritten += 1
    if not rewritten:
        return 0
    added.append(numpy_helper.from_array(np.zeros((), dtype=np.float32), zero_name))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(added)
    # Drop slopes nothing reads any more.
    consumed = {name for n in model.graph.node for name in n.input} | {o.name for o in model.graph.output}
    keep = [i for i in model.graph.initializer if i.name in consumed]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    return rewritten


def make_batch_dynamic(model: onnx.ModelProto) -> None:
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    del model.graph.value_info[:]


def prepare_model(source: Path, sha256: str, cache_dir: Path, options: PrepareOptions) -> Path:
    """A cached, rewritten copy of ``source`` (already verified to have ``sha256``)."""
    target = cache_dir / f"{sha256[:16]}-{options.tag()}.onnx"
    if target.is_file() and target.stat().st_size > 0:
        return target
    try:
        model = onnx.load(str(source))
    except Exception as exc:  # onnx raises DecodeError and others for damaged protobufs
        raise ModelUnavailable(f"model file {source.name} could not be parsed: {exc}") from exc
    stale = strip_stale_inputs(model)
    folded = fold_constant_dequantize(model) if options.fold_dequantize else 0
    prelu = rewrite_constant_prelu(model) if options.rewrite_prelu else 0
    if options.dynamic_batch:
        make_batch_dynamic(model)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".onnx.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(model.SerializeToString())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("prepared model", extra={"model": source.name, "stale_inputs": stale, "folded": folded, "prelu": prelu})
    return target


def build_session(path: Path, runtime: RuntimeSettings) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = runtime.intra_op_threads
    options.inter_op_num_threads = runtime.inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    available = set(ort.get_available_providers())
    providers = [p for p in runtime.providers if p in available] or ["CPUExecutionProvider"]
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ModelUnavailable(f"model file {path.name} could not be loaded by onnxruntime: {exc}") from exc
