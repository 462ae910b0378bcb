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


# No hook orders the files and no thread count is set: xdist (`--dist
# loadfile`) hands out the files with the most tests first, and each worker's
# TensorFlow takes every core. Measured on 2 cores (the whole suite): the
# longest files first (the CLI and multi-worker tests, several processes each,
# side by side) 25:02; that and one intra-op thread per worker 24:02 (10% less
# CPU, but a worker left alone at the end ran on one core); neither, 23:26 on
# the same day.


def pytest_sessionfinish(session, exitstatus):
  """Each (xdist worker) process waits for its CLI zygote (tests/cli.py)."""
  del session, exitstatus
  import cli  # pylint: disable=g-import-not-at-top
  cli.stop()
