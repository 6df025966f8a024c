"""The public API: every exported name resolves, and importing the package stays cheap."""

import subprocess
import sys

import evoprune_tf


def test_every_exported_name_resolves_to_its_module_object():
    for name in evoprune_tf.__all__:
        value = getattr(evoprune_tf, name)
        assert value is not None, name
    assert evoprune_tf.run.__module__ == "evoprune_tf.app.run"
    assert evoprune_tf.PopulationEvaluator.__module__ == "evoprune_tf.evaluation"
    assert isinstance(evoprune_tf.__version__, str) and evoprune_tf.__version__.count(".") == 2


def test_an_unknown_name_is_an_attribute_error():
    try:
        evoprune_tf.no_such_thing  # noqa: B018
    except AttributeError as error:
        assert "no_such_thing" in str(error)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_importing_the_package_loads_neither_tensorflow_nor_keras_nor_mlflow():
    code = ("import sys, evoprune_tf; heavy = [m for m in ('tensorflow', 'keras', 'mlflow', 'jax') if m in sys.modules];"
            " print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip() == "[]"


def test_the_installed_version_is_the_package_version():
    from importlib.metadata import version

    assert version("evoprune-tf") == evoprune_tf.__version__
