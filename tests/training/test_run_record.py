"""The run record: run.json's invocations and status, the model guard, the
operative config, and nothing written by a worker that is not the chief."""
import json

import gin
import pytest
import tensorflow as tf

from models import registry as models_registry  # noqa: F401  (get_model.*)
from training import experiment as experiment_lib
from training import preemption
from training import role
from training import run_record
from training import workdir as workdir_lib

EXPERIMENT = experiment_lib.Experiment(task="rotation", dataset="fashion_mnist",
                                       seed=3)
CONFIG = {"experiment.task": "rotation", "get_model.width": "1"}


def _record(workdir, overwrite=False):
  return run_record.RunRecord(workdir, EXPERIMENT, tf.distribute.get_strategy(),
                              overwrite)


def _doc(workdir):
  with open(workdir_lib.Workdir(workdir).run_json) as f:
    return json.load(f)


def test_invocations_are_appended_with_their_status(tmp_path, monkeypatch):
  # One invocation is one (start time, pid): here each starts a second later.
  times = iter(f"2026-01-01T00:00:{s:02d}+00:00" for s in range(60))
  monkeypatch.setattr(run_record, "_now", lambda: next(times))
  with _record(tmp_path) as record:
    record.start(CONFIG)
    assert _doc(tmp_path)["status"] == "running"
    record.done()
  with pytest.raises(FloatingPointError):
    with _record(tmp_path) as record:
      record.start(CONFIG)
      raise FloatingPointError("The training loss is nan at step 3.")
  with pytest.raises(preemption.Preempted):
    with _record(tmp_path):
      raise preemption.Preempted("SIGTERM received")
  doc = _doc(tmp_path)
  assert [i["status"] for i in doc["invocations"]] == [
      "done", "failed: The training loss is nan at step 3.",
      "preempted: SIGTERM received"]
  assert doc["status"] == "preempted: SIGTERM received" and doc["seed"] == 3
  # A preemption before `start` keeps the model the workdir holds.
  assert doc["model_config"] == CONFIG
  assert (tmp_path / "operative_config.gin").exists()


def test_bad_input_leaves_run_json_as_it_was(tmp_path):
  with pytest.raises(ValueError):
    with _record(tmp_path):
      raise ValueError("a bad binding")
  assert not (tmp_path / "run.json").exists()


def test_the_guard_refuses_another_model_unless_told(tmp_path):
  with _record(tmp_path) as record:
    record.start(CONFIG)
  other = dict(CONFIG, **{"get_model.width": "2"})
  with pytest.raises(ValueError, match="holds a model made with get_model.width = 1, "
                     "but this config says get_model.width = 2"):
    with _record(tmp_path) as record:
      record.start(other)
  with _record(tmp_path, overwrite=True) as record:
    record.start(other)
  assert _doc(tmp_path)["model_config"] == other


def test_model_config_names_task_dataset_seed_trunk_and_pipelines():
  gin.clear_config()
  try:
    gin.parse_config("get_model.width = 2")
    config = run_record.model_config(EXPERIMENT, "rotation", {"train": "decode"})
  finally:
    gin.clear_config()
  assert config == {"experiment.task": "rotation",
                    "experiment.dataset": "fashion_mnist", "experiment.seed": 3,
                    "get_model.width": "2", "rotation.pp_train": "decode"}


def test_a_worker_that_is_not_the_chief_writes_nothing(tmp_path):
  role.set_role(False, "worker-1")
  try:
    with _record(tmp_path) as record:
      record.start(CONFIG)
      record.done()
  finally:
    role.set_role(True)
  assert list(tmp_path.iterdir()) == []


def test_the_operative_config_keeps_bindings_of_stages_not_run_yet(tmp_path):
  # A --mode=train run never calls the evaluation functions; a later
  # `python -m evaluation` must still find the settings its config gave them.
  @gin.configurable("record_test_called")
  def called(a=1, b=2):
    return a + b

  @gin.configurable("record_test_pending")
  def pending(c=3):  # pylint: disable=unused-variable
    return c

  gin.clear_config()
  try:
    gin.parse_config("record_test_called.a = 5\nrecord_test_pending.c = 7")
    called()
    with _record(tmp_path) as record:
      record.write_operative_config()
    with open(workdir_lib.Workdir(tmp_path).operative_config) as f:
      text = f.read()
    assert "record_test_called.a = 5\nrecord_test_called.b = 2\n" in text
    head, tail = text.split("# Bound by the config, not called by this run yet:")
    assert "record_test_pending" not in head
    assert "record_test_pending.c = 7\n" in tail
    # It parses back to the same bindings.
    gin.clear_config()
    gin.parse_config(text)
    assert gin.query_parameter("record_test_pending.c") == 7
    assert gin.query_parameter("record_test_called.b") == 2
  finally:
    gin.clear_config()


def test_an_error_after_start_is_recorded_as_failed(tmp_path):
  # The miniature's first Rnd cell stopped in evaluation and left 'running'.
  with pytest.raises(ValueError):
    with _record(tmp_path) as record:
      record.start(CONFIG)
      raise ValueError("Unknown layer(s) ['pre_logits']")
  doc = _doc(tmp_path)
  assert doc["status"] == "failed: Unknown layer(s) ['pre_logits']"
  assert [i["status"] for i in doc["invocations"]] == [doc["status"]]
  assert doc["model_config"] == CONFIG


def test_an_evaluation_is_appended_beside_the_training(tmp_path, monkeypatch):
  times = iter(f"2026-01-01T00:00:{s:02d}+00:00" for s in range(60))
  monkeypatch.setattr(run_record, "_now", lambda: next(times))
  monkeypatch.setattr(run_record, "_git_commit", lambda: "abc123")
  with _record(tmp_path) as record:
    record.start(CONFIG)
    record.done()
  trained = _doc(tmp_path)
  run_record.record_evaluation(tmp_path, "2025-12-31T23:58:00+00:00", "done")
  run_record.record_evaluation(tmp_path, "2025-12-31T23:59:00+00:00",
                               "failed: no checkpoint")
  doc = _doc(tmp_path)
  # The run's own fields are the training's; the evaluations follow it.
  assert {k: v for k, v in doc.items() if k != "invocations"} == {
      k: v for k, v in trained.items() if k != "invocations"}
  assert doc["invocations"][0] == trained["invocations"][0]
  assert [(i.get("kind"), i["status"], i["git_commit"], i["start_time"], i["end_time"])
          for i in doc["invocations"][1:]] == [
      ("evaluation", "done", "abc123", "2025-12-31T23:58:00+00:00",
       "2026-01-01T00:00:02+00:00"),
      ("evaluation", "failed: no checkpoint", "abc123", "2025-12-31T23:59:00+00:00",
       "2026-01-01T00:00:03+00:00")]
  # A module's results folder (no run.json) gets one of invocations alone.
  other = tmp_path / "hub_eval"
  other.mkdir()
  run_record.record_evaluation(other, "2026-01-01T00:03:00+00:00", "done")
  assert list(_doc(other)) == ["invocations"]
  (other / "run.json").write_text("[1, 2]")
  with pytest.raises(ValueError, match="not a run record"):
    run_record.record_evaluation(other, "2026-01-01T00:04:00+00:00", "done")


def test_a_worker_records_no_evaluation(tmp_path, monkeypatch):
  monkeypatch.setattr(role, "is_chief", lambda: False)
  run_record.record_evaluation(tmp_path, "2026-01-01T00:00:00+00:00", "done")
  assert not (tmp_path / "run.json").exists()
