"""The kNN monitor: on the progress line and in TensorBoard, equal to the kNN
protocol on the same subsets, and without effect on the training trajectory."""
import glob

import gin
import numpy as np
import pytest
import tensorflow as tf

import fake_data
from evaluation import knn
from evaluation import knn_monitor
from evaluation import representations
from self_supervision import task as task_lib
from self_supervision import trainer as trainer_lib

pytestmark = pytest.mark.usefixtures("tiny_rotation_gin")


def _train(workdir, every_loops):
  with gin.unlock_config():
    gin.bind_parameter("knn_monitor.every_loops", every_loops)
    gin.bind_parameter("knn_monitor.train_examples", 24)
    gin.bind_parameter("knn_monitor.eval_examples", 8)
    gin.bind_parameter("knn_monitor.k", 5)
    gin.bind_parameter("knn_monitor.batch_size", 8)
  lines = []
  dataset = fake_data.InMemoryDataset(num_train=40, num_val=8, num_test=8)
  task = task_lib.get_task("rotation", num_classes=dataset.num_classes)
  trainer = trainer_lib.Trainer(
      task, dataset, str(workdir), tf.distribute.get_strategy(), seed=0,
      batch_size=4, epochs=1, warmup_epochs=0, decay_epochs=[], steps_per_loop=4,
      checkpoint_secs=1e9, log=lines.append,
      # As train_and_eval.py hands it to the trainer.
      monitor=lambda model: knn_monitor.make(
          task, model, dataset, tf.distribute.get_strategy(), lines.append))
  trainer.train()
  return trainer, dataset, task, lines


def test_the_monitor_reports_without_changing_the_steps(tmp_path):
  plain, _, _, plain_lines = _train(tmp_path / "plain", 0)
  watched, dataset, task, lines = _train(tmp_path / "watched", 2)
  assert plain.loop.monitor is None
  # 10 steps in loops of 4, 4, 2: the monitor runs after the 2nd loop only.
  progress = [l for l in lines if l.startswith("step ")]
  assert [("knn_top1=" in l) for l in progress] == [False, True, False]
  assert not any("knn_top1" in l for l in plain_lines)
  # Same weights and BN statistics, bit for bit.
  for a, b in zip(plain.model.variables, watched.model.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
  # The value is the kNN protocol's on the first 24 train and 8 val images;
  # with the final model it is reproduced exactly.
  subsets = knn_monitor.FirstExamples(dataset, {"train": 24, "val": 8})
  (train_x, train_y), (val_x, val_y) = [
      representations.extract(task, watched.model, subsets, s, ["pre_logits"],
                              batch_size=8, log=lambda _: None) for s in ("train", "val")]
  assert len(train_y) == 24 and len(val_y) == 8
  sims, labels = knn.neighbours(train_x["pre_logits"], train_y, val_x["pre_logits"], 5)
  expected = 100.0 * knn.accuracy(knn.vote(sims, labels, dataset.num_classes, 0.07),
                                  val_y, 1)
  assert watched.loop.monitor()["knn_top1"] == pytest.approx(expected)
  # And TensorBoard has it, at step 8.
  events = glob.glob(str(tmp_path / "watched" / "summaries" / "events.*"))
  tags = {(v.tag, e.step) for path in events
          for e in tf.compat.v1.train.summary_iterator(path) for v in e.summary.value}
  assert ("monitor/knn_top1", 8) in tags


def test_a_negative_period_is_named():
  dataset = fake_data.InMemoryDataset(num_train=40, num_val=8, num_test=8)
  with pytest.raises(ValueError, match="knn_monitor.every_loops = -1"):
    knn_monitor.KnnMonitor(None, None, dataset, every_loops=-1)


def test_each_worker_reads_its_share_of_the_first_examples():
  # Under several workers the subsets are the split's first examples, split
  # between the input pipelines, not the first examples of each one's shard.
  dataset = fake_data.InMemoryDataset(num_train=40, num_val=8, num_test=8)
  subsets = knn_monitor.FirstExamples(dataset, {"train": 10})
  shards = [[int(e["index"]) for e in subsets.as_dataset(
      "train", input_context=tf.distribute.InputContext(2, i, 2))]
            for i in range(2)]
  assert shards == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
  assert [int(e["index"]) for e in subsets.as_dataset("val")] == list(range(8))
