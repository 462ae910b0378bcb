"""setup.py must not install top-level `datasets` / `models` packages."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_setup_installs_no_top_level_packages(tmp_path):
  out = subprocess.run(
      [sys.executable, "setup.py", "-q", "build", "--build-base", str(tmp_path)],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  built = [p for p in tmp_path.rglob("*.py")]
  assert built == []
  for name in ("datasets", "models", "evaluation", "self_supervision"):
    assert not list(tmp_path.rglob(name))
