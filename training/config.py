"""Parsing a run's gin files: the one place every command line reads configs.

Config files include shared ones by their path from the repository root
(`include 'configs/common/imagenet.gin'`), so a config reads the same from
any working directory.
"""
import importlib.util  # noqa: F401  gin's include lookup uses it without importing it
import os
from typing import Sequence

import gin

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
gin.add_config_file_search_path(ROOT)


def parse(files: Sequence[str], bindings: Sequence[str] = (), *,
          skip_unknown: bool = False, finalize: bool = True) -> None:
  """gin.parse_config_files_and_bindings, includes found from the root.

  Raises:
    FileNotFoundError: a config file does not exist (named, with where to look).
  """
  for path in files:
    if not os.path.isfile(path):
      raise FileNotFoundError(
          f"Config file {path} not found (working directory {os.getcwd()}); run "
          f"configs live under {os.path.join(ROOT, 'configs')}, e.g. "
          f"configs/demo_fashion_mnist.gin.")
  gin.parse_config_files_and_bindings(list(files), list(bindings),
                                      skip_unknown=skip_unknown,
                                      finalize_config=finalize)
