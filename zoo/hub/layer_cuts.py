"""Layer cuts: find a network's head layers and build the model that stops before the last k of them.

A cut model is a model file derived from another one: it is built once per node (on the driver,
and on an executor that lacks it) and kept in the cache by its own sha256, like any downloaded
blob. The layer table and each cut model are derivations (:mod:`zoo.hub.derived`): recorded by the
hash of their inputs, checked on every use against the verified model (the table's tensors
against the graph's structure, the cut model's blob by its sha256 and its stamp), rebuilt when
they do not fit. The driver pins the cut model's sha256, and an executor that builds it again
must get the same bytes.

What a "layer" is (docs/python-api.md, "Layer cuts"): walking back from the model's output along the data
input of each node, every node of these kinds is one layer:

* dense: ``Gemm``, ``MatMul``, ``MatMulInteger``, ``QLinearMatMul``; a following bias ``Add`` /
  ``QLinearAdd`` with a constant operand belongs to the same layer;
* convolution: ``Conv``, ``ConvInteger``, ``QLinearConv``;
* pooling: ``GlobalAveragePool``, ``GlobalMaxPool``, ``AveragePool``, ``MaxPool`` and the QLinear forms;
* activations and normalisation: ``Softmax``, ``LogSoftmax``, ``Relu``, ``Clip``, ``Sigmoid``,
  ``HardSigmoid``, ``LeakyRelu``, ``BatchNormalization``.

Reshaping ops (``Flatten``, ``Reshape``, ``Squeeze``, ``Unsqueeze``) and plumbing
(``QuantizeLinear``/``DequantizeLinear``, ``Identity``, ``Cast``, ``Dropout``) are walked through
without counting; the shape side branch feeding a ``Reshape`` is never followed. The walk stops at
the first node with more than one data input (a residual ``Add``, a ``Concat``) or of another kind.

``cut=k`` ends the model at the data input of the k-th layer from the end, so ``cut=1`` on
ResNet-50 is the flattened 2048-wide pool output and ``cut=0`` is the full model. A registry entry
may pin the tensors (``cuts``), which wins over the analysis. A quantized cut tensor is
dequantized to float32 inside the cut model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from zoo.errors import CutError, InvalidModelError
from zoo.hub import derived
from zoo.hub.cache import ModelCache
from zoo.log import get_logger

log = get_logger("cuts")

FORMAT_VERSION = 2  # of the analysis and of how a cut model is built: a change makes old ones unused
MAX_CUTS = 16
_DENSE = {"Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"}
_LAYERS = _DENSE | {
    "Conv", "ConvInteger", "QLinearConv",
    "GlobalAveragePool", "GlobalMaxPool", "AveragePool", "MaxPool", "QLinearGlobalAveragePool", "QLinearAveragePool",
    "Softmax", "LogSoftmax", "Relu", "Clip", "Sigmoid", "HardSigmoid", "LeakyRelu", "BatchNormalization",
}
_BIAS = {"Add", "QLinearAdd"}
_RESHAPES = {"Flatten", "Reshape", "Squeeze", "Unsqueeze"}
_PLUMBING = {"QuantizeLinear", "DequantizeLinear", "Identity", "Cast", "Dropout"}
# where each quantized op keeps its output scale and zero point
_QPARAMS = {
    "QLinearConv": (6, 7), "QLinearMatMul": (6, 7), "QLinearAdd": (6, 7), "QLinearMul": (6, 7),
    "QLinearGlobalAveragePool": (3, 4), "QLinearAveragePool": (3, 4), "QuantizeLinear": (1, 2),
    "QLinearLeakyRelu": (3, 4), "QLinearSigmoid": (3, 4),
}
_FLOAT_OUT = "{}__zoo_float"


@dataclass(frozen=True)
class Cut:
    """One place a model can be cut: ``index`` layers dropped, ending at ``tensor``."""

    index: int
    tensor: str
    op: str  # the op of the first dropped layer ("" for cut 0)
    shape: tuple[int | None, ...]  # with the batch dimension as None
    dtype: str  # of the cut model's output (float32 after dequantization)
    feature_length: int
    quantized: bool = False

    @property
    def output_name(self) -> str:
        """The output tensor of the cut model (a dequantized copy of ``tensor`` when it is quantized)."""
        return _FLOAT_OUT.format(self.tensor) if self.quantized else self.tensor

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _load(path: Path):
    """The graph, with external data left where it is (a multi-file model's weights are not read)."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise InvalidModelError(f"{path} is not a readable ONNX model: {type(exc).__name__}: {exc}") from None


class _Graph:
    def __init__(self, model):
        g = model.graph
        self.model = model
        self.constants = {t.name for t in g.initializer} | {o for n in g.node if n.op_type == "Constant" for o in n.output}
        self.producer = {o: n for n in g.node for o in n.output}
        self.inputs = [i.name for i in g.input if i.name not in self.constants]

    def data_inputs(self, node) -> list[str]:
        names = node.input[:1] if node.op_type in _RESHAPES else node.input
        return [i for i in names if i and i not in self.constants]

    def qparams(self, tensor: str) -> tuple[str, str] | None:
        """(scale, zero point) names of a quantized tensor, following reshapes back to its producer."""
        seen = 0
        while tensor in self.producer and seen < 64:
            node = self.producer[tensor]
            if node.op_type in _QPARAMS:
                s, z = _QPARAMS[node.op_type]
                return (node.input[s], node.input[z]) if len(node.input) > z else None
            if node.op_type not in _RESHAPES | {"MaxPool", "Transpose"}:
                return None
            tensor, seen = node.input[0], seen + 1
        return None


def _walk(graph: _Graph, output: str) -> list[tuple[str, str]]:
    """(cut tensor, op of the dropped layer) for cut=1, 2, ... walking back from ``output``."""
    out: list[tuple[str, str]] = []
    cur = output
    while len(out) < MAX_CUTS and cur in graph.producer:
        node = graph.producer[cur]
        data = graph.data_inputs(node)
        if len(data) != 1:
            break
        op = node.op_type
        if op in _BIAS:  # a bias add only belongs to the dense layer it follows
            prev = graph.producer.get(data[0])
            if prev is None or prev.op_type not in _DENSE:
                break
            cur = data[0]
            continue
        if op in _LAYERS:
            out.append((data[0], op))
        elif op not in _RESHAPES | _PLUMBING:
            break
        cur = data[0]
    return out


def _dummy_feed(graph: _Graph, session) -> dict[str, np.ndarray]:
    feed = {}
    for i in session.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else (1 if n == 0 else 224) for n, d in enumerate(i.shape)]
        if i.type == "tensor(string)":  # a converted text pipeline: empty texts
            feed[i.name] = np.full(shape, "", dtype=object)
            continue
        dtype = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int64)": np.int64,
                 "tensor(double)": np.float64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_}.get(i.type, np.float32)
        feed[i.name] = np.zeros(shape, dtype)
    return feed


def _with_external_data(model, path: Path, use: Callable[[Any], Any]) -> Any:
    """``use(model bytes or path)``: the bytes, or for a graph that keeps weights in external files
    beside ``path``, a scratch file that finds them (ONNX Runtime and the checker read external data
    only through a path)."""
    from zoo.hub import bundles
    from zoo.hub.onnx_files import external_references

    data = model.SerializeToString()
    locations = [loc for _, loc in external_references(model)]
    if not locations:
        return use(data)
    with bundles.scratch(data, path, locations) as scratch_path:
        return use(str(scratch_path))


def _checkable(model):
    """``model`` for the onnx checker: tensors kept in external files become graph inputs of their type
    and shape. The checker reads external data only through files it insists are not hard links
    (which a cache bundle is), and the graph's structure is what a cut can get wrong; ONNX Runtime
    reads and checks the weights themselves when it loads the model."""
    import onnx
    from onnx import TensorProto, helper

    external = [t for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    if not external:
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    names = {t.name for t in external}
    kept = [t for t in copy.graph.initializer if t.name not in names]
    del copy.graph.initializer[:]
    copy.graph.initializer.extend(kept)
    copy.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in external)
    return copy


def _probe(model, tensors: list[str], path: Path) -> dict[str, np.ndarray]:
    """Run the model once on zeros with ``tensors`` added as outputs: their real shapes and dtypes."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    for t in tensors:
        if t not in existing:
            probe.graph.output.append(onnx.ValueInfoProto(name=t))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    def run(model_or_path):
        sess = ort.InferenceSession(model_or_path, opts, providers=["CPUExecutionProvider"])
        return [o.name for o in sess.get_outputs()], sess.run(None, _dummy_feed(_Graph(probe), sess))

    try:
        names, values = _with_external_data(probe, path, run)
    except Exception as exc:
        from zoo.hub.onnx_files import locale_problem

        problem = locale_problem(model, str(path))  # the one failure users meet most: say what it is
        raise InvalidModelError(problem or f"cannot run the model to measure its layers: {type(exc).__name__}: "
                                f"{exc}") from None
    return dict(zip(names, values))


def analyse(path: Path, pinned: tuple[str, ...] | None = None) -> list[Cut]:
    """Every cut of the model at ``path``; ``pinned`` (a registry's ``cuts``) replaces the analysis."""
    model = _load(path)
    graph = _Graph(model)
    layers = _layers(model, graph, pinned, str(path))
    values = _probe(model, [t for t, _ in layers], path)
    cuts = []
    for index, (tensor, op) in enumerate(layers):
        v = values[tensor]
        quantized = v.dtype in (np.uint8, np.int8)
        if quantized and graph.qparams(tensor) is None:
            log.debug("skipping cut at %s: quantized without a findable scale", tensor)
            continue
        dtype = "float32" if quantized else str(v.dtype)
        cuts.append(Cut(index, tensor, op, (None, *v.shape[1:]), dtype, int(np.prod(v.shape[1:])), quantized))
    return cuts


def select(cuts: list[Cut], cut: int | str, label: str) -> Cut:
    """The cut asked for by index or tensor name, or a CutError listing what exists."""
    by_index = isinstance(cut, int) or (isinstance(cut, str) and cut.isdigit())
    for c in cuts:
        if (c.index == int(cut)) if by_index else (c.tensor == cut):
            return c
    listing = ", ".join(f"{c.index}={c.tensor}" for c in cuts)
    raise CutError(f"model {label} has no cut {cut!r}; available cuts: {listing}")


def _needed_nodes(model, target: str) -> list:
    producer = {o: n for n in model.graph.node for o in n.output}
    keep: set[int] = set()
    stack = [target]
    seen: set[str] = set()
    while stack:
        t = stack.pop()
        if t in seen or t not in producer:
            continue
        seen.add(t)
        node = producer[t]
        keep.add(id(node))
        stack.extend(i for i in node.input if i)
        for attr in node.attribute:  # subgraphs (If/Loop) read outer names too
            for g in [attr.g, *attr.graphs]:
                for n in g.node:
                    stack.extend(i for i in n.input if i)
    return [n for n in model.graph.node if id(n) in keep]


def build(path: Path, cut: Cut, *, metadata: dict[str, str] | None = None) -> bytes:
    """The serialised model that ends at ``cut.tensor`` (dequantized to float32 if quantized)."""
    import onnx
    from onnx import helper

    model = _load(path)
    graph = _Graph(model)
    nodes = _needed_nodes(model, cut.tensor)
    out_name = cut.tensor
    if cut.quantized:
        scale, zero = graph.qparams(cut.tensor)
        out_name = _FLOAT_OUT.format(cut.tensor)
        nodes.append(helper.make_node("DequantizeLinear", [cut.tensor, scale, zero], [out_name], name=out_name))
    used = {i for n in nodes for i in n.input} | {cut.tensor}
    for n in nodes:
        for attr in n.attribute:
            for g in [attr.g, *attr.graphs]:
                used |= {i for sub in g.node for i in sub.input}
    elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(cut.dtype))
    out_vi = helper.make_tensor_value_info(out_name, elem, ["N", *cut.shape[1:]])
    g = helper.make_graph(
        nodes,
        f"{model.graph.name or 'model'}_cut{cut.index}",
        [i for i in model.graph.input if i.name in used],  # IR < 4 lists initializers as inputs too
        [out_vi],
        [t for t in model.graph.initializer if t.name in used],
        value_info=[v for v in model.graph.value_info if v.name in used],
    )
    cut_model = helper.make_model(g, opset_imports=list(model.opset_import), producer_name="sparkzoo")
    cut_model.ir_version = model.ir_version  # the source's IR version, which the runtime accepts
    for k, v in (metadata or {}).items():
        cut_model.metadata_props.add(key=k, value=v)
    try:
        onnx.checker.check_model(_checkable(cut_model))
        onnx.shape_inference.infer_shapes(cut_model, strict_mode=False)
    except Exception as exc:
        raise CutError(f"the model cut at {cut.tensor!r} fails validation: {type(exc).__name__}: {exc}") from None
    return cut_model.SerializeToString()


# -- the cache of analyses and cut models (derived from a verified model: see zoo.hub.derived) --------
_CHECKED: dict[str, tuple[Cut, ...]] = {}  # analysis key -> the table checked against its model, this process
_DTYPES = {"float32", "float64", "float16", "int8", "uint8", "int16", "int32", "int64", "bool"}


def analysis_derivation(source_sha: str, pinned: tuple[str, ...] | None, label: str = "") -> derived.Derivation:
    """The layer table of model ``source_sha`` (``pinned``: a registry's ``cuts``) as a derivation."""
    return derived.Derivation("cuts", {"source": source_sha, "pinned": list(pinned) if pinned else None,
                                       "analyser": FORMAT_VERSION}, label)


def cut_derivation(source_sha: str, cut: Cut, label: str = "") -> derived.Derivation:
    """The cut model of ``source_sha`` at ``cut`` as a derivation (its key is stamped into the file)."""
    return derived.Derivation("cut", {"source": source_sha, "cut": cut.to_dict(), "builder": FORMAT_VERSION}, label)


def _cut_from_record(c: Any) -> Cut:
    """One recorded cut, every field of the type :class:`Cut` gives it (a record is hostile)."""
    if not isinstance(c, dict) or set(c) != set(Cut.__dataclass_fields__):
        raise ValueError("has a cut that is not one sparkzoo records")
    shape = c["shape"]
    ok = (type(c["index"]) is int and 0 <= c["index"] <= MAX_CUTS and isinstance(c["tensor"], str)
          and isinstance(c["op"], str) and isinstance(shape, list) and 0 < len(shape) <= 16
          and shape[0] is None and all(type(d) is int and d > 0 for d in shape[1:])
          and c["dtype"] in _DTYPES and type(c["feature_length"]) is int and type(c["quantized"]) is bool
          and c["feature_length"] == int(np.prod(shape[1:])))
    if not ok:
        raise ValueError(f"has a cut whose fields do not fit together ({str(c)[:200]})")
    return Cut(**{**c, "shape": tuple(shape)})


def _layers(model, graph: _Graph, pinned: tuple[str, ...] | None, label: str) -> list[tuple[str, str]]:
    """(tensor, op of the dropped layer) for cut 0 (the output), 1, 2, ...: the model's structure alone."""
    output = model.graph.output[0].name
    found = _walk(graph, output)
    if pinned:
        ops = dict(found)
        for t in pinned:
            if t not in graph.producer and t not in graph.inputs:
                raise CutError(f"{label}: the registry pins cut tensor {t!r}, which the model does not have")
        found = [(t, ops.get(t, graph.producer[t].op_type if t in graph.producer else "")) for t in pinned]
    return [(output, "")] + found


def structure_problem(path: Path, cuts: list[Cut], pinned: tuple[str, ...] | None) -> str | None:
    """What in a recorded layer table the model at ``path`` contradicts (None: it fits). Cheap: the
    graph is walked, not run, so the tensors and ops are checked; shapes come from the probe and are
    checked by ``zoo verify``, which analyses again."""
    model = _load(path)
    graph = _Graph(model)
    expected = _layers(model, graph, pinned, str(path))
    seen = set()
    for c in cuts:
        if c.index in seen:
            return f"lists cut {c.index} twice"
        seen.add(c.index)
        if c.index >= len(expected) or (c.tensor, c.op) != expected[c.index]:
            where = expected[c.index] if c.index < len(expected) else "no such cut"
            return f"records cut {c.index} at {c.tensor!r} ({c.op or 'full model'}); the model has it at {where}"
        if c.quantized and graph.qparams(c.tensor) is None:
            return f"records cut {c.index} as quantized, but the model has no scale for {c.tensor!r}"
    for index, (tensor, _) in enumerate(expected):
        if index not in seen and graph.qparams(tensor) is not None:
            return f"leaves out cut {index} ({tensor!r}), which the model has"
    return None


def cached_analysis(cache: ModelCache, source_sha: str, path: Path, pinned: tuple[str, ...] | None,
                    label: str = "") -> list[Cut]:
    """The cuts of a model, analysed once per cache (``pinned``: a registry's ``cuts`` replace the analysis).

    The recorded table is checked against the verified model's structure once per process; a table
    that does not fit is quarantined (warning) and the model analysed again."""
    d = analysis_derivation(source_sha, pinned, label)
    record = derived.read(cache, d)
    if record is not None:
        try:
            if not isinstance(record.value, list):
                raise ValueError("is not a list of cuts")
            cuts = [_cut_from_record(c) for c in record.value]
            if _CHECKED.get(d.key) != tuple(cuts):
                problem = structure_problem(path, cuts, pinned)
                if problem is not None:
                    raise ValueError(problem)
                _CHECKED[d.key] = tuple(cuts)
            return cuts
        except ValueError as exc:
            derived.discard(cache, d, f"its layer table {exc}")
    cuts = analyse(path, pinned)
    _CHECKED[d.key] = tuple(cuts)
    derived.write(cache, d, value=[c.to_dict() for c in cuts])
    return cuts


def cut_blob(cache: ModelCache, source_sha: str, path: Path, cut: Cut, label: str = "") -> tuple[str, Path | bytes]:
    """(sha256, path) of the cut model blob of (source sha256, cut); built once per cache and recorded.

    A recorded cut model is served only when its blob verifies and carries this cut's stamp; a
    record that points elsewhere (the full model, another cut) is quarantined and the cut built
    again. On a read-only cache the model is built in memory and returned as bytes instead of a path.
    """
    if cut.index == 0:
        return source_sha, path
    d = cut_derivation(source_sha, cut, label)
    return derived.blob(cache, d, lambda: _build_stamped(path, cut, d))


def _build_stamped(path: Path, cut: Cut, d: derived.Derivation) -> bytes:
    return build(path, cut, metadata={"zoo.source_sha256": d.inputs["source"], "zoo.cut": str(cut.index),
                                      "zoo.cut_tensor": cut.tensor, derived.STAMP_KEY: d.key})


def cut_model(cache: ModelCache, source_sha: str, path: Path, pinned: tuple[str, ...] | None, cut: int | str,
              label: str, parts: tuple[Any, ...] = ()) -> tuple[Cut, str, Path | bytes]:
    """(the chosen cut, the cut model's sha256, its file or bytes) for ``cut`` of the model at ``path``.

    ``parts``: the model's external data files (beside ``path``); the cut names the same files and
    runs from its own bundle (:mod:`zoo.hub.bundles`)."""
    chosen = select(cached_analysis(cache, source_sha, path, pinned, label), cut, label)
    sha, runnable = cut_blob(cache, source_sha, path, chosen, label)
    if chosen.index and parts:
        from zoo.hub import bundles

        runnable = bundles.runnable(cache, sha, runnable, parts, label, bundles.adopt_beside(cache, path))
    return chosen, sha, runnable


# -- zoo verify: each recorded derivation rebuilt from its verified model and compared ----------------
def verify_table(cache: ModelCache, record: derived.Record, source: Path) -> tuple[str, str | None]:
    """(status, reason) of a recorded layer table against the model at ``source``: ``ok``, or
    ``rebuilt`` (analysed again and recorded) when it does not match a fresh analysis. A model whose
    weights live in external files is checked by its structure only (the probe needs the weights)."""
    from zoo.hub.onnx_files import external_locations

    d = record.derivation
    pinned = tuple(d.inputs["pinned"]) if d.inputs.get("pinned") else None
    try:
        cuts = [_cut_from_record(c) for c in record.value] if isinstance(record.value, list) else None
        problem = "is not a list of cuts" if cuts is None else structure_problem(source, cuts, pinned)
    except ValueError as exc:
        cuts, problem = None, str(exc)
    if problem is None and not external_locations(source):
        fresh = analyse(source, pinned)
        if fresh != cuts:
            problem = "differs from a fresh analysis of the model"
    if problem is None:
        return "ok", None
    derived.discard(cache, d, f"its layer table {problem}")
    fresh = analyse(source, pinned)
    derived.write(cache, d, value=[c.to_dict() for c in fresh])
    _CHECKED.pop(d.key, None)
    return "rebuilt", f"its layer table {problem}"


def verify_cut(cache: ModelCache, record: derived.Record, source: Path) -> tuple[str, str | None]:
    """(status, reason) of a recorded cut model: it must be the very bytes the cut builds from
    ``source`` now (:func:`zoo.hub.derived.verify_blob`)."""
    d = record.derivation
    try:
        cut = _cut_from_record(d.inputs.get("cut"))
    except ValueError as exc:
        derived.discard(cache, d, f"its inputs {exc}")
        return "quarantined", f"its inputs {exc}"
    return derived.verify_blob(cache, record, lambda: _build_stamped(source, cut, d))
