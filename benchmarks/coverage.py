"""Filter-pruning coverage of the Keras Applications families (docs/filter-coverage.md).

Run from a source checkout: ``python benchmarks/coverage.py`` (``--families VGG16 ResNet50``
for a subset, ``--out coverage.json`` to keep the numbers).

For the smallest member of each family, built with ``weights=None``, ``include_top=False``
and average pooling at a small input, it prints one Markdown row: the coupling groups found,
how many are prunable, the prunable filters (channels of prunable groups) against all
filters of all groups, the share of the network's FLOPs (2 x MACs) spent in the kernels of
producers and consumers of prunable groups, and why the other groups are not prunable.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import time

#: The smallest member of each family and the smallest input side it accepts (weights=None).
FAMILIES = (
    ("VGG", "VGG16", 32), ("ResNet", "ResNet50", 32), ("ResNetV2", "ResNet50V2", 32),
    ("DenseNet", "DenseNet121", 32), ("MobileNet", "MobileNet", 32), ("MobileNetV2", "MobileNetV2", 32),
    ("MobileNetV3", "MobileNetV3Small", 32), ("EfficientNet", "EfficientNetB0", 32),
    ("EfficientNetV2", "EfficientNetV2B0", 32), ("InceptionV3", "InceptionV3", 75),
    ("InceptionResNetV2", "InceptionResNetV2", 75), ("Xception", "Xception", 71),
    ("NASNet", "NASNetMobile", 32), ("ConvNeXt", "ConvNeXtTiny", 32),
)


def reason_category(reason: str) -> str:
    """A group's reason with layer names dropped, so that reasons of one kind count together."""
    if reason.startswith("reaches the model output"):
        return "reaching the model output"
    match = re.match(r"(feeds|comes from) '[^']*' \((\w+)\), which (.*)", reason)
    if match:
        verb = "feeding" if match.group(1) == "feeds" else "coming out of"
        return f"{verb} a {match.group(2)}, which {match.group(3)}"
    if reason.startswith(("feeds the grouped convolution", "comes from the grouped convolution")):
        return "passing a grouped convolution"
    if reason.startswith("is broadcast by"):
        return "broadcast by a merge"
    if reason.startswith("feeds '") and "depth_multiplier" in reason:
        return "feeding a depthwise convolution with depth_multiplier > 1"
    return re.sub(r"'[^']*'", "...", reason)


def measure(name: str, size: int) -> dict:
    """Groups, prunable filters and FLOPs share of one application."""
    import keras

    from evoprune_tf.nn.coupling import analyse
    from evoprune_tf.nn.flops import count_flops

    model = getattr(keras.applications, name)(weights=None, include_top=False, input_shape=(size, size, 3),
                                              pooling="avg")
    began = time.perf_counter()
    analysis = analyse(model)
    seconds = time.perf_counter() - began
    groups = analysis.groups
    prunable = [g for g in groups if g.prunable]
    touched = {ref.layer for g in prunable for ref in g.consumers} | {p for g in prunable for p in g.producers}
    flops = count_flops(model)
    why = collections.Counter(reason_category(g.reason) for g in groups if not g.prunable)
    return {
        "model": name, "input": size, "layers": len(analysis.graph.nodes), "groups": len(groups),
        "prunable_groups": len(prunable), "filters": sum(g.size for g in groups),
        "prunable_filters": sum(g.size for g in prunable),
        "flops": flops.flops, "prunable_flops": sum(r.flops for r in flops.layers if r.name in touched),
        "params": model.count_params(), "analysis_s": round(seconds, 2), "not_prunable": dict(why),
    }


def markdown(rows: list[dict]) -> str:
    """The coverage table."""
    head = ("family (model, input)", "groups (prunable)", "prunable filters", "FLOPs in pruned kernels",
            "not prunable, and why")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for family, r in rows:
        why = "; ".join(f"{n} {'group' if n == 1 else 'groups'} {cat}" for cat, n in r["not_prunable"].items())
        lines.append(
            f"| {family} ({r['model']}, {r['input']} px) | {r['groups']} ({r['prunable_groups']}) | "
            f"{r['prunable_filters']} of {r['filters']} ({100 * r['prunable_filters'] / r['filters']:.0f}%) | "
            f"{100 * r['prunable_flops'] / r['flops']:.0f}% of {r['flops'] / 1e6:.1f} M | {why or '-'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="*", help="model names to measure (default: one per family)")
    parser.add_argument("--out", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    chosen = [f for f in FAMILIES if not args.families or f[1] in args.families]
    rows = []
    for family, name, size in chosen:
        row = measure(name, size)
        print(f"{family}: {row['prunable_groups']}/{row['groups']} groups prunable ({row['analysis_s']} s)",
              file=sys.stderr, flush=True)
        rows.append((family, row))
    print(markdown(rows), end="")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump([r for _, r in rows], handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
