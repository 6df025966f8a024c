"""Bad input: one line naming the value and what was expected, status 2, before anything long.

Every case goes through ``evoprune run`` / ``evoprune resume`` (`evoprune_tf.app.cli.main`, and
once as a real process); feature extraction is replaced by a tripwire, so a test fails
if the error comes only after the long part of a run has started.
"""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import make_planted_features
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import evoprune_tf.methods.head.build as build_module
import evoprune_tf.app.run as run_module
import evoprune_tf.methods.head.run as head_run
from evoprune_tf.search.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from evoprune_tf.app.cli import main as cli_main
from evoprune_tf.app.config import _SECTION_TYPES, _TOP_LEVEL, ConfigError, config_from_dict, load_config
from evoprune_tf.encodings import HeadSpec, make_encoding
from evoprune_tf.features.splits import FeatureSplits


@pytest.fixture
def tripwire(monkeypatch: pytest.MonkeyPatch) -> None:
    """Feature extraction (the first long step) must not start."""

    def extract(*args, **kwargs):
        raise AssertionError("feature extraction started before the bad input was reported")

    monkeypatch.setattr(build_module, "extract_features", extract)


def _fails(args: list[str], capsys: pytest.CaptureFixture, *expected: str) -> str:
    """Runs the CLI; checks status 2 and one ``error:`` line holding every expected part."""
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    for part in expected:
        assert part in err, (part, err)
    return err


def _toml(tmp_path: Path, text: str, name: str = "config.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


QUIET = ["--no-tracking", "--no-progress"]


# ------------------------------------------------------------------ configs


def test_malformed_toml_names_the_file_and_the_position(tmp_path, capsys, tripwire) -> None:
    path = _toml(tmp_path, "[algorithm\nname = 'nsga2'\n")
    _fails(["run", path], capsys, path, "not valid TOML", "line 1")
    _fails(["run", str(tmp_path / "missing.toml")], capsys, "missing.toml does not exist", "expected a .toml file")


def test_every_problem_of_a_config_is_listed_at_once_on_one_line(tmp_path, capsys, tripwire) -> None:
    path = _toml(tmp_path, "seed = 1\n[algorithm]\npopsize = 3\ncxpb = 1.5\n[bogus]\nx = 1\n")
    err = _fails(["run", path], capsys, "3 problem(s)")
    assert "unknown key algorithm.popsize (known: " in err
    assert "algorithm.cxpb=1.5; expected a probability in [0, 1]" in err
    assert "unknown key 'bogus'" in err


@pytest.mark.parametrize(("args", "expected"), [
    (["--mate", "uniform:indpb=1.5"], ["indpb=1.5 is not a probability; expected a number in [0, 1]"]),
    (["--mutate", "flip_bit:indpb=-0.1"], ["indpb=-0.1 is not a probability"]),
    (["--init", "random_density:low=2"], ["low=2 is not a probability"]),
    (["--evaluations", "0"], ["algorithm.evaluations=0; expected a positive integer"]),
    (["--generations", "-3", "--algorithm", "ea_simple"], ["algorithm.generations=-3; expected a positive integer"]),
    (["--population", "0"], ["algorithm.population=0; expected a positive integer"]),
    (["--epochs", "0"], ["train.epochs=0; expected a positive integer"]),
    (["--seeds", "0"], ["report.seeds=0; expected a positive integer"]),
    (["--encoding", "pixels"], ["unknown encoding 'pixels'; expected one of ['connection_pruning'"]),
    (["--algorithm", "hill_climb"], ["unknown algorithm 'hill_climb'; expected one of ['bn_scale', 'deep_pruning_es', 'ea_simple'"]),
    (["--mate", "zipper"], ["unknown crossover operator 'zipper'; expected one of"]),
    (["--select", "tournament:tournsize=0"], ["tournsize=0 is not a count; expected an integer >= 1"]),
    (["--backbone", "alexnet"], ["unknown backbone 'alexnet'; expected one of", "MobileNetV2"]),
    (["--objectives", "accuracy,speed"], ["objectives.names=['accuracy', 'speed']; expected distinct names"]),
    (["--hidden", "16,0"], ["head.hidden=[16, 0]; expected a non-empty list of positive integers"]),
    (["--image-size", "8"], ["data.image_size=8; expected 0 (backbone default) or at least 32"]),
])
def test_bad_values_are_named_with_what_was_expected(args, expected, capsys, tripwire) -> None:
    _fails(["run", *args, *QUIET], capsys, *expected)


def test_bad_values_in_a_file_and_on_the_command_line_are_reported_together(tmp_path, capsys, tripwire) -> None:
    path = _toml(tmp_path, "[algorithm]\nmutpb = 2.0\n[encoding]\nname = 'neuron_pruning'\nlayers = [3]\n")
    _fails(["run", path, "--evaluations", "-1", "--backbone", "nope"], capsys, "4 problem(s)",
           "algorithm.mutpb=2.0", "encoding.layers=[3]; expected distinct hidden-layer indices in [0, 0]",
           "algorithm.evaluations=-1", "unknown backbone 'nope'")


def test_a_real_process_exits_2_with_one_line_on_stderr(tmp_path) -> None:
    path = _toml(tmp_path, "[algorithm]\nname = 'nope'\ncxpb = -1\n")
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "evoprune_tf.app.cli", "run", path], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "unknown algorithm 'nope'" in lines[0]
    assert "algorithm.cxpb=-1.0; expected a probability in [0, 1]" in lines[0]
    assert time.monotonic() - began < 60 and not (tmp_path / "mlruns").exists()


# ------------------------------------------------------------------ datasets


def _image_folder(root: Path, classes: dict[str, int], broken: str | None = None) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    if broken:
        (root / broken).write_bytes(b"\x89PNG\r\n\x1a\n but not really an image")
    return root


def test_missing_empty_and_single_class_dataset_folders(tmp_path, capsys, tripwire) -> None:
    missing = tmp_path / "nowhere"
    _fails(["run", "--data", str(missing), *QUIET, "--weights", "none"], capsys, f"dataset source '{missing}' does not exist",
           "expected a class-folder dataset")
    (tmp_path / "empty").mkdir()
    _fails(["run", "--data", str(tmp_path / "empty"), *QUIET, "--weights", "none"], capsys, "holds 0 class folder(s)",
           "expected at least two class sub-folders")
    one = _image_folder(tmp_path / "one", {"cats": 3})
    _fails(["run", "--data", str(one), *QUIET, "--weights", "none"], capsys, "holds 1 class folder(s) ['cats']", "expected at least two")
    (tmp_path / "hollow" / "a").mkdir(parents=True)
    (tmp_path / "hollow" / "b").mkdir()
    _fails(["run", "--data", str(tmp_path / "hollow"), *QUIET, "--weights", "none"], capsys, "class folder", "holds no images")


def test_an_unreadable_image_is_named_and_skip_bad_images_skips_and_counts_it(
    tmp_path, capsys, monkeypatch
) -> None:
    root = _image_folder(tmp_path / "ds", {"a": 6, "b": 6}, broken="b/broken.png")
    monkeypatch.chdir(tmp_path)
    extracted = []

    def fake_extract(images, **kwargs):  # stands in for the backbone: pixels as features
        extracted.append(images)

        def flat(x):
            return x.reshape(len(x), -1)[:, ::24].astype(np.float32) / 255.0

        return FeatureSplits(flat(images.train_images), images.train_labels, flat(images.val_images),
                             images.val_labels, flat(images.test_images), images.test_labels,
                             class_names=images.class_names, name=images.name)

    monkeypatch.setattr(build_module, "extract_features", fake_extract)
    config = _toml(tmp_path, "[report]\nexport_model = false\nseeds = 1\n")
    args = ["run", config, "--data", str(root), "--image-size", "32", "--evaluations", "6", "--population", "3",
            "--epochs", "1", "--hidden", "4", "--weights", "none", *QUIET]
    _fails(args, capsys, f"cannot read image '{root / 'b' / 'broken.png'}'", "skip")
    assert not extracted
    assert cli_main([*args, "--skip-bad-images"]) == 0
    out = capsys.readouterr().out
    assert "1 unreadable skipped" in out
    assert extracted[0].skipped == [str(root / "b" / "broken.png")]
    assert len(extracted[0].train_labels) + len(extracted[0].val_labels) + len(extracted[0].test_labels) == 12


def test_ood_features_of_another_width_are_refused_before_the_search(tmp_path) -> None:
    data, _ = make_planted_features()
    config = config_from_dict({
        "progress": False, "head": {"hidden": [16]}, "tracking": {"enabled": False},
        "checkpoint": {"dir": str(tmp_path)}, "algorithm": {"name": "nsga2"},
        "objectives": {"names": ["accuracy", "robustness"], "ood": "ood.npz"},
    })
    out = io.StringIO()
    with pytest.raises(ValueError) as info:
        run_module.run(config, features=data, ood_features=np.zeros((10, 32), np.float32), out=out)
    assert str(info.value) == "OOD features have shape (10, 32); expected (n, 64) like the dataset"
    assert not list(tmp_path.iterdir())  # no search started: no checkpoint


# ------------------------------------------------------------------ backbone weights


def _bogus_h5(path: Path) -> Path:
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("not_a_layer/kernel", data=np.zeros((3, 3), np.float32))
    return path


@pytest.mark.parametrize("weights", ["bogus", "mobilenet_0.25"])
def test_a_weights_file_of_another_architecture_is_refused(weights, tmp_path, capsys, monkeypatch) -> None:
    if weights == "bogus":
        path = _bogus_h5(tmp_path / "bogus.h5")
    else:
        assets = os.environ.get("EVOPRUNE_ASSETS")
        if not assets:
            pytest.skip("EVOPRUNE_ASSETS is not set: needs the shared MobileNet 0.25 weights")
        path = Path(assets) / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
        if not path.is_file():
            pytest.skip(f"{path} is missing")
    root = _image_folder(tmp_path / "ds", {"a": 4, "b": 4})
    monkeypatch.setenv("EVOPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    _fails(["run", "--data", str(root), "--backbone", "mobilenet_v2", "--weights", str(path), "--image-size", "32",
            *QUIET], capsys, f"weights file '{path}' does not fit backbone MobileNetV2",
           "expected a weights file of this architecture")
    assert not list((tmp_path / "cache").glob("*.npz"))  # no feature entry (its lock file may be there)


def test_a_missing_weights_file_is_named(tmp_path, capsys, tripwire) -> None:
    root = _image_folder(tmp_path / "ds", {"a": 4, "b": 4})
    missing = tmp_path / "nope.h5"
    _fails(["run", "--data", str(root), "--weights", str(missing), "--image-size", "32", *QUIET], capsys,
           f"backbone.weights='{missing}' is not a file", "expected 'imagenet', 'none' or a weights file")


# ------------------------------------------------------------------ tracking store


def test_an_unreachable_tracking_server_fails_fast_before_any_data_is_read(tmp_path, capsys, monkeypatch) -> None:
    def never(*args, **kwargs):
        raise AssertionError("the dataset was read before the tracking store was checked")

    monkeypatch.setattr(head_run, "prepare_features", never)
    monkeypatch.setattr(build_module, "load_run_images", never)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    began = time.monotonic()
    _fails(["run", "--no-progress", "--data", str(tmp_path / "whatever")], capsys,
           "MLflow tracking store http://127.0.0.1:9 cannot be used", "expected a reachable store")
    assert time.monotonic() - began < 30


def test_a_sqlite_store_in_a_missing_folder_is_refused(tmp_path, capsys, tripwire) -> None:
    uri = f"sqlite:///{tmp_path}/no/such/folder/mlflow.db"
    path = _toml(tmp_path, f"[tracking]\nuri = '{uri}'\n")
    _fails(["run", path, "--no-progress"], capsys, f"MLflow tracking store {uri}", "does not exist")


# ------------------------------------------------------------------ checkpoints


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("checkpoint")
    data, _ = make_planted_features()
    config = config_from_dict({
        "seed": 4, "progress": False, "head": {"hidden": [8]}, "train": {"epochs": 1, "engine": "numpy"},
        "algorithm": {"population": 4, "evaluations": 8}, "tracking": {"enabled": False},
        "checkpoint": {"dir": str(tmp_path)}, "report": {"seeds": 1, "export_model": False},
    })
    return run_module.run(config, features=data, out=io.StringIO()).checkpoint


def test_resume_refuses_a_checkpoint_from_a_newer_format(checkpoint_path, tmp_path, capsys, tripwire) -> None:
    newer = tmp_path / "newer" / "checkpoint.npz"
    save_checkpoint(newer, dataclasses.replace(load_checkpoint(checkpoint_path), format_version=FORMAT_VERSION + 1))
    _fails(["resume", str(newer)], capsys, f"checkpoint {newer} has format {FORMAT_VERSION + 1}",
           f"reads formats up to {FORMAT_VERSION}")
    _fails(["resume", str(newer.parent)], capsys, "written by a newer evoprune_tf")


def test_resume_refuses_a_checkpoint_of_another_config(checkpoint_path, tmp_path, capsys, tripwire) -> None:
    saved = load_checkpoint(checkpoint_path)
    # What an older evoprune_tf might have stored: a key this version does not know.
    odd = dataclasses.replace(saved, config={**saved.config, "algorithm": {**saved.config["algorithm"], "popsize": 3}})
    path = save_checkpoint(tmp_path / "odd" / "checkpoint.npz", odd)
    _fails(["resume", str(path)], capsys, f"config of {path}", "unknown key algorithm.popsize")
    # Resuming with a config that changes the search (API: run(config, checkpoint=...)).
    other = config_from_dict({**saved.config, "seed": 99, "train": {**saved.config["train"], "epochs": 5}})
    with pytest.raises(ValueError) as info:
        run_module.run(other, checkpoint=checkpoint_path, out=io.StringIO())
    message = str(info.value)
    assert "\n" not in message and "belongs to another config" in message
    assert "seed: 4 -> 99" in message and "train.epochs: 1 -> 5" in message
    _fails(["resume", str(tmp_path / "no-such-run")], capsys, "no checkpoint file, folder or run id")
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"\x00" * 64)
    _fails(["resume", str(garbage)], capsys, f"checkpoint {garbage} is unreadable")


# ------------------------------------------------------------------ fuzzing

_KEYS = {name: sorted(f.name for f in dataclasses.fields(cls)) for name, cls in _SECTION_TYPES.items()}
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6),
    st.sampled_from(["nsga2", "steady_state", "uniform", "flip_bit", "1/L", "robustness", "${HOME}", "\n"]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=5) | st.sampled_from(["name", "indpb", "tournsize"]), inner, max_size=3),
    ),
    max_leaves=8,
)


def _section(name: str):
    return st.dictionaries(st.sampled_from(_KEYS[name]) | st.text(max_size=5), _VALUES, max_size=4)


_RAW_CONFIGS = st.fixed_dictionaries({}, optional={
    **{name: _section(name) | _VALUES for name in _KEYS},
    **{key: _VALUES for key in _TOP_LEVEL},
    "bogus": _VALUES,
})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_RAW_CONFIGS)
def test_fuzz_config_from_dict_raises_only_one_line_config_errors(raw: dict) -> None:
    try:
        config = config_from_dict(raw)
    except ConfigError as error:
        assert isinstance(error, ValueError)
        assert "\n" not in str(error) and error.problems
    else:
        assert config_from_dict(config.to_dict()) == config  # a valid config round-trips


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80) | st.binary(max_size=80).map(lambda b: b.decode("latin-1")))
def test_fuzz_load_config_with_arbitrary_file_content(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.toml"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        try:
            load_config(path)
        except ConfigError as error:
            assert "\n" not in str(error)


_ENCODINGS = [
    make_encoding("feature_selection", HeadSpec(6, 2, (3,))),
    make_encoding("neuron_pruning", HeadSpec(4, 2, (3, 2))),
    make_encoding("connection_pruning", HeadSpec(2, 2, (3,)), layer=1),
]
_GENOMES = st.one_of(
    _SCALARS,
    st.lists(st.sampled_from([0, 1, True, False, 0.0, 1.0, 0.5, 2, -1, float("nan")]), min_size=5, max_size=7),
    st.lists(st.one_of(st.integers(), st.floats()), max_size=8),
    st.lists(st.lists(st.integers(0, 1), max_size=3), max_size=7),
    st.lists(st.text(max_size=2), max_size=7),
    hnp.arrays(st.sampled_from([np.int8, np.uint8, np.int64, np.float32, np.float64, np.bool_, np.complex64, "U2"]),
               hnp.array_shapes(min_dims=0, max_dims=2, max_side=7)),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=3),
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(_ENCODINGS), _GENOMES)
def test_fuzz_genome_validate_and_decode_raise_only_one_line_value_errors(encoding, genome) -> None:
    try:
        genes = encoding.validate(genome)
    except ValueError as error:
        assert "\n" not in str(error)
        with pytest.raises(ValueError):
            encoding.decode(genome)
        return
    assert genes.dtype == bool and genes.shape == (encoding.genome_length,)
    masks = encoding.decode(genome)
    assert masks.active_parameters(encoding.spec) >= 0


def test_a_genome_of_mixed_python_objects_is_a_value_error() -> None:
    encoding = _ENCODINGS[0]
    with pytest.raises(ValueError):
        encoding.validate([b"x", "y", None, 1, 0, 1])
    with pytest.raises(ValueError, match="dtype"):
        encoding.validate(["1"] * encoding.genome_length)
