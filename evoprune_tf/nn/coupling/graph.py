"""The call graph of a Keras model, flattened: one node per call, nested models inlined.

Keras records every ``__call__`` of a layer or operation as a ``Node``; a layer called on
several graphs (the same ``ReLU`` in two models, a base model reused by a classifier) has
one such record per graph, and a layer called twice in one graph (shared weights) has two.
`Graph` walks only the records of the model at hand, so each call is one `Node` here, and
expands a functional or Sequential sub-model called inside the model into its own calls
(ConvNeXt's ``Sequential`` stem, ``base(x)`` under a user's head). Torch-Pruning traces its
dependency graph per call of a module for the same reason.

Node names are layer names. A layer's further calls are named ``"<name>#<k>"``; a layer of
a sub-model whose name is already taken is named ``"<sub-model>_<name>"``.
"""

from __future__ import annotations

import dataclasses
import heapq
from typing import Any

import keras

__all__ = ["Graph", "Node", "functional_view"]


@dataclasses.dataclass
class Node:
    """One call of a layer or operation, with its input and output tensors.

    Attributes:
        name: Unique name in the flattened graph (see the module docstring).
        layer: The called layer or operation (shared by all calls of it).
        position: Topological position.
        inputs: Names of the nodes whose outputs feed this call, one per input tensor.
        call: Keras' record of the call (its arguments replay it); ``None`` for inputs.
        in_tensors: The call's input tensors (aligned with ``inputs``).
        output: The call's output tensor.
        first_call: Name of the node of the layer's first call, ``None`` on that call.
        kind: How the coupling analysis treats the call (set by the analysis).
    """

    name: str
    layer: Any
    position: int
    inputs: list[str]
    call: Any = None
    in_tensors: list = dataclasses.field(default_factory=list)
    output: Any = None
    first_call: str | None = None
    kind: str = ""
    sort_key: tuple = ()

    @property
    def output_shape(self) -> tuple:
        """The output tensor's shape (batch axis included)."""
        return tuple(self.output.shape)

    def input_shape(self, i: int = 0) -> tuple:
        """The shape of input tensor ``i`` (batch axis included)."""
        return tuple(self.in_tensors[i].shape)


def functional_view(model: Any) -> keras.Model | None:
    """The functional graph behind a functional or built Sequential model (``None`` otherwise)."""
    if isinstance(model, keras.Sequential):
        return getattr(model, "_functional", None)
    if isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth") and model._inputs_struct is not None:
        return model
    return None


def _not_a_graph(model: Any) -> ValueError:
    if isinstance(model, keras.Sequential):
        return ValueError(f"Sequential model '{model.name}' is not built: give it a keras.Input(shape=...) first")
    return ValueError(f"model '{model.name}' has no functional graph: build it on keras.Input first")


class Graph:
    """The flattened call graph of a functional or Sequential model, in topological order.

    Args:
        model: A built functional or Sequential ``keras.Model``.

    Raises:
        ValueError: For a model without a functional graph or a call with several outputs.

    Attributes:
        model: The functional view of ``model``.
        name: The model's own name.
        nodes: The nodes in topological order (ties follow the model's layer order).
        by_name: Name -> node.
        consumers: Name -> names of the nodes that read its output.
        input_names, output_names: The nodes holding the model's inputs and outputs.
    """

    def __init__(self, model: keras.Model) -> None:
        functional = functional_view(model)
        if functional is None:
            raise _not_a_graph(model)
        self.model = functional
        self.name = model.name  # a Sequential's functional view is named "functional"
        self._nodes: list[Node] = []
        self._used: set[str] = set()
        self._first: dict[int, str] = {}
        self._calls: dict[int, int] = {}
        source: dict[int, str] = {}
        self.input_names = []
        for i, tensor in enumerate(functional.inputs):
            history = getattr(tensor, "_keras_history", None)
            op = history.operation if history is not None else None
            name = self._name_for(op.name if op is not None else tensor.name, op, "")
            self._nodes.append(Node(name, op, 0, [], output=tensor, sort_key=(-1, i)))
            source[id(tensor)] = name
            self.input_names.append(name)
        self._expand(functional, source, (), "")
        self.output_names = [source[id(t)] for t in functional.outputs]
        self.nodes = _toposort(self._nodes)
        for pos, node in enumerate(self.nodes):
            node.position = pos
        self.by_name = {n.name: n for n in self.nodes}
        self.consumers: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for node in self.nodes:
            for src in node.inputs:
                self.consumers[src].append(node.name)

    def _name_for(self, base: str, op: Any, scope: str) -> str:
        first = self._first.get(id(op)) if op is not None else None
        if first is not None:
            self._calls[id(op)] += 1
            name = f"{first}#{self._calls[id(op)]}"
        else:
            name = base if base not in self._used else f"{scope}_{base}" if scope else base
            k = 2
            while name in self._used:
                name, k = f"{base}_{k}", k + 1
            if op is not None:
                self._first[id(op)], self._calls[id(op)] = name, 0
        self._used.add(name)
        return name

    def _expand(self, functional: keras.Model, source: dict[int, str], key: tuple, scope: str) -> None:
        """Add the calls of ``functional``; ``source`` maps its input tensors to node names."""
        order = {id(op): i for i, op in enumerate(functional.operations)}
        for depth in sorted(functional._nodes_by_depth, reverse=True):
            for call in functional._nodes_by_depth[depth]:
                op = call.operation
                if op is None or call.is_input:
                    continue
                ins = list(call.input_tensors)
                if any(id(t) not in source for t in ins):
                    continue  # not computable from the model inputs (Keras skips it too)
                call_key = (*key, order[id(op)], op._inbound_nodes.index(call))
                inner = functional_view(op) if isinstance(op, keras.Model) else None
                if inner is not None:
                    self._inline(op, inner, call, source, call_key)
                    continue
                if len(call.outputs) != 1:
                    raise ValueError(f"cannot analyse layer '{op.name}' ({type(op).__name__}): it has "
                                     f"{len(call.outputs)} outputs, expected one")
                name = self._name_for(op.name, op, scope)
                first = self._first[id(op)]
                self._nodes.append(Node(
                    name, op, 0, [source[id(t)] for t in ins], call=call, in_tensors=ins,
                    output=call.outputs[0], first_call=None if first == name else first,
                    sort_key=call_key,
                ))
                source[id(call.outputs[0])] = name

    def _inline(self, op: keras.Model, inner: keras.Model, call: Any, source: dict[int, str], key: tuple) -> None:
        """Expand one call of a sub-model: its inputs stand for the call's input tensors."""
        ins = list(call.input_tensors)
        if len(ins) != len(inner.inputs) or len(call.outputs) != len(inner.outputs):
            raise ValueError(f"cannot analyse nested model '{op.name}' ({type(op).__name__}): it is called on "
                             f"{len(ins)} tensors but has {len(inner.inputs)} inputs")
        local = {id(t_in): source[id(t)] for t_in, t in zip(inner.inputs, ins)}
        # Keras lets the outer call's ``training`` win over one given to the nested call, so
        # inlining changes nothing; frozen layers keep ``trainable=False`` in their configs.
        self._expand(inner, local, key, op.name)
        for t_out, t_in in zip(call.outputs, inner.outputs):
            source[id(t_out)] = local[id(t_in)]


def _toposort(nodes: list[Node]) -> list[Node]:
    """Kahn's algorithm, ties broken by the calls' positions in the (nested) model layer order."""
    by_name = {n.name: n for n in nodes}
    indeg = {n.name: len(n.inputs) for n in nodes}
    users: dict[str, list[str]] = {n.name: [] for n in nodes}
    for n in nodes:
        for src in n.inputs:
            users[src].append(n.name)
    heap = [(n.sort_key, n.name) for n in nodes if indeg[n.name] == 0]
    heapq.heapify(heap)
    order: list[Node] = []
    while heap:
        _, name = heapq.heappop(heap)
        order.append(by_name[name])
        for u in users[name]:
            indeg[u] -= 1
            if indeg[u] == 0:
                heapq.heappush(heap, (by_name[u].sort_key, u))
    if len(order) != len(nodes):
        raise ValueError("cannot analyse model: its layer graph has a cycle")
    return order
