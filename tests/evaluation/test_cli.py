"""`python -m evaluation`: every protocol end to end on Fashion-MNIST features
of a run, reusing cached features, low data, and a TF-Hub module."""
import json
import os
import signal
import subprocess
import sys

import pytest

import cli

# A random-init run (0 steps) of the demo trunk at its 32 px (at 16 px the MLP
# on 2% of the labels scored 54.8 over its floor of 50: too thin a margin for
# other CPUs' rounding); evaluation settings small enough for CI and identical
# wherever two entries are compared.
TRAIN_BINDINGS = ["train.epochs = 0", "experiment.evaluate_random_init = False"]
EVAL_BINDINGS = [
    "linear_eval.l2_grid = [1e-3]", "linear_eval.max_iter = 60",
    "sgd_eval.batch_size = 256",
    "sgd_eval.first_decay_epochs = 1", "sgd_eval.second_decay_after = 0",
    "sgd_eval.tail_epochs = 1", "sgd_eval.eval_batch_size = 1000",
    # Two epochs: the protocol's plain linear head (the default) reaches ~42% on
    # an untrained trunk's raw pre_logits in that budget; the scale-free batch
    # norm before it (the option) makes two epochs enough for the checks below.
    "sgd_eval.normalize = True"]


def _python(args):
  proc = cli.run(args, timeout=1200)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout


def _evaluate(workdir, *flags):
  bindings = [f"--gin_bindings={b}" for b in EVAL_BINDINGS]
  return _python(["-m", "evaluation", f"--workdir={workdir}", *bindings, *flags])


def _entries(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    return {(e["protocol"], e["trunk"], e["fraction"]): e
            for e in json.load(f)["evaluations"]}


@pytest.mark.slow
def test_every_protocol_on_fashion_mnist_through_the_cli(tmp_path):
  workdir = str(tmp_path / "run")
  _python(["train_and_eval.py", "--config=configs/demo_fashion_mnist.gin",
           f"--workdir={workdir}", "--mode=train"]
          + [f"--gin_bindings={b}" for b in TRAIN_BINDINGS])

  out = _evaluate(workdir, "--protocol=linear_lbfgs,linear_sgd_features,"
                  "mlp_sgd_features")
  # train, val and test (L-BFGS), each once; the SGD protocols' trainval is
  # train then val, read back rather than run through the trunk again.
  assert out.count("extracting pre_logits") == 3
  assert out.count("features of trainval: train + val, concatenated") == 2
  entries = _entries(workdir)
  lbfgs = entries[("linear_lbfgs", "trained@0", 1.0)]
  assert lbfgs["train_split"] == "train+val" and lbfgs["eval_split"] == "test"
  assert lbfgs["hyperparameters"]["train_examples"] == 60_000  # the refit: train + val
  assert 70 < lbfgs["top1"] < 95
  for protocol in ("linear_sgd_features", "mlp_sgd_features"):
    e = entries[(protocol, "trained@0", 1.0)]
    assert e["train_split"] == "trainval"
    assert [c["epoch"] for c in e["curve"]] == [1, 2]
    assert 60 < e["top1"] < 95, (protocol, e["top1"])
  cached = os.listdir(os.path.join(workdir, "features"))
  assert sorted(name.split("-")[0] for name in cached) == [
      "test", "train", "val"]

  # Low data on the cached features: nothing is extracted again.
  out = _evaluate(workdir, "--protocol=linear_lbfgs", "--fraction=0.1")
  assert "extracting" not in out and "read from" in out
  low = _entries(workdir)[("linear_lbfgs", "trained@0", 0.1)]
  assert low["hyperparameters"]["train_examples"] == 6_000  # 10% of train and of val
  assert 50 < low["top1"] < lbfgs["top1"] + 1

  # Image protocols (augmented, frozen trunk) on 2% of the labels.
  _evaluate(workdir, "--protocol=linear_sgd,mlp_sgd", "--fraction=0.02",
            "--gin_bindings=sgd_eval.batch_size = 32",
            "--gin_bindings=sgd_eval.base_lr = 2.0",
            "--gin_bindings=sgd_eval.eval_split = 'val'")
  entries = _entries(workdir)
  for protocol in ("linear_sgd", "mlp_sgd"):
    e = entries[(protocol, "trained@0", 0.02)]
    assert e["hyperparameters"]["train_examples"] == 1_200
    assert e["eval_split"] == "val" and e["hyperparameters"]["lr"] == 0.03125
    assert len(e["curve"]) == 2 and 50 < e["top1"] <= 100, (protocol, e["top1"])

  # Done entries are not redone.
  out = _evaluate(workdir, "--protocol=linear_lbfgs")
  assert "already in results.json" in out

  # The exported module gives the checkpoint's result under the same protocol
  # (a module carries no evaluation settings: the Fashion-MNIST config's refit on
  # train + val scored on test, which the run used; the defaults are Table 1's).
  hub_dir = os.path.join(workdir, "export", "hub", "0")
  hub_work = str(tmp_path / "hub_eval")
  _python(["-m", "evaluation", f"--hub_module={hub_dir}",
           "--dataset=fashion_mnist", f"--workdir={hub_work}",
           "--config=configs/common/fashion_mnist.gin",
           "--protocol=linear_lbfgs"]
          + [f"--gin_bindings={b}" for b in EVAL_BINDINGS])
  hub = _entries(hub_work)[("linear_lbfgs", f"hub:{hub_dir}", 1.0)]
  assert abs(hub["top1"] - lbfgs["top1"]) < 0.05

  # Every evaluation is on record beside the training, with its commit; the
  # run's own command and status stay the training's.
  with open(os.path.join(workdir, "run.json")) as f:
    record = json.load(f)
  assert "train_and_eval.py" in record["command"] and record["status"] == "done"
  evaluations = [i for i in record["invocations"] if i.get("kind") == "evaluation"]
  assert [i["status"] for i in evaluations] == ["done"] * 4
  assert all(i["git_commit"] and i["end_time"] >= i["start_time"] for i in evaluations)
  assert "--fraction=0.1" in evaluations[1]["command"]
  with open(os.path.join(hub_work, "run.json")) as f:
    assert [i["kind"] for i in json.load(f)["invocations"]] == ["evaluation"]

  # A SIGTERM during an L-BFGS fit stops it there (one fit can outlast a
  # preemption's grace period): status 75, no entry, the invocation on record
  # as preempted. A fit with no L2 and no tolerance runs hundreds of
  # iterations; the notice lands as it starts (after the low-data line).
  _stopped_inside_a_fit(workdir)


def test_bad_seeds_are_named_before_any_work(tmp_path):
  proc = cli.run(["-m", "evaluation", f"--workdir={tmp_path}", "--seeds=0,one"],
                 timeout=300)
  assert proc.returncode != 0
  assert "--seeds takes integers, e.g. --seeds=0,1,2 (got 0,one)." in proc.stderr
  assert "Traceback" not in proc.stderr


def test_unknown_protocol_names_the_known_ones(tmp_path):
  proc = cli.run(["-m", "evaluation", f"--workdir={tmp_path}", "--protocol=knn_cosine"],
                 timeout=300)
  assert proc.returncode != 0
  assert "Unknown evaluation protocol" in proc.stderr
  assert "linear_lbfgs" in proc.stderr and "mlp_sgd_features" in proc.stderr
  assert ", knn, finetune." in proc.stderr


def _stopped_inside_a_fit(workdir):
  endless = ["linear_eval.l2_grid = [0.0]", "linear_eval.tol = 0.0",
             "linear_eval.search_tol = 0.0", "linear_eval.max_iter = 1000000"]
  proc = subprocess.Popen(
      [sys.executable, "-m", "evaluation", f"--workdir={workdir}",
       "--protocol=linear_lbfgs", "--fraction=0.5"]
      + [f"--gin_bindings={b}" for b in EVAL_BINDINGS + endless],
      cwd=cli.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      env=dict(os.environ, PYTHONUNBUFFERED="1"))
  try:
    for line in proc.stdout:
      if "low-data:" in line:
        proc.send_signal(signal.SIGTERM)
        break
    _, err = proc.communicate(timeout=300)
  finally:
    proc.kill()
  assert proc.returncode == 75, err[-3000:]
  assert "inside an L-BFGS fit" in err and "Rerun the same command" in err
  assert ("linear_lbfgs", "trained@0", 0.5) not in _entries(workdir)
  with open(os.path.join(workdir, "run.json")) as f:
    last = json.load(f)["invocations"][-1]
  assert last["kind"] == "evaluation" and last["status"].startswith(
      "preempted: SIGTERM received: stopped the evaluation inside an L-BFGS fit")
