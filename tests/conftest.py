"""Shared test set-up: isolated caches, the real-assets fixture, the planted-signal fixture."""

from __future__ import annotations

import os
import pathlib
import tempfile

import numpy as np
import pytest

# Keep Keras, MLflow and matplotlib away from the user's home and the network. This runs
# before any test module imports keras.
_TMP_HOME = pathlib.Path(tempfile.mkdtemp(prefix="evoprune-tests-"))
os.environ.setdefault("KERAS_HOME", str(_TMP_HOME / "keras"))
os.environ.setdefault("MPLCONFIGDIR", str(_TMP_HOME / "mpl"))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One feature cache for the whole run: xdist's workers share their controller's folder (a
# worker's parent is the controller), so real-image features extracted by one worker (RPS
# at 96 px: ~20 s) are read by the other. Entries are written atomically (features/cache.py);
# a worker that misses an entry the other is extracting waits for it (features/extract.py).
_SHARED_CACHE = pathlib.Path(tempfile.gettempdir()) / (
    f"evoprune-tests-cache-{os.getppid() if os.environ.get('PYTEST_XDIST_WORKER') else os.getpid()}")
os.environ.setdefault("EVOPRUNE_CACHE_DIR", str(_SHARED_CACHE))
# train.backend = "auto" would put head runs (and the `evoprune` subprocesses, which
# inherit this) on JAX, which the [dev] extra installs: the suite stays on TensorFlow
# unless KERAS_BACKEND says otherwise. tests/app/test_backend_choice.py unsets it.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# Two xdist workers share the 2 cores of the test machine: every TensorFlow and BLAS process
# of the suite (workers, `evoprune` subprocesses, pool workers) keeps to one thread, so they
# do not oversubscribe the cores (-7% CPU and wall on the longest files, measured).
for _threads in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")
# XLA's LLVM back end unoptimised, in every process of the suite: the tests' XLA programs
# (JAX processes, TensorFlow's jit-compiled loops) are tiny and compiled once, so compiling
# is most of their cost and optimising the machine code does not pay back (JAX tests
# 89 -> 72 CPU-s, tf_stacked + TASCNet latency 89 -> 77). Results agree to float32 rounding.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

from evoprune_tf.features.splits import FeatureSplits  # noqa: E402


#: Seconds per test file, the files over ~20 s: the durations of a clean clone's ``make test``
#: (2 busy cores, 2026-12-06, 5f12d22). ``make test`` runs ``-n 2
#: --dist loadfile``: whole files go to the two workers in collection order, so the longest
#: go out first and the short ones fill the gaps (longest processing time first); a long
#: file handed out last keeps one worker busy while the other idles. Files not listed count
#: as short; update a number when a file's cost moves by much.
FILE_SECONDS = {
    "tests/app/test_run.py": 140,
    "tests/test_filters_run.py": 125,
    "tests/tascnet/test_tascnet_resume.py": 75,
    "tests/nn/test_families.py": 70,
    "tests/features/test_extract_subprocess.py": 55,
    "tests/runners/test_ray_runner.py": 50,
    "tests/methods/test_filter_baselines_run.py": 35,
    "tests/test_reproducibility.py": 30,
    "tests/test_benchmark.py": 30,
    "tests/train/test_tf_stacked.py": 30,
    "tests/tascnet/test_stage2.py": 30,
    "tests/test_reliability_resume.py": 28,
    "tests/app/test_resume.py": 25,
    "tests/test_mo_rps.py": 25,
    "tests/app/test_demo.py": 24,
    "tests/tascnet/test_tascnet_latency.py": 22,
    "tests/app/test_backend_choice.py": 22,
    "tests/test_keras_engine.py": 22,
    "tests/nn/test_surgery.py": 20,
    "tests/test_filter_evaluation.py": 20,
    "tests/runners/test_mlflow_server.py": 20,
    "tests/tascnet/test_stage1.py": 20,
    "tests/runners/test_parallel.py": 18,
    "tests/train/test_tf_registry.py": 18,
    "tests/train/test_keras_memory.py": 16,
    "tests/studies/test_compare_axis_runs.py": 15,
    "tests/test_resampling_batched.py": 15,
    "tests/test_filters_latency_objective.py": 14,
    "tests/studies/test_grid.py": 14,
}


#: The RAM folder that holds this run's ``tmp_path`` folders, when the controller made one.
_RAM_BASETEMP: list[str] = []


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Keep the file order below under xdist, and put the temporary folders in RAM.

    xdist's default hands out the files with the most tests first. The temporary folders
    hold the tests' SQLite MLflow stores, and a tracked run commits about a thousand times
    (1.5 ms each on this disk, 0.1 ms in ``/dev/shm``). Without ``--basetemp`` the
    controller makes one folder in ``/dev/shm``, xdist gives each worker a folder inside
    it, and the controller removes it at the end.
    """
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False
    if (config.option.basetemp is None and not os.environ.get("PYTEST_XDIST_WORKER")
            and os.access("/dev/shm", os.W_OK)):
        config.option.basetemp = tempfile.mkdtemp(prefix="evoprune-", dir="/dev/shm")
        _RAM_BASETEMP.append(config.option.basetemp)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest files first: the measured ones by `FILE_SECONDS`, then files holding slow tests, then the rest.

    The sort is stable: tests keep their order inside a file, files of equal rank their
    collection order.
    """
    root = pathlib.Path(str(config.rootpath))
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> tuple[float, bool]:
        try:
            name = item.path.relative_to(root).as_posix()
        except ValueError:  # pragma: no cover - a test outside the repository
            name = item.path.as_posix()
        return -FILE_SECONDS.get(name, 0), item.path not in slow_files

    items.sort(key=rank)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove this process's throw-away Keras home and MLflow folders, and (the controller) the feature cache and RAM folder."""
    import shutil

    shutil.rmtree(_TMP_HOME, ignore_errors=True)
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        shutil.rmtree(_SHARED_CACHE, ignore_errors=True)
        for folder in _RAM_BASETEMP:
            shutil.rmtree(folder, ignore_errors=True)


_STORE_TEMPLATE: list[pathlib.Path] = []


def new_mlflow_store(folder: pathlib.Path) -> str:
    """The SQLite MLflow store in ``folder``: a copy of one empty store built once per process.

    Building the tables runs MLflow's migrations, ~2 s in RAM and 6-8 s on disk; the copy
    takes milliseconds and is the same empty store. A store already in ``folder`` is kept
    (a helper may ask twice for one test's store).
    """
    import shutil

    from mlflow import MlflowClient

    if not _STORE_TEMPLATE:
        build = _TMP_HOME / "mlflow-template"
        build.mkdir(parents=True, exist_ok=True)
        ram = tempfile.mkdtemp(prefix="evoprune-mlflow-", dir="/dev/shm") if os.access("/dev/shm", os.W_OK) else None
        MlflowClient(tracking_uri=f"sqlite:///{ram or build}/mlflow.db").search_experiments(max_results=1)
        if ram is not None:
            shutil.copy(os.path.join(ram, "mlflow.db"), build / "mlflow.db")
            shutil.rmtree(ram, ignore_errors=True)
        _STORE_TEMPLATE.append(build / "mlflow.db")
    pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
    if not (pathlib.Path(folder) / "mlflow.db").exists():
        shutil.copy(_STORE_TEMPLATE[0], pathlib.Path(folder) / "mlflow.db")
    return f"sqlite:///{folder}/mlflow.db"


def untimed_keras_latency(model, *args, **kwargs) -> float:
    """Stands in for `evoprune_tf.report.latency.keras_latency_ms` in runs whose tests do not read it.

    Timing traces each whole deployable network (a few CPU-s a model, most of a run when
    Keras' functions run eagerly); the timing itself is the latency tests' and the
    end-to-end DeepPruningES test's.
    """
    return 1.0


@pytest.fixture
def untimed_keras(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reports of this test's runs skip the Keras timings (`untimed_keras_latency`)."""
    from evoprune_tf.report import latency

    monkeypatch.setattr(latency, "keras_latency_ms", untimed_keras_latency)


@pytest.fixture(scope="session")
def assets() -> pathlib.Path:
    """The shared real assets (ImageNet weights, RPS, ants-vs-bees); skips when absent."""
    root = os.environ.get("EVOPRUNE_ASSETS")
    if not root:
        pytest.skip("EVOPRUNE_ASSETS is not set: real-asset tests need ../shared/assets (CI sets it)")
    path = pathlib.Path(root)
    if not (path / "MANIFEST.txt").is_file():
        pytest.skip(f"EVOPRUNE_ASSETS={root} does not hold the shared assets (no MANIFEST.txt)")
    return path


def make_planted_features(
    *,
    n_features: int = 64,
    n_informative: int = 6,
    n_classes: int = 3,
    n_train: int = 300,
    n_val: int = 150,
    n_test: int = 150,
    noise: float = 3.0,
    seed: int = 0,
) -> tuple[FeatureSplits, np.ndarray]:
    """Synthetic features where only ``n_informative`` columns carry the class.

    The informative columns hold class-dependent means; the others are pure noise with a
    large variance, so a head that sees every column overfits the noise and a head
    restricted to the informative columns generalises clearly better.

    Returns:
        The splits and the boolean mask of informative features.
    """
    rng = np.random.default_rng(seed)
    informative = np.zeros(n_features, dtype=bool)
    informative[rng.choice(n_features, n_informative, replace=False)] = True
    centers = rng.normal(0.0, 1.0, size=(n_classes, n_informative)) * 1.2

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, n_classes, size=n)
        x = rng.normal(0.0, noise, size=(n, n_features)).astype(np.float32)
        x[:, informative] = (centers[y] + rng.normal(0.0, 1.0, size=(n, n_informative))).astype(np.float32)
        return x, y.astype(np.int64)

    x_tr, y_tr = split(n_train)
    x_va, y_va = split(n_val)
    x_te, y_te = split(n_test)
    splits = FeatureSplits(
        x_tr, y_tr, x_va, y_va, x_te, y_te,
        class_names=tuple(f"c{i}" for i in range(n_classes)), name="planted",
    )
    return splits, informative


@pytest.fixture
def planted() -> tuple[FeatureSplits, np.ndarray]:
    """Planted-signal features (see `make_planted_features`)."""
    return make_planted_features()


def assert_real_plot(path, *, min_size: int = 100, min_colours: int = 8) -> None:
    """The file is a PNG image with drawn content: not blank, several colours, a plausible size."""
    from PIL import Image

    data = pathlib.Path(path).read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), f"{path} is not a PNG"
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    height, width = pixels.shape[:2]
    assert min(height, width) >= min_size, f"{path} is only {width}x{height}"
    assert pixels.std() > 5.0, f"{path} is (almost) blank: pixel std {pixels.std():.2f}"
    colours = len(np.unique(pixels.reshape(-1, 3)[:: max(1, height * width // 20000)], axis=0))
    assert colours >= min_colours, f"{path} has only {colours} colours"
    ink = float((pixels.mean(axis=2) < 200).mean())
    assert ink > 0.005, f"{path} has almost nothing drawn ({ink:.4f} of pixels dark)"
