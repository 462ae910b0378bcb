"""Extraction equals the trunk applied to the pipeline's own batches, whoever
runs the per-batch ops and on however many replicas."""
import numpy as np
import pytest

import fake_data
import strategies
from datasets import input_pipeline
from evaluation import representations
from self_supervision import task as task_lib
from tiny_tasks import TinySupervised

QUIET = dict(log=lambda _: None)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """A prepared tiny Fashion-MNIST (batched tfds reading): 24/6/8 images."""
  return fake_data.prepared_fashion_mnist(str(tmp_path_factory.mktemp("fashion")),
                                          seed=5)


class _Task(TinySupervised):
  def __init__(self, pp):
    super().__init__(num_classes=10)
    self.pp = pp

  def preprocess(self, mode):
    return self.pp


def _direct(task, model, dataset, split, batch_size):
  """pre_logits and after_root of make_dataset's batches, in order."""
  pre, root, labels = [], [], []
  for batch in input_pipeline.make_dataset(
      dataset, split, task.preprocess(task_lib.REPRESENTATION), batch_size,
      training=False):
    _, end_points = model(batch["image"], training=False)
    pre.append(end_points["pre_logits"].numpy())
    root.append(end_points["after_root"].numpy().reshape(
        [len(batch["label"]), -1]))
    labels.append(batch["label"].numpy())
  return np.concatenate(pre), np.concatenate(root), np.concatenate(labels)


@pytest.fixture(scope="module")
def png():
  """Encoded images (no batched reading): decode runs per example.

  11 train images in batches of 5 end in a batch of 1, which 2 replicas
  cannot share without padding.
  """
  return fake_data.InMemoryDataset(num_train=11, num_val=3, num_test=7, size=12,
                                   channels=3, encode_png=True)


@pytest.mark.parametrize("data, pp, ops_in_step", [
    ("tiny", "decode|resize(8)|value_range(-1, 1)", 3),
    ("png", "decode|resize_small(10)|crop(8)|value_range(-1, 1)", 1),
    ("tiny", "decode|resize(8)|to_gray(eval_p=0.5)", 0),
])
@pytest.mark.parametrize("replicas", [1, 2])
def test_extraction_equals_the_trunk_on_the_pipelines_batches(
    request, data, pp, ops_in_step, replicas):
  dataset = request.getfixturevalue(data)
  task = _Task(pp)
  model = task.build_model()
  _, finish = input_pipeline.make_eval_batches(dataset, "test", pp, 5)
  assert finish.num_ops == ops_in_step
  strategy = strategies.two_replicas() if replicas == 2 else None
  extractor = representations.Extractor(task, model, ["pre_logits", "after_root"],
                                        strategy=strategy)
  for split in ("train", "test"):
    got, labels = extractor(dataset, split, batch_size=5, **QUIET)
    pre, root, expected_labels = _direct(task, model, dataset, split, 5)
    np.testing.assert_array_equal(labels, expected_labels)
    assert got["pre_logits"].shape == (dataset.num_examples(split), 4)
    np.testing.assert_allclose(got["pre_logits"], pre, rtol=1e-5, atol=1e-6)
    assert got["after_root"].shape == (dataset.num_examples(split), 8 * 8 * 4)
    np.testing.assert_allclose(got["after_root"], root, rtol=1e-5, atol=1e-6)


def test_every_batch_has_one_shape_so_the_trunk_traces_once(png):
  task = _Task("decode|resize(8)|value_range(-1, 1)")
  extractor = representations.Extractor(task, task.build_model(), ["pre_logits"])
  for split in ("train", "val", "test"):  # 11, 3 and 7 images in batches of 5
    extractor(png, split, batch_size=5, **QUIET)
  assert extractor._fn.experimental_get_tracing_count() == 1


def test_a_batch_that_does_not_split_between_replicas_is_rounded_up(tiny):
  task = _Task("decode|resize(8)")
  model = task.build_model()
  extractor = representations.Extractor(task, model, ["pre_logits"],
                                        strategy=strategies.two_replicas())
  got, labels = extractor(tiny, "test", batch_size=1, **QUIET)
  pre, _, expected_labels = _direct(task, model, tiny, "test", 5)
  np.testing.assert_array_equal(labels, expected_labels)
  np.testing.assert_allclose(got["pre_logits"], pre, rtol=1e-5, atol=1e-6)
