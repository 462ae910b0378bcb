"""The environment the README's commands build imports the whole stack."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_setuptools_is_pinned_below_81_for_tensorflow_hub():
  # tensorflow_hub 0.16 imports pkg_resources, which setuptools 81 dropped.
  with open(os.path.join(ROOT, "requirements.txt")) as f:
    [pin] = re.findall(r"^setuptools==(\d+)\.", f.read(), re.M)
  assert int(pin) < 81


def test_tensorflow_hub_and_pkg_resources_import():
  proc = subprocess.run(
      [sys.executable, "-c",
       "import pkg_resources, setuptools, tensorflow_hub as hub;"
       "print(setuptools.__version__, hub.__version__)"],
      capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  setuptools_version, hub_version = proc.stdout.split()[-2:]
  assert int(setuptools_version.split(".")[0]) < 81
  assert hub_version == "0.16.1"


def test_importing_tensorflow_does_not_import_scikit_learn():
  # Keras imports scikit-learn on `import tensorflow` when it is installed
  # (~20% of every command's start-up): it stays out of requirements.txt.
  proc = subprocess.run(
      [sys.executable, "-c",
       "import sys, tensorflow; print('sklearn' in sys.modules)"],
      capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.split()[-1] == "False"
