"""Tests for the input pipeline: batched reading and per-batch preprocessing."""
import numpy as np
import pytest
import tensorflow as tf

import fake_data
from datasets import input_pipeline
from datasets import preprocess_registry as ppr

SPLITS = ("train", "val", "trainval", "test")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """A prepared tiny Fashion-MNIST with random pixels: 24 train, 6 val, 8 test."""
  return fake_data.prepared_fashion_mnist(str(tmp_path_factory.mktemp("fashion")),
                                          seed=3)


def _arrays(ds):
  return [{k: v.numpy() for k, v in batch.items()} for batch in ds]


def _assert_same_batches(got, expected):
  assert len(got) == len(expected)
  for a, b in zip(got, expected):
    assert sorted(a) == sorted(b)
    for key in a:
      assert a[key].shape == b[key].shape, key
      np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("pipelines", [1, 2])
def test_batched_reading_equals_tfds_reading(tiny, split, pipelines):
  for pipeline_id in range(pipelines):
    context = tf.distribute.InputContext(num_input_pipelines=pipelines,
                                         input_pipeline_id=pipeline_id)
    got = _arrays(tiny.as_batched_dataset(split, 4, input_context=context))
    expected = _arrays(tiny.as_dataset(split, input_context=context).batch(4))
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected):
      assert sorted(a) == ["image", "index", "label"]
      for key in a:
        assert a[key].dtype == b[key].dtype
        np.testing.assert_array_equal(a[key], b[key])


EVAL_PIPELINES = [
    "decode|resize(32)|value_range(-1, 1)",
    "decode(1)|resize_small(40)|crop(32)|flip_lr|to_gray(eval_p=1.0)|standardize",
    "decode|central_crop(20)|inception_crop(16)|color_distort|value_range(0, 2)",
    "decode|inception_preprocess(16)|keep('image', 'label')",
    "decode|to_gray(eval_p=0.5)|resize(8)",
    "decode|resize(30)|crop_patches(3, 8)",
]


@pytest.mark.parametrize("pp", EVAL_PIPELINES)
def test_per_batch_preprocessing_gives_the_per_example_batches(tiny, pp):
  for split in ("train", "test"):
    fast = input_pipeline.make_dataset(tiny, split, pp, 5, training=False)
    slow = input_pipeline.make_dataset(tiny, split, pp, 5, training=False,
                                       batch_preprocessing=False)
    _assert_same_batches(_arrays(fast), _arrays(slow))


@pytest.mark.parametrize("pp", EVAL_PIPELINES + [""])
def test_eval_batches_finished_by_the_consumer_are_make_dataset_batches(tiny, pp):
  for split in ("train", "test"):
    ds, finish = input_pipeline.make_eval_batches(tiny, split, pp, 5)
    got = _arrays(ds.map(finish))
    assert all(sorted(b) == ["image", "label"] for b in got)
    expected = _arrays(input_pipeline.make_dataset(tiny, split, pp, 5,
                                                   training=False))
    _assert_same_batches(got, expected)


def test_eval_batches_leave_the_per_batch_ops_to_the_consumer(tiny):
  ds, finish = input_pipeline.make_eval_batches(
      tiny, "test", "decode|resize(32)|value_range(-1, 1)", 4)
  # Raw uint8 images cross from tf.data; the 3 ops run where finish is called.
  assert ds.element_spec["image"] == tf.TensorSpec([None, 28, 28, 1], tf.uint8)
  assert finish.num_ops == 3
  ds, finish = input_pipeline.make_eval_batches(
      tiny, "test", "decode|resize(30)|crop_patches(3, 8)", 4)
  assert finish.num_ops == 0  # patches are cut per example, in tf.data
  assert ds.element_spec["image"].shape.as_list() == [None, 9, 8, 8, 3]


def test_batched_reading_never_builds_the_per_example_dataset(tiny, monkeypatch):
  def refuse(*args, **kwargs):
    raise AssertionError("as_dataset called")
  pp = "decode|resize(32)|value_range(-1, 1)"
  expected = _arrays(input_pipeline.make_dataset(tiny, "val", pp, 4,
                                                 training=False))
  monkeypatch.setattr(tiny, "as_dataset", refuse)
  _assert_same_batches(
      _arrays(input_pipeline.make_dataset(tiny, "val", pp, 4, training=False)),
      expected)
  ds, finish = input_pipeline.make_eval_batches(tiny, "val", pp, 4)
  _assert_same_batches(_arrays(ds.map(finish)), expected)
  with pytest.raises(AssertionError, match="as_dataset called"):
    # A per-example op (patches) still needs it.
    input_pipeline.make_dataset(tiny, "val", "decode|crop_patches(3, 8)", 4,
                                training=False)


def test_batch_ops_are_equal_for_one_pipeline_and_switch_point(tiny):
  pp = "decode|resize(32)|value_range(-1, 1)"
  _, a = input_pipeline.make_eval_batches(tiny, "train", pp, 4)
  _, b = input_pipeline.make_eval_batches(tiny, "test", pp, 8)
  _, c = input_pipeline.make_eval_batches(tiny, "test", "decode|resize(16)", 8)
  assert a == b and hash(a) == hash(b) and a is not b
  assert a != c
  assert {a: 1}[b] == 1


def test_per_batch_preprocessing_of_encoded_images():
  data = fake_data.InMemoryDataset(num_train=12, size=12, channels=3,
                                   encode_png=True)
  pp = "decode|resize_small(20)|crop(16)|value_range(-1, 1)"
  fast = input_pipeline.make_dataset(data, "train", pp, 5, training=False)
  slow = input_pipeline.make_dataset(data, "train", pp, 5, training=False,
                                     batch_preprocessing=False)
  batches = _arrays(fast)
  assert [b["image"].shape for b in batches] == [(5, 16, 16, 3)] * 2 + [(2, 16, 16, 3)]
  _assert_same_batches(batches, _arrays(slow))


def _element_spec(image_spec):
  return {"image": image_spec, "label": tf.TensorSpec([], tf.int64)}


@pytest.mark.parametrize("pp, training, encoded, expected", [
    # Decoded, equally sized images: everything per batch.
    ("decode|resize(32)|value_range(-1, 1)", False, False, 0),
    # Encoded: sizes are known once crop(16) has run.
    ("decode|resize_small(20)|crop(16)|value_range(-1, 1)", False, True, 3),
    # Random training ops stay per example; value_range follows them.
    ("decode|inception_crop(16)|flip_lr|value_range(-1, 1)", True, False, 3),
    # A random to_gray stays per example, what follows it does not.
    ("decode|to_gray(eval_p=0.5)|value_range(-1, 1)", False, False, 2),
    # Nothing batchable at the end.
    ("decode|resize(32)|rotate", False, False, None),
    ("decode|resize(30)|crop_patches(3, 8)", False, False, None),
    ("", False, False, None),
])
def test_where_per_batch_preprocessing_starts(pp, training, encoded, expected):
  import self_supervision.rotation  # noqa: F401  (registers `rotate`)
  spec = (tf.TensorSpec([], tf.string) if encoded
          else tf.TensorSpec([28, 28, 1], tf.uint8))
  ops = ppr.get_preprocess_ops(pp, training=training)
  assert input_pipeline._batched_suffix_start(_element_spec(spec), ops) == expected


def test_one_pass_pipelines_do_not_autotune(tiny):
  one_pass = input_pipeline.make_dataset(tiny, "test", "decode", 4, training=False)
  assert one_pass.options().autotune.enabled is False
  endless = input_pipeline.make_dataset(tiny, "train", "decode", 4, training=True)
  assert endless.options().autotune.enabled is not False


def test_batchable_marks_depend_on_mode_and_arguments():
  def batchable(pp, training):
    return [ppr.is_batchable(op) for op in ppr.get_preprocess_ops(pp, training=training)]

  assert batchable("decode|crop(8)|flip_lr|to_gray", False) == [True] * 4
  assert batchable("decode|crop(8)|flip_lr|to_gray", True) == [True, False, False, False]
  assert batchable("to_gray(eval_p=1.0)|to_gray(eval_p=0.3)", False) == [True, False]
  assert batchable("crop_patches(3, 8)|inception_patches(2, 8)", False) == [False, False]


def test_decode_of_a_batch_decodes_each_image():
  images = np.random.RandomState(0).randint(0, 256, (3, 4, 5, 1)).astype(np.uint8)
  decode = ppr.get_preprocess_fn("decode", training=False)
  batch = decode({"image": tf.constant(images)})["image"].numpy()
  assert batch.shape == (3, 4, 5, 3)
  for image, out in zip(images, batch):
    np.testing.assert_array_equal(out, decode({"image": tf.constant(image)})["image"])
  with pytest.raises(ValueError, match="scalar string"):
    decode({"image": tf.constant(["a", "b"])})


RANDOM_TRAINING_PP = "decode|inception_crop(12)|flip_lr|value_range(-1, 1)"


@pytest.mark.parametrize("cache", [False, True])
@pytest.mark.parametrize("pipelines", [1, 2])
def test_a_stream_started_at_a_position_continues_the_uninterrupted_one(
    tiny, cache, pipelines):
  # 24 training examples: 5 batches of 4 per pipeline cross an epoch
  # boundary whatever the sharding, and a resumed stream (start = examples
  # already delivered) must give the very batches, augmentations included,
  # that the uninterrupted one gives from there on.
  for pipeline_id in range(pipelines):
    context = tf.distribute.InputContext(num_input_pipelines=pipelines,
                                         input_pipeline_id=pipeline_id)

    def batches(start, count):
      ds = input_pipeline.make_dataset(
          tiny, "train", RANDOM_TRAINING_PP, 4, training=True, seed=5,
          start=start, input_context=context, cache=cache, shuffle_buffer=8)
      return _arrays(ds.take(count))

    whole = batches(0, 12 // pipelines + 4)
    for start_batch in (1, 3, 12 // pipelines):
      _assert_same_batches(batches(4 * start_batch, 4), whole[start_batch:][:4])
  # Epochs are shuffled differently from each other.
  labels = [b["label"] for b in whole]
  epoch_length = 24 // pipelines // 4
  assert not np.array_equal(np.concatenate(labels[:epoch_length]),
                            np.concatenate(labels[epoch_length:][:epoch_length]))


def test_a_stream_of_a_filtered_split_counts_its_length(tiny):
  from datasets import low_data
  subset = low_data.Subset(tiny, "train", np.array([0, 2, 3, 7, 11, 19, 23]))
  full = list(input_pipeline.stream(
      subset.as_dataset("train"), repeat=True, shuffle_buffer=4, seed=1)
      .take(17).as_numpy_iterator())
  assert [int(p) for p, _ in full] == list(range(17))
  assert sorted(int(ex["index"]) for _, ex in full[:7]) == [0, 2, 3, 7, 11, 19, 23]
  resumed = list(input_pipeline.stream(
      subset.as_dataset("train"), start=9, repeat=True, shuffle_buffer=4,
      seed=1).take(8).as_numpy_iterator())
  assert ([(int(p), int(ex["index"])) for p, ex in resumed]
          == [(int(p), int(ex["index"])) for p, ex in full[9:]])
  with pytest.raises(ValueError, match="past the one epoch of 7"):
    input_pipeline.stream(subset.as_dataset("train"), start=7, repeat=False,
                          shuffle_buffer=0, seed=0)
