import numpy as np
import pytest
import tensorflow as tf

from datasets import preprocess_registry
from self_supervision import rotation  # noqa: F401  (registers the rotate op)
from self_supervision import task as task_lib


def _image(h=5, w=5, c=3, seed=0):
  return np.random.RandomState(seed).rand(h, w, c).astype(np.float32)


def test_rotate_op_matches_numpy_rot90_eagerly():
  image = _image()
  fn = preprocess_registry.get_preprocess_fn("rotate", training=True)
  out = fn({"image": tf.constant(image), "label": tf.constant(7)})
  assert out["image"].shape == (4, 5, 5, 3)
  np.testing.assert_array_equal(out["rotation_label"].numpy(), [0, 1, 2, 3])
  for r in range(4):
    np.testing.assert_array_equal(out["image"][r].numpy(), np.rot90(image, k=r))
  assert int(out["label"]) == 7  # the source label is kept for other uses


def test_rotate_op_inside_tf_data():
  images = np.stack([_image(seed=s) for s in range(3)])
  fn = preprocess_registry.get_preprocess_fn("rotate", training=False)
  ds = tf.data.Dataset.from_tensor_slices({"image": images}).map(
      fn, num_parallel_calls=2).batch(3)
  batch = next(iter(ds))
  assert batch["image"].shape == (3, 4, 5, 5, 3)
  for i in range(3):
    for r in range(4):
      np.testing.assert_array_equal(batch["image"][i, r].numpy(),
                                    np.rot90(images[i], k=r))


def test_rotate_rejects_non_square():
  fn = preprocess_registry.get_preprocess_fn("rotate", training=True)
  with pytest.raises(tf.errors.InvalidArgumentError, match="square"):
    fn({"image": tf.zeros([4, 6, 3])})


def test_pipeline_must_end_with_rotate():
  with pytest.raises(ValueError, match="rotate"):
    task_lib.get_task("rotation", num_classes=10,
                      pp_train="decode|resize(32)")


def test_loss_is_log4_for_uniform_logits():
  task = task_lib.get_task("rotation", num_classes=10)

  def model(images, training):
    del training
    return tf.zeros([tf.shape(images)[0], 4]), {}
  batch = {"image": tf.zeros([2, 4, 8, 8, 3]),
           "rotation_label": tf.constant([[0, 1, 2, 3]] * 2)}
  per_example, outputs = task.compute_loss(model, batch, training=True)
  assert per_example.shape == (8,)
  np.testing.assert_allclose(per_example.numpy(), np.log(4.0), rtol=1e-6)
  np.testing.assert_array_equal(outputs["labels"].numpy(), [0, 1, 2, 3] * 2)
