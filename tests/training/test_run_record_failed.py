"""An error after a run is on record ends its invocation as failed (the
miniature's first Rnd cell stopped in evaluation and left 'running')."""
import json

import pytest
import tensorflow as tf

from training import experiment as experiment_lib
from training import run_record
from training import workdir as workdir_lib

EXPERIMENT = experiment_lib.Experiment(task="rotation", dataset="fashion_mnist", seed=0)
CONFIG = {"experiment.task": "rotation", "get_model.width": "1"}


def _doc(workdir):
  with open(workdir_lib.Workdir(workdir).run_json) as f:
    return json.load(f)


def test_an_error_after_start_is_recorded_as_failed(tmp_path):
  with pytest.raises(ValueError):
    with run_record.RunRecord(tmp_path, EXPERIMENT, tf.distribute.get_strategy(),
                              False) as record:
      record.start(CONFIG)
      raise ValueError("Unknown layer(s) ['pre_logits']")
  doc = _doc(tmp_path)
  assert doc["status"] == "failed: Unknown layer(s) ['pre_logits']"
  assert [i["status"] for i in doc["invocations"]] == [doc["status"]]
  assert doc["model_config"] == CONFIG
