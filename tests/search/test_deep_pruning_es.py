"""DeepPruningES' loop and its heavy/knee/light parent selection, on planted fitnesses (no Keras)."""

from __future__ import annotations

import random

import numpy as np
import pytest

import operators
from evoprune_tf.encodings import genome_key
from evoprune_tf.search.algorithms import ALGORITHMS, deep_pruning_es
from evoprune_tf.search.callbacks import Callback
from evoprune_tf.search.checkpoint import CheckpointCallback, load_checkpoint, restore_evaluator, restore_rng
from evoprune_tf.search.statistics import make_front_record
from evoprune_tf.search.toolbox import build_toolbox, individual_class
from operators.selection import heavy_knee_light

OPS = {"init": "ones", "select": "heavy_knee_light", "mutate": {"name": "flip_bit", "indpb": 0.2}}


def planted(points, weights=(-1.0, -1.0)):
    cls = individual_class(weights)
    out = []
    for i, p in enumerate(points):
        ind = cls(np.full(4, i, dtype=np.int8))
        ind.fitness.values = p
        out.append(ind)
    return out


def test_selection_picks_heavy_knee_light_on_planted_fitnesses():
    # (error, flops fraction): the knee is nearest the ideal point in Manhattan distance.
    pop = planted([(0.40, 0.10), (0.20, 0.90), (0.05, 1.00), (0.30, 0.30), (0.10, 0.50), (0.45, 0.12)])
    heavy, knee, light = heavy_knee_light(pop, 3)
    assert (heavy.fitness.values, knee.fitness.values, light.fitness.values) == ((0.05, 1.0), (0.10, 0.5), (0.40, 0.10))
    chosen = {id(heavy), id(knee), id(light)}
    assert id(pop[1]) not in chosen and id(pop[5]) not in chosen  # dominated ones never
    # A heavier weight on complexity in the ideal norm moves the knee towards that end.
    assert heavy_knee_light(pop, 3, ideal_weights=(1.0, 10.0))[1] is pop[0]
    assert heavy_knee_light(pop, 3, ideal_weights=(10.0, 1.0))[1] is pop[2]
    # k cycles through the trio; the registry knows it by name; directions come from the weights.
    assert [id(i) for i in heavy_knee_light(pop, 4)] == [id(pop[2]), id(pop[4]), id(pop[0]), id(pop[2])]
    assert operators.get("selection", "heavy_knee_light") is heavy_knee_light
    acc = planted([(0.60, 0.10), (0.95, 1.00), (0.90, 0.50)], weights=(1.0, -1.0))
    assert [i.fitness.values[0] for i in heavy_knee_light(acc, 3)] == [0.95, 0.90, 0.60]


def test_selection_rejects_bad_options():
    pop = planted([(0.1, 0.2), (0.2, 0.1)])
    with pytest.raises(ValueError, match="complexity_index=5"):
        heavy_knee_light(pop, 3, complexity_index=5)
    with pytest.raises(ValueError, match="ideal_weights"):
        heavy_knee_light(pop, 3, ideal_weights=(1.0, -1.0))
    with pytest.raises(ValueError, match="expected two different columns"):
        heavy_knee_light(pop, 3, accuracy_index=1, complexity_index=1)


class PlantedEvaluator:
    """Error falls with the first 10 bits kept, FLOPs is the fraction of bits kept."""

    class encoding:  # noqa: N801 - what build_toolbox reads
        genome_length = 40

    weights = (-1.0, -1.0)

    def __init__(self) -> None:
        self.cache: dict = {}
        self.n_trained = self.n_cache_hits = 0
        self.train_seconds = 0.0
        self.batches: list[int] = []

    def evaluate(self, genome):
        key = genome_key(genome)
        if key in self.cache:
            self.n_cache_hits += 1
        else:
            g = np.asarray(genome)
            self.cache[key] = (round(1.0 - 0.09 * g[:10].sum() - 0.001 * g[10:].sum(), 6), float(g.mean()))
            self.n_trained += 1
        return self.cache[key]

    def map(self, func, genomes):
        genomes = list(genomes)
        self.batches.append(len(genomes))
        return [func(g) for g in genomes]


class Recorder(Callback):
    def __init__(self) -> None:
        self.populations: list[list[np.ndarray]] = []

    def on_generation(self, state) -> None:
        self.populations.append([np.array(ind) for ind in state.population])


class StopAt(Callback):
    def __init__(self, generation: int) -> None:
        self.generation = generation

    def on_generation(self, state) -> None:
        if state.generation == self.generation:
            raise KeyboardInterrupt


def run_es(evaluator, generations, callbacks=(), state=None, population=None):
    toolbox = build_toolbox(evaluator, OPS)
    if state is None:
        population = [toolbox.individual()]
    return deep_pruning_es(population, toolbox, generations=generations, population_size=12,
                           callbacks=callbacks, record=make_front_record(), state=state)


def test_generation_zero_is_the_unpruned_genome_and_next_are_parents_plus_mutants():
    random.seed(3)
    evaluator, recorder = PlantedEvaluator(), Recorder()
    population, logbook = run_es(evaluator, 4, callbacks=[recorder])
    assert ALGORITHMS["deep_pruning_es"] is deep_pruning_es
    first = recorder.populations[0]
    assert len(first) == 1 and first[0].all() and logbook[0]["nevals"] == 1
    # gen 1: one distinct parent (the unpruned genome) and 11 mutated copies of it.
    assert [len(p) for p in recorder.populations] == [1, 12, 12, 12, 12]
    assert logbook[1]["nevals"] == 11
    assert np.array_equal(recorder.populations[1][0], first[0])
    for g in range(2, 5):
        previous = planted_like(recorder.populations[g - 1], evaluator)
        parents = heavy_knee_light(previous, 3)
        distinct = []
        for p in parents:
            if not any(np.array_equal(p, d) for d in distinct):
                distinct.append(np.array(p))
        current = recorder.populations[g]
        assert all(np.array_equal(a, b) for a, b in zip(current[:len(distinct)], distinct))
        children = current[len(distinct):]
        assert len(children) == 12 - len(distinct) == logbook[g]["nevals"]
        for i, child in enumerate(children):
            flips = int(np.sum(child != distinct[i % len(distinct)]))
            assert 0 < flips < 25, flips  # a bit-flip copy of its own parent (indpb 0.2 of 40 genes)
    assert "hypervolume" in logbook[-1] and logbook[-1]["hypervolume"] > logbook[0]["hypervolume"]
    assert all(b > 0 for b in evaluator.batches)  # through toolbox.map, children only


def planted_like(genomes, evaluator):
    cls = individual_class(evaluator.weights)
    out = []
    for g in genomes:
        ind = cls(g.copy())
        ind.fitness.values = evaluator.evaluate(g)
        out.append(ind)
    return out


def test_resume_after_interrupt_equals_uninterrupted_run(tmp_path):
    random.seed(11)
    np.random.seed(11)
    full_pop, full_log = run_es(PlantedEvaluator(), 5)

    random.seed(11)
    np.random.seed(11)
    evaluator = PlantedEvaluator()
    ckpt = CheckpointCallback(tmp_path / "ck.npz", config_dict={"algorithm": {"name": "deep_pruning_es"}},
                              evaluator=evaluator)
    with pytest.raises(KeyboardInterrupt):
        run_es(evaluator, 5, callbacks=[ckpt, StopAt(2)])
    checkpoint = load_checkpoint(tmp_path / "ck.npz")
    assert checkpoint.state.generation == 2
    fresh = PlantedEvaluator()
    restore_evaluator(checkpoint, fresh)
    restore_rng(checkpoint)
    pop, log = run_es(fresh, 5, state=checkpoint.state)
    assert [np.array(i).tolist() for i in pop] == [np.array(i).tolist() for i in full_pop]
    assert [i.fitness.values for i in pop] == [i.fitness.values for i in full_pop]
    assert log.select("hypervolume") == full_log.select("hypervolume")
    assert log.select("nevals") == full_log.select("nevals")


def test_loop_rejects_bad_budgets():
    toolbox = build_toolbox(PlantedEvaluator(), OPS)
    with pytest.raises(ValueError, match="population_size=2"):
        deep_pruning_es([toolbox.individual()], toolbox, generations=2, population_size=2)
    with pytest.raises(ValueError, match="generations=0"):
        deep_pruning_es([toolbox.individual()], toolbox, generations=0)
