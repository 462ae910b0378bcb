"""python -m evaluation --hub_module without --dataset: refused before anything
is written (no results folder, lock or results.json)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_a_module_without_a_dataset_is_refused_before_its_results_folder(tmp_path):
  module = tmp_path / "module"  # any folder passes hub_trunk.check_path's first look
  module.mkdir()
  out = tmp_path / "results" / "module_eval"
  proc = subprocess.run(
      [sys.executable, "-m", "evaluation", f"--hub_module={module}", f"--workdir={out}"],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert proc.returncode == 2, proc.stderr
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert lines[-1] == ("Error: --dataset is required with --hub_module, e.g. "
                       "--dataset=fashion_mnist: a module names none. (--debug shows "
                       "the traceback)")
  assert sorted(os.listdir(tmp_path)) == ["module"]  # no results folder at all
  assert os.listdir(module) == []
