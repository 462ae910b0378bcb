"""Mixed precision (train.precision) and XLA (train.jit_compile) in training."""
import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

import fake_data
from self_supervision import task as task_lib
from self_supervision import trainer as trainer_lib
from training import precision


@pytest.fixture(autouse=True)
def _gin(clean_gin):
  gin.parse_config(
      "rotation.pp_train = 'decode|resize(32)|value_range(-1, 1)|rotate'\n"
      "rotation.pp_representation = 'decode|resize(32)|value_range(-1, 1)'\n"
      "get_model.name = 'vgg19_bn'\n"
      "get_model.width = 1\n")
  yield


def _trainer(workdir, **kwargs):
  dataset = fake_data.InMemoryDataset(num_train=16, num_val=4, num_test=4)
  task = task_lib.get_task("rotation", num_classes=dataset.num_classes)
  return trainer_lib.Trainer(
      task, dataset, str(workdir), tf.distribute.get_strategy(), seed=0,
      batch_size=4, epochs=0.5, warmup_epochs=0, decay_epochs=[],
      steps_per_loop=1, checkpoint_secs=1e9, log=lambda _: None, **kwargs)


def _write_cpuinfo(tmp_path, flags):
  path = tmp_path / "cpuinfo"
  path.write_text(f"processor\t: 0\nflags\t\t: fpu sse {flags}\n")
  return str(path)


def test_cpu_bf16_detection(tmp_path):
  assert precision.cpu_has_bf16(_write_cpuinfo(tmp_path, "avx512_bf16 avx2"))
  assert precision.cpu_has_bf16(_write_cpuinfo(tmp_path, "amx_bf16"))
  assert not precision.cpu_has_bf16(_write_cpuinfo(tmp_path, "avx2 avx512f"))
  assert not precision.cpu_has_bf16(str(tmp_path / "missing"))


def test_mixed_resolves_per_device_kind(monkeypatch):
  assert precision.resolve("mixed", "tpu") == "bfloat16"
  assert precision.resolve("mixed", "gpu") == "float16"
  monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
  assert precision.resolve("mixed", "cpu") == "bfloat16"
  monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)
  said = []
  assert precision.resolve("mixed", "cpu", log=said.append) == "float32"
  assert "no bfloat16 units" in said[0]
  for name in ("float32", "bfloat16", "float16"):
    assert precision.resolve(name, "cpu") == name
  with pytest.raises(ValueError, match="train.precision 'half'.*float32, mixed"):
    precision.resolve("half", "cpu")
  assert precision.device_kind(tf.distribute.get_strategy()) == "cpu"


def test_policy_scope_restores_float32_even_on_error():
  with pytest.raises(RuntimeError):
    with precision.policy_scope("bfloat16"):
      assert keras.config.dtype_policy().name == "mixed_bfloat16"
      raise RuntimeError("boom")
  assert keras.config.dtype_policy().name == "float32"


def test_bfloat16_training_keeps_float32_variables_outputs_and_checkpoints(
    tmp_path):
  trainer = _trainer(tmp_path, precision="bfloat16")
  assert keras.config.dtype_policy().name == "float32"  # restored after build
  model = trainer.model
  convs = [l for l in model._flatten_layers()
           if isinstance(l, keras.layers.Conv2D)]
  assert convs and all(l.compute_dtype == "bfloat16" for l in convs)
  assert all(v.dtype == "float32" for v in model.weights)
  images = tf.zeros([2, 32, 32, 3])
  logits, end_points = model(images, training=True)
  assert logits.dtype == tf.float32
  assert {t.dtype for t in end_points.values()} == {tf.float32}
  assert trainer.train() == 2
  assert all(np.isfinite(v.numpy()).all() for v in model.weights)

  # A float32 run of the same model restores the bfloat16 run's checkpoint.
  again = _trainer(tmp_path, precision="float32")
  assert again.restore() == 2
  for a, b in zip(model.weights, again.model.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_float16_scales_the_loss_and_counts_only_applied_steps(tmp_path):
  trainer = _trainer(tmp_path, precision="float16")
  assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
  assert trainer.train() == 2
  # Overflowing steps at the initial scale 2**15 are skipped (the scale
  # halves each time), so the optimizer counts 2 applied steps, whatever
  # number of batches that took.
  assert int(trainer.optimizer.iterations.numpy()) == 2
  assert float(trainer.optimizer.dynamic_scale.numpy()) <= 2.0**15
  assert all(np.isfinite(v.numpy()).all() for v in trainer.model.weights)


def test_jit_compiled_step_matches_the_graph_step(tmp_path):
  plain = _trainer(tmp_path / "plain")
  compiled = _trainer(tmp_path / "xla", jit_compile=True)
  batch = {"image": tf.random.stateless_uniform([2, 4, 32, 32, 3], [7, 8],
                                                -1.0, 1.0),
           "rotation_label": tf.tile(tf.range(4)[None], [2, 1])}
  results = []
  for trainer in (plain, compiled):
    grads, loss, _, _ = tf.function(trainer.loop._gradients,
                                    jit_compile=trainer is compiled)(batch)
    results.append((float(loss), grads))
  assert results[0][0] == pytest.approx(results[1][0], rel=1e-4)
  for a, b in zip(results[0][1], results[1][1]):
    # XLA reorders reductions; the deep net amplifies rounding a little.
    np.testing.assert_allclose(a, b, rtol=1e-3,
                               atol=1e-3 * float(tf.reduce_max(tf.abs(a))))
  assert compiled.train() == 2
