"""Shared test setup: repo root on sys.path, quiet TF, two logical CPU devices.

Two logical CPUs let any test build a 2-replica MirroredStrategy on a laptop or
CI box; they must be configured before TensorFlow initialises its devices, which
is why this happens at import time of the conftest.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (ROOT, os.path.join(ROOT, "tests")):  # tests/: shared fakes
  if _path not in sys.path:
    sys.path.insert(0, _path)

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


import gin  # noqa: E402
import pytest  # noqa: E402

from training import config as _config  # noqa: E402,F401  (configs' include path)


@pytest.fixture
def clean_gin():
  """Every task's gin names registered, and no bindings before or after."""
  from self_supervision import task as task_lib  # pylint: disable=g-import-not-at-top
  task_lib.task_names()
  gin.clear_config()
  yield
  gin.clear_config()


# A thin ResNet50 v2 rotation model on tiny images: the trainer's and the
# evaluation loops' tests.
TINY_ROTATION_GIN = (
    "rotation.pp_train = 'decode|resize(16)|value_range(-1, 1)|rotate'\n"
    "rotation.pp_representation = 'decode|resize(18)|central_crop(16)|"
    "value_range(-1, 1)'\n"
    "get_model.name = 'resnet50_v2'\n"
    "get_model.width = 1\n")


@pytest.fixture
def tiny_rotation_gin(clean_gin):
  """clean_gin with TINY_ROTATION_GIN parsed."""
  del clean_gin
  gin.parse_config(TINY_ROTATION_GIN)
  yield


# Files without end-to-end tests that still take minutes (measured alone on 2
# cores: deep trunks traced under a two-replica strategy, shared trained runs).
LONG_FILES = ("training/test_distribution.py", "self_supervision/test_trainer.py",
              "self_supervision/test_export.py", "evaluation/test_hub_trunk.py",
              "self_supervision/test_new_task.py")


# The longest files of all (measured alone on 2 cores: about 4 and 2 minutes),
# longest first: started last, either would run alone at the end.
LONGEST_FILES = ("evaluation/test_cli.py", "training/test_multi_worker.py")


def pytest_collection_modifyitems(session, config, items):
  """Long files run first: LONGEST_FILES, the other files holding end-to-end
  (slow) tests, then LONG_FILES.

  scripts/test.sh hands whole files to its workers (`--dist loadfile`) in this
  order (`--no-loadscope-reorder`: by default xdist re-sorts files by their
  number of tests, which put the two longest, with 1 and 3 tests, among the
  last 20 of 88); the long files starting first keeps one of them from running
  alone at the end while the other workers idle. Every worker sorts the same
  way.
  """
  del session, config
  slow_files = {item.path for item in items if item.get_closest_marker("slow")}

  def rank(item):
    path = str(item.path)
    for i, name in enumerate(LONGEST_FILES):
      if path.endswith(name):
        return i
    if item.path in slow_files:
      return len(LONGEST_FILES)
    return len(LONGEST_FILES) + (1 if path.endswith(LONG_FILES) else 2)

  items.sort(key=rank)  # stable: a file's tests keep their order


def pytest_sessionfinish(session, exitstatus):
  """Each (xdist worker) process waits for its CLI zygote (tests/cli.py)."""
  del session, exitstatus
  import cli  # pylint: disable=g-import-not-at-top
  cli.stop()
