"""Cutting a backbone into a frozen prefix and a searched (cloned) suffix at one tensor."""

from __future__ import annotations

from typing import Literal

import keras

from evoprune_tf.nn.coupling import Graph, Node, model_blocks
from evoprune_tf.nn.surgery import _copy_layer, _fresh_inputs, _rebuild

__all__ = ["cut_points", "split_model"]


def _separators(graph: Graph) -> list[str]:
    """Layers whose single output tensor separates the graph, in topological order.

    In topological order, cutting after position ``i`` is valid iff no tensor produced
    before ``i`` is used after ``i`` (no skip connection crosses) and no model output lies
    at or before ``i``; then every earlier layer is an ancestor of layer ``i``.
    """
    position = {n.name: n.position for n in graph.nodes}
    outputs = set(graph.output_names)
    last_use = []
    for node in graph.nodes:
        uses = [position[c] for c in graph.consumers[node.name]]
        last_use.append(float("inf") if node.name in outputs else max(uses, default=node.position))
    found = []
    reach = -1.0
    for node in graph.nodes:
        i = node.position
        if reach <= i and node.name not in outputs and graph.consumers[node.name] and node.inputs:
            found.append(node.name)
        reach = max(reach, last_use[i])
    return found


def cut_points(model: keras.Model, *, granularity: Literal["block", "layer"] = "block") -> list[str]:
    """Layers at which `split_model` can cut, in order.

    With ``granularity="block"`` only block boundaries count (the last layer of each block of
    `model_blocks` but the last, when its output separates the graph), so
    ``split_model(model, cut_points(model)[-k])`` leaves the last ``k`` cuttable blocks in the
    suffix. ``"layer"`` lists every layer whose output tensor separates the graph.

    Args:
        model: A built functional or Sequential model.
        granularity: ``"block"`` or ``"layer"``.

    Returns:
        Layer names in topological order.

    Raises:
        ValueError: For an unknown ``granularity``.
    """
    if granularity not in ("block", "layer"):
        raise ValueError(f"granularity={granularity!r}: expected 'block' or 'layer'")
    graph = Graph(model)
    separators = _separators(graph)
    if granularity == "layer":
        return separators
    valid = set(separators)
    ends = [graph.nodes[b.stop - 1].name for b in model_blocks(model)[:-1]]
    return [name for name in ends if name in valid]


def _same_layer(node: Node) -> tuple[keras.layers.Layer, None]:
    """The prefix calls the model's own layers (shared weights), also those of nested models."""
    return node.layer, None


def split_model(
    model: keras.Model, cut_layer: str, *, suffix_name: str | None = None
) -> tuple[keras.Model, keras.Model]:
    """Split ``model`` at the output of ``cut_layer``.

    The prefix maps the model input to ``cut_layer``'s output and shares its layers (and
    weights) with ``model``: it is meant to stay frozen. Nested models are flattened in both
    parts, so the cut may lie inside one. The suffix starts from a new
    ``keras.Input`` of the cut tensor's shape (named ``"<cut_layer>_cut"``) and holds NEW
    copies of the remaining layers with copied weights, so training or pruning the suffix
    never touches ``model``. ``suffix(prefix(x))`` equals ``model(x)``.

    Args:
        model: A built functional or Sequential model.
        cut_layer: Name of the layer whose output is the cut (see `cut_points`).
        suffix_name: Name of the suffix model (default ``"<model>_from_<cut_layer>"``).

    Returns:
        ``(prefix, suffix)``.

    Raises:
        ValueError: When ``cut_layer`` is unknown, or its output does not separate the graph
            (a skip connection crosses it, it is an input or a model output).
    """
    graph = Graph(model)
    if cut_layer not in graph.by_name:
        raise ValueError(f"cut_layer={cut_layer!r}: no such layer in model '{graph.name}'")
    if cut_layer not in set(_separators(graph)):
        raise ValueError(
            f"cannot cut at layer '{cut_layer}': its output is not a single tensor separating the graph "
            "(a skip connection crosses it, or it is an input or a model output); see cut_points(model)"
        )
    node = graph.by_name[cut_layer]
    cut_tensor = node.output
    prefix = _rebuild(graph, graph.nodes[:node.position + 1], _fresh_inputs(graph), _same_layer,
                      outputs=[cut_layer], name=f"{graph.name}_to_{cut_layer}")
    new_input = keras.Input(shape=tuple(cut_tensor.shape)[1:], dtype=cut_tensor.dtype, name=f"{cut_layer}_cut")
    suffix = _rebuild(graph, graph.nodes[node.position + 1:], {cut_layer: new_input}, _copy_layer,
                      outputs=graph.output_names, name=suffix_name or f"{graph.name}_from_{cut_layer}")
    return prefix, suffix
