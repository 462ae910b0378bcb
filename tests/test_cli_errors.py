"""The command lines answer bad input with one line naming the fix (status 2, no
traceback unless --debug), refuse a workdir in use, and turn SIGTERM into a
checkpoint and status 75 that a rerun resumes from."""
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = "--config=configs/demo_fashion_mnist.gin"


def _cli(args, timeout=600):
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=timeout)


def _bad_input(proc, message):
  assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  [line] = [l for l in proc.stderr.splitlines() if l.startswith("Error: ")]
  assert message in line, line
  return line


def test_a_missing_config_file_is_named(tmp_path):
  line = _bad_input(_cli(["train_and_eval.py", "--config=configs/nope.gin",
                          f"--workdir={tmp_path}"]),
                    "Config file configs/nope.gin not found")
  assert "configs/demo_fashion_mnist.gin" in line


def test_a_gin_typo_is_named_with_its_binding(tmp_path):
  _bad_input(_cli(["train_and_eval.py", DEMO, f"--workdir={tmp_path}",
                   "--gin_bindings=train.epochz = 2"]), "epochz")


@pytest.mark.parametrize("binding,message", [
    ("get_model.name = 'alexnet'", "Unknown model name 'alexnet'; valid names"),
    ("get_model.width = 0", "width"),
    ("get_model.name = 'resnet50_v1'\nget_model.last_relu = False", "last_relu"),
])
def test_bad_trunks_stop_before_training(tmp_path, binding, message):
  proc = _cli(["train_and_eval.py", DEMO, f"--workdir={tmp_path}"]
              + [f"--gin_bindings={b}" for b in binding.split("\n")])
  _bad_input(proc, message)
  assert not os.path.exists(tmp_path / "checkpoints" / "checkpoint")
  # --debug shows where it came from.
  proc = _cli(["train_and_eval.py", DEMO, f"--workdir={tmp_path}", "--debug"]
              + [f"--gin_bindings={b}" for b in binding.split("\n")])
  assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_a_workdir_in_use_is_refused_naming_its_holder(tmp_path):
  # This test's own process is alive: its lock is not stale.
  (tmp_path / "lock").write_text(json.dumps(dict(
      host=socket.gethostname(), pid=os.getpid(), start_time="2026-12-02T10:00:00+00:00",
      command="python train_and_eval.py ...")))
  line = _bad_input(_cli(["train_and_eval.py", DEMO, f"--workdir={tmp_path}"]),
                    f"is in use by pid {os.getpid()} on {socket.gethostname()}")
  assert "2026-12-02T10:00:00" in line
  _bad_input(_cli(["-m", "evaluation", f"--workdir={tmp_path}", "--dataset=fashion_mnist"]),
             f"is in use by pid {os.getpid()}")


def test_evaluating_a_missing_workdir_says_so(tmp_path):
  _bad_input(_cli(["-m", "evaluation", f"--workdir={tmp_path}/nope"]),
             f"No run workdir {tmp_path}/nope: train one there")


@pytest.mark.slow
def test_sigterm_saves_exits_75_and_the_rerun_resumes(tmp_path):
  workdir = str(tmp_path / "run")
  args = ["train_and_eval.py", DEMO, f"--workdir={workdir}",
          "--gin_bindings=train.epochs = 0.05", "--gin_bindings=train.steps_per_loop = 2",
          "--gin_bindings=experiment.linear_eval_enabled = False",
          "--gin_bindings=experiment.evaluate_random_init = False",
          "--gin_bindings=hub_export.enabled = False"]
  proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  try:
    for line in proc.stdout:
      if line.startswith("step "):
        proc.send_signal(signal.SIGTERM)
        break
    out, err = proc.communicate(timeout=300)
  finally:
    proc.kill()
  assert proc.returncode == 75, err[-3000:]
  [line] = [l for l in err.splitlines() if l.startswith("Preempted: ")]
  assert "SIGTERM received; saved" in line and "Rerun the same command" in line
  step = int(line.split(" at step ")[1].split(".")[0])
  assert 2 <= step < 43  # ceil(0.05 * 55000 / 64) = 43
  assert os.path.exists(os.path.join(workdir, "checkpoints", f"ckpt-{step}.index"))
  assert not os.path.exists(os.path.join(workdir, "lock"))
  with open(os.path.join(workdir, "run.json")) as f:
    assert json.load(f)["status"].startswith("preempted: SIGTERM received")

  again = _cli(args)
  assert again.returncode == 0, again.stderr[-3000:]
  assert f"(step {step})" in again.stdout and "Training done at step 43" in again.stdout
  with open(os.path.join(workdir, "run.json")) as f:
    doc = json.load(f)
  assert doc["status"] == "done"
  assert [i["status"].split(":")[0] for i in doc["invocations"]] == ["preempted", "done"]


@pytest.mark.slow
def test_a_diverging_run_fails_in_one_line_and_says_so_in_run_json(tmp_path):
  proc = _cli(["train_and_eval.py", DEMO, f"--workdir={tmp_path}",
               "--gin_bindings=train.epochs = 0.01",
               "--gin_bindings=train.steps_per_loop = 3",
               "--gin_bindings=scaled_learning_rate.base_lr = 1e30"])
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  [line] = [l for l in proc.stderr.splitlines() if l.startswith("Failed: ")]
  assert "The training loss is nan at step 3" in line
  assert "Lower scaled_learning_rate.base_lr" in line
  with open(tmp_path / "run.json") as f:
    assert json.load(f)["status"].startswith("failed: The training loss is nan at step 3")
  assert not os.path.exists(tmp_path / "lock")


@pytest.mark.parametrize("binding,message", [
    ("rotation.pp_representation = 'decode|resize(32)|value_rnge(-1, 1)'",
     "rotation.pp_representation = 'decode|resize(32)|value_rnge(-1, 1)': "
     "Unknown preprocessing op 'value_rnge'"),
    ("linear_eval.layers = ['pre_logits', 'block9']",
     "linear_lbfgs: linear_eval.layers names ['block9'], not end points of this "
     "trunk; it has after_root, block1, block2, block3, block4, pre_logits"),
    ("linear_eval.eval_split = 'validation'",
     "linear_lbfgs: linear_eval.eval_split = 'validation', which fashion_mnist lacks"),
])
def test_what_would_fail_after_training_fails_before_it(tmp_path, binding, message):
  _bad_input(_cli(["train_and_eval.py", DEMO, f"--workdir={tmp_path}",
                   f"--gin_bindings={binding}"]), message)
  assert not os.path.exists(tmp_path / "checkpoints" / "checkpoint")
