"""Issue 29 as a user sees it: each bad input ends the command line in one
line naming the fix, status 2, no traceback and nothing trained; a setting
that failed never refuses its own correction."""
import json
import os

import pytest

import cli

DEMO = cli.DEMO


_cli = cli.run


def _one_line(proc, message):
  """Status 2, no traceback, and stderr's only line (TF's noise aside) names it."""
  assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr and "USAGE" not in proc.stderr
  lines = [l for l in proc.stderr.splitlines() if l.startswith("Error: ")]
  assert len(lines) == 1 and message in lines[0], proc.stderr[-2000:]
  return lines[0]


def _workdir_file(tmp_path):
  path = tmp_path / "a_file"
  path.write_text("")
  return str(path)


def _damaged_run_json(tmp_path):
  (tmp_path / "run.json").write_text('{"model_config": {"get_model.wid')
  return str(tmp_path)


def _fake_run(tmp_path):
  # What a run leaves that the evaluation CLI reads before any checkpoint.
  (tmp_path / "results.json").write_text(json.dumps(dict(
      schema_version=2, run=dict(task="rotation", dataset="fashion_mnist",
                                 seed=0), evaluations=[])))
  (tmp_path / "checkpoints").mkdir()
  return str(tmp_path)


# Each stops before any model is built: one TF import apiece.
CASES = {
    "no_config": (lambda t: ["train_and_eval.py", f"--workdir={t}"],
                  "Error: --config is required, e.g. "
                  "--config=configs/demo_fashion_mnist.gin"),
    "unclosed_bracket": (lambda t: ["train_and_eval.py", DEMO, f"--workdir={t}",
                                    "--gin_bindings=train.epochs = (2"],
                         "--gin_bindings='train.epochs = (2' does not parse"),
    "steps_per_loop_0": (lambda t: ["train_and_eval.py", DEMO, f"--workdir={t}",
                                    "--gin_bindings=train.steps_per_loop = 0"],
                         "train.steps_per_loop = 0: it must be at least 1."),
    "workdir_is_a_file": (lambda t: ["train_and_eval.py", DEMO,
                                     f"--workdir={_workdir_file(t)}"],
                          "a_file is a file, not a folder"),
    "damaged_run_json": (lambda t: ["train_and_eval.py", DEMO,
                                    f"--workdir={_damaged_run_json(t)}"],
                         "run.json is damaged (Unterminated string"),
    "missing_hub_path": (lambda t: ["-m", "evaluation", f"--hub_module={t}/nope",
                                    "--dataset=fashion_mnist", f"--workdir={t}/e"],
                         f"--hub_module=%s/nope: no such file or directory"),
    "hub_without_dataset": (lambda t: ["-m", "evaluation", f"--hub_module={t}",
                                       f"--workdir={t}/e"],
                            "--dataset is required with --hub_module, e.g. "
                            "--dataset=fashion_mnist"),
    "missing_checkpoint": (lambda t: ["-m", "evaluation", f"--workdir={_fake_run(t)}",
                                      f"--checkpoint={t}/checkpoints/ckpt-9"],
                           "/checkpoints/ckpt-9: no such checkpoint"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_before_any_work(tmp_path, case):
  make_args, message = CASES[case]
  line = _one_line(_cli(make_args(tmp_path)), message.replace("%s", str(tmp_path)))
  assert len(line) < 600
  assert not os.path.exists(tmp_path / "checkpoints" / "checkpoint")
  if case == "damaged_run_json":  # refused, not rewritten
    assert (tmp_path / "run.json").read_text() == '{"model_config": {"get_model.wid'


@pytest.mark.slow
def test_a_failed_setting_never_refuses_its_correction(tmp_path):
  base = ["train_and_eval.py", DEMO, f"--workdir={tmp_path}",
          "--gin_bindings=train.epochs = 0",
          "--gin_bindings=experiment.linear_eval_enabled = False",
          "--gin_bindings=experiment.evaluate_random_init = False",
          "--gin_bindings=hub_export.enabled = False",
          # 16 px: the run's pretext evaluation at a quarter of the demo's work.
          "--gin_bindings=rotation.pp_train = 'decode|resize(16)|value_range(-1, 1)|rotate'",
          "--gin_bindings=rotation.pp_representation = "
          "'decode|resize(16)|value_range(-1, 1)'"]
  _one_line(_cli(base + ["--gin_bindings=get_model.width = 0"]), "width")
  # The same command without the mistake, with a default bound to itself.
  fixed = _cli(base + ["--gin_bindings=get_model.last_relu = True"])
  assert fixed.returncode == 0, fixed.stderr[-3000:]
  with open(tmp_path / "run.json") as f:
    doc = json.load(f)
  assert doc["model_config"]["get_model.width"] == "1"
  assert "get_model.last_relu" not in doc["model_config"]
  assert doc["status"] == "done"
