"""The command lines answer bad input with one line naming the fix (status 2, no
traceback unless --debug), refuse a workdir in use, and turn SIGTERM into a
checkpoint and status 75 that a rerun resumes from."""
import json
import os
import re
import signal
import socket
import subprocess
import sys

import pytest

import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = cli.DEMO
# The demo at 16 px (a quarter of its work per step) where a test needs steps and
# checkpoints of a real run, not the demo's image size.
SMALL_IMAGES = [
    "--gin_bindings=rotation.pp_train = 'decode|resize(16)|value_range(-1, 1)|rotate'",
    "--gin_bindings=rotation.pp_representation = 'decode|resize(16)|value_range(-1, 1)'"]


_cli = cli.run


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
          "--gin_bindings=hub_export.enabled = False", *SMALL_IMAGES]
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
  # Weights of ~1e30 overflow the weight decay (inf) by step 3; the loss
  # itself may still be finite (1e26 with the fused batch norm) or NaN.
  assert re.search(r"The training loss is .+ at step 3\. ", line), line
  assert "Lower scaled_learning_rate.base_lr" in line
  with open(tmp_path / "run.json") as f:
    assert re.match(r"failed: The training loss is .+ at step 3\. ",
                    json.load(f)["status"])
  assert not os.path.exists(tmp_path / "lock")


@pytest.mark.parametrize("binding,message", [
    ("rotation.pp_representation = 'decode|resise(32)|value_range(-1, 1)'",
     "rotation.pp_representation = 'decode|resise(32)|value_range(-1, 1)': "
     "Unknown preprocessing op 'resise'"),
    ("linear_eval.layers = ['pre_logits', 'block9']",
     "linear_lbfgs: linear_eval.layers names ['block9'], not end points of this "
     "trunk; it has after_root, block1, block2, block3, block4, pre_logits"),
    ("linear_eval.eval_split = 'validation'",
     "linear_lbfgs: linear_eval.eval_split = 'validation', which fashion_mnist lacks"),
    # Images too small for a crop, for the patch grid, for the trunk.
    ("rotation.pp_train = 'decode|resize(36)|crop(40)|value_range(-1, 1)|rotate'",
     "rotation.pp_train = 'decode|resize(36)|crop(40)|value_range(-1, 1)|rotate' "
     "on fashion_mnist: Cannot crop 40x40 from an image of 36x36"),
    ("--config=configs/jigsaw/fashion_mnist.gin\njigsaw.pp_train = "
     "'decode|resize(20)|crop(16)|crop_patches(3, patch_size=8, jitter=2)|standardize'",
     "jigsaw.pp_train = 'decode|resize(20)|crop(16)|crop_patches(3, patch_size=8, "
     "jitter=2)|standardize' on fashion_mnist: crop_patches: image 16x16 split 3x3 "
     "gives cells smaller than patch_size=8; resize or crop to at least 24 pixels "
     "first."),
    ("get_model.name = 'vgg19_bn'\n"
     "rotation.pp_representation = 'decode|resize(16)|value_range(-1, 1)'",
     "rotation.pp_representation = 'decode|resize(16)|value_range(-1, 1)' gives "
     "inputs of 16x16x3 on fashion_mnist, which the trunk cannot take: vgg19_bn "
     "needs images of at least 32x32 (five 2x2 pools); got input shape"),
])
def test_what_would_fail_after_training_fails_before_it(tmp_path, binding, message):
  args = [DEMO]
  for b in binding.split("\n"):
    args = [b] if b.startswith("--config=") else args + [f"--gin_bindings={b}"]
  line = _bad_input(_cli(["train_and_eval.py", f"--workdir={tmp_path}", *args]),
                    message)
  assert "in user code" not in line and "Arguments received" not in line
  assert not os.path.exists(tmp_path / "checkpoints" / "checkpoint")


@pytest.mark.slow
def test_a_workdir_refuses_a_config_that_changes_its_model(tmp_path):
  base = ["train_and_eval.py", DEMO, f"--workdir={tmp_path}",
          "--gin_bindings=train.epochs = 0",
          "--gin_bindings=experiment.linear_eval_enabled = False",
          "--gin_bindings=hub_export.enabled = False"]
  first = _cli(base)
  assert first.returncode == 0, first.stderr[-2000:]
  line = _bad_input(_cli(base + ["--gin_bindings=get_model.width = 2"]),
                    "holds a model made with get_model.width = 1, but this config "
                    "says get_model.width = 2")
  assert "--overwrite_config" in line
  pp = "rotation.pp_representation = 'decode|resize(28)|resize(32)|value_range(-1, 1)'"
  _bad_input(_cli(base + [f"--gin_bindings={pp}"]),
             "rotation.pp_representation = decode|resize(32)|value_range(-1, 1),")
  # Evaluation settings and longer training are not the model: allowed.
  again = _cli(base + ["--gin_bindings=linear_eval.max_iter = 7"])
  assert again.returncode == 0, again.stderr[-2000:]
  forced = _cli(base + [f"--gin_bindings={pp}", "--overwrite_config"])
  assert forced.returncode == 0, forced.stderr[-2000:]
  with open(tmp_path / "run.json") as f:
    doc = json.load(f)
  assert [i["status"] for i in doc["invocations"]] == ["done", "done", "done"]
  assert doc["model_config"]["get_model.width"] == "1"


def test_a_hub_module_path_that_is_not_a_module_is_named(tmp_path):
  (tmp_path / "not_a_module").mkdir()
  _bad_input(_cli(["-m", "evaluation", f"--hub_module={tmp_path}/not_a_module",
                   "--dataset=fashion_mnist", f"--workdir={tmp_path}/eval"]),
             f"{tmp_path}/not_a_module has no assets/metadata.json: it is not a module")


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_at_most_a_checkpoint_interval(tmp_path):
  import random  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "run")
  args = [sys.executable, "train_and_eval.py", DEMO, f"--workdir={workdir}",
          "--gin_bindings=train.epochs = 0.05", "--gin_bindings=train.steps_per_loop = 2",
          # A checkpoint after every loop: kills land in saves too.
          "--gin_bindings=train.checkpoint_secs = 0",
          "--gin_bindings=experiment.linear_eval_enabled = False",
          "--gin_bindings=experiment.evaluate_random_init = False",
          "--gin_bindings=hub_export.enabled = False", *SMALL_IMAGES]
  from training import checkpoints  # pylint: disable=g-import-not-at-top
  rng = random.Random(0)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  last = 0
  for kill in range(3):
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
      lines = 0
      for line in proc.stdout:
        if line.startswith("step "):
          lines += 1
          if lines == 1:
            # A kill before the first save has nothing to lose, and on loaded
            # cores that save can outlast the random delay: the delay starts
            # once a checkpoint is on disk (then it lands in a loop or a save).
            deadline = time.time() + 300
            while not checkpoints.steps(ckpt_dir) and time.time() < deadline:
              time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.0))  # somewhere in a loop or a save
            break
    finally:
      proc.kill()
      proc.wait()
    found = checkpoints.steps(ckpt_dir)
    assert found, f"kill {kill}: no checkpoint"
    newest = max(found)
    # Never behind the last checkpoint seen; each one on disk reads whole.
    assert newest >= last
    last = newest
    for prefix in found.values():
      assert checkpoints.readable(prefix), prefix
  done = _cli(args[1:])
  assert done.returncode == 0, done.stderr[-3000:]
  assert f"Resumed from {ckpt_dir}/ckpt-" in done.stdout
  assert "Training done at step 43" in done.stdout  # ceil(0.05 * 55000 / 64)
  assert not [p for p in os.listdir(ckpt_dir) if "_temp" in p]
  assert not os.path.exists(os.path.join(workdir, "lock"))
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["run"]["steps"] == 43
