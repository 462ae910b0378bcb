"""scripts/multi_worker.sbatch: the command each SLURM task runs."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "multi_worker.sbatch")


def _run(tmp_path, *args):
  # A stand-in srun that prints what it was asked to start.
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir(exist_ok=True)
  (bin_dir / "srun").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
  (bin_dir / "srun").chmod(0o755)
  env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}",
             SLURM_SUBMIT_DIR=ROOT, PYTHON="/opt/py/bin/python")
  return subprocess.run(["bash", SCRIPT, *args], env=env, capture_output=True,
                        text=True, cwd=tmp_path, timeout=60)


def test_every_task_runs_train_and_eval_as_a_worker(tmp_path):
  proc = _run(tmp_path, "configs/demo_fashion_mnist.gin", "/shared/run",
              "--data_dir=/shared/tfds")
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.splitlines() == [
      "--kill-on-bad-exit=1", "/opt/py/bin/python", "train_and_eval.py",
      "--config=configs/demo_fashion_mnist.gin", "--workdir=/shared/run",
      "--strategy=multi_worker", "--data_dir=/shared/tfds"]
  with open(SCRIPT) as f:
    header = f.read()
  for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1",
               "#SBATCH --gpus-per-node=8"):
    assert line in header


def test_without_a_config_and_workdir_it_says_how_to_call_it(tmp_path):
  proc = _run(tmp_path, "configs/demo_fashion_mnist.gin")
  assert proc.returncode == 2
  assert "usage: sbatch scripts/multi_worker.sbatch CONFIG WORKDIR" in proc.stderr
