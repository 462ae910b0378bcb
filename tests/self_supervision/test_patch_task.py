"""What the patch tasks share: head, network, representation, input scaling."""
import gin
import numpy as np
import pytest
import tensorflow as tf

import models
from datasets import preprocess_registry
from self_supervision import patch_task
from self_supervision import task as task_lib

# A truncated normal cut at 2 std has std 0.8796 times the untruncated one.
TRUNCATED_STD_FACTOR = 0.87962566

PP_REPRESENTATION = ("decode|resize_small(30)|central_crop(24)|"
                     "crop_patches(3, patch_size=8)|standardize")


@pytest.fixture(autouse=True)
def _gin():
  task_lib.task_names()
  gin.clear_config()
  gin.parse_config("get_model.name = 'resnet50_v1'\nget_model.width = 1\n")
  yield
  gin.clear_config()


@pytest.fixture(scope="module")
def trunk():
  tf.keras.utils.set_random_seed(0)
  return models.get_model("resnet50_v1", width=1, num_classes=8,
                          patch_mode=True)


def _task(**kwargs):
  return task_lib.get_task("relative_patch_location", num_classes=10,
                           pp_representation=PP_REPRESENTATION, **kwargs)


def test_head_initialisation_and_shapes():
  tf.keras.utils.set_random_seed(1)
  head = patch_task.PatchHead(100, hidden=4096)
  logits = head(tf.zeros([3, 2000]), training=False)
  assert logits.shape == (3, 100)
  fc1, fc2 = head.fc1, head.fc2
  assert tuple(fc1.kernel.shape) == (2000, 4096)
  assert tuple(fc2.kernel.shape) == (4096, 100)
  for kernel in (fc1.kernel.numpy(), fc2.kernel.numpy()):
    assert np.abs(kernel).max() <= 2 * 0.005
    assert abs(kernel.mean()) < 1e-4
    assert kernel.std() == pytest.approx(0.005 * TRUNCATED_STD_FACTOR, rel=0.02)
  np.testing.assert_array_equal(fc1.bias.numpy(), np.full([4096], 0.1, np.float32))
  np.testing.assert_array_equal(fc2.bias.numpy(), np.zeros([100], np.float32))
  assert head.bn.momentum == 0.997 and head.bn.epsilon == 1e-5
  assert head.dropout.rate == 0.5
  # Zero input: fc1 gives its bias, BN (fresh statistics) keeps ~0.1, ReLU
  # passes it, so the logits are 0.1 * column sums of fc2's kernel.
  expected = 0.1 / np.sqrt(1 + 1e-5) * fc2.kernel.numpy().sum(0)
  np.testing.assert_allclose(logits.numpy()[0], expected, rtol=1e-4, atol=1e-6)


def test_weight_decay_on_head_kernels_only(trunk):
  head = patch_task.PatchHead(8, hidden=16, weight_decay=5e-4)
  head.build((None, 12))
  losses = head.losses
  assert len(losses) == 2  # fc1 and fc2 kernels; no bias, no BN parameter
  expected = 5e-4 / 2 * sum(np.sum(k.numpy().astype(np.float64) ** 2)
                            for k in (head.fc1.kernel, head.fc2.kernel))
  assert float(tf.add_n(losses)) == pytest.approx(expected, rel=1e-5)
  # The task's network exposes them to the trainer through model.losses.
  task = _task(embedding_size=8, head_hidden=16)
  network = patch_task.PatchNetwork(trunk, task.make_head())
  task.compute_loss(network, {"image": tf.zeros([1, 9, 8, 8, 3])}, False)
  head_losses = network.head.losses
  assert len(head_losses) == 2
  assert len(network.losses) == len(network.trunk.losses) + 2


def test_representation_average_and_concat(trunk):
  patches = np.random.RandomState(0).randn(2, 9, 8, 8, 3).astype(np.float32)
  network = patch_task.PatchNetwork(trunk, patch_task.PatchHead(8, hidden=4))
  task = _task()
  assert task.trunk(network) is trunk
  rep = task.representation(network, tf.constant(patches))
  per_patch = [trunk(tf.constant(patches[:, p]), training=False)[1]
               for p in range(9)]
  assert list(rep) == list(per_patch[0])  # every end point, in network order
  for name in rep:
    stacked = np.stack([e[name].numpy() for e in per_patch], axis=1)
    np.testing.assert_allclose(rep[name].numpy(), stacked.mean(axis=1),
                               rtol=1e-4, atol=1e-4)
  concat = _task(patch_representation="concat").representation(
      network, tf.constant(patches))
  pre_logits = np.stack([e["pre_logits"].numpy() for e in per_patch], axis=1)
  np.testing.assert_allclose(concat["pre_logits"].numpy(),
                             pre_logits.reshape(2, -1), rtol=1e-4, atol=1e-4)
  block4 = np.stack([e["block4"].numpy() for e in per_patch], axis=1)
  expected = np.concatenate([block4[:, p] for p in range(9)], axis=-1)
  assert concat["block4"].shape == (2,) + block4.shape[2:4] + (9 * 512,)
  np.testing.assert_allclose(concat["block4"].numpy(), expected,
                             rtol=1e-4, atol=1e-4)


def test_scale_images_is_per_patch_standardization():
  image = np.random.RandomState(1).randint(0, 256, [24, 24, 3]).astype(np.uint8)
  # A constant cell checks the std floor of standardization too.
  image[:8, :8] = 77
  cut = preprocess_registry.get_preprocess_fn(
      "decode|crop_patches(3, patch_size=8)", training=False)
  cut_and_standardize = preprocess_registry.get_preprocess_fn(
      "decode|crop_patches(3, patch_size=8)|standardize", training=False)
  raw = cut({"image": image})["image"]  # [9, 8, 8, 3] in [0, 1]
  expected = cut_and_standardize({"image": image})["image"].numpy()
  scaled = _task().scale_images(raw).numpy()
  np.testing.assert_allclose(scaled, expected, rtol=1e-6, atol=1e-6)
  flat = raw.numpy().reshape(9, -1)
  manual = (flat - flat.mean(1, keepdims=True)) / np.maximum(
      flat.std(1, keepdims=True), 1 / np.sqrt(flat.shape[1]))
  np.testing.assert_allclose(scaled.reshape(9, -1), manual, atol=1e-5)
  np.testing.assert_array_equal(scaled[0], np.zeros([8, 8, 3]))


def test_default_pipelines_give_nine_64px_patches():
  task = task_lib.get_task("jigsaw", num_classes=10)
  image = np.random.RandomState(3).randint(0, 256, [300, 400, 3]).astype(np.uint8)
  features = {"image": image, "_rng": tf.constant([1, 2], tf.int64)}
  for mode, training in ((task_lib.TRAIN, True), (task_lib.PRETEXT_EVAL, False),
                         (task_lib.REPRESENTATION, False)):
    fn = preprocess_registry.get_preprocess_fn(task.preprocess(mode),
                                               training=training)
    patches = fn(features)["image"].numpy()
    assert patches.shape == (9, 64, 64, 3), mode
    np.testing.assert_allclose(patches.mean(axis=(1, 2, 3)), 0, atol=1e-4)
  assert task.preprocess(task_lib.PRETEXT_EVAL) == task.preprocess(task_lib.TRAIN)


def test_bad_configuration_errors():
  with pytest.raises(ValueError, match="no crop_patches"):
    _task(pp_train="decode|resize(64)|standardize")
  with pytest.raises(ValueError, match="splits=4"):
    _task(pp_pretext_eval="decode|crop_patches(4, patch_size=8)|standardize")
  with pytest.raises(ValueError, match="patch_representation"):
    _task(patch_representation="max")
  with pytest.raises(ValueError, match="dropout"):
    patch_task.PatchHead(8, dropout=1.0)
  with pytest.raises(ValueError, match=r"\[batch, 9, h, w, 3\]"):
    patch_task.fold_patches(tf.zeros([2, 8, 8, 3]))


def _gray_patches(pipeline, seed):
  """Which of the 9 training patches of one colour image came out gray."""
  image = np.random.RandomState(3).randint(0, 256, [300, 300, 3]).astype(np.uint8)
  fn = preprocess_registry.get_preprocess_fn(pipeline, training=True)
  patches = fn({"image": image, "_rng": tf.constant([seed, 5], tf.int64)})["image"]
  return [bool(np.ptp(p, axis=-1).max() < 1e-5) for p in patches.numpy()]


def test_training_grayscale_is_per_patch_by_default_per_image_as_an_option():
  per_patch = [_gray_patches(patch_task.DEFAULT_PP_TRAIN, s) for s in range(8)]
  per_image = [_gray_patches(patch_task.PP_TRAIN_GRAY_PER_IMAGE, s)
               for s in range(8)]
  # Per image: all 9 patches or none, and both happen.
  assert all(len(set(g)) == 1 for g in per_image)
  assert {g[0] for g in per_image} == {True, False}
  # Per patch: images whose patches disagree.
  assert sum(len(set(g)) == 2 for g in per_patch) >= 4
