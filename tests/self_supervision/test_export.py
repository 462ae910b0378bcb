"""TF-Hub export (docs/protocol.md §6): modules load three ways, in a fresh process, and
give the in-framework model's outputs; fine-tuning reaches the trunk.

Two modules are exported once per file: a rotation ResNet50 v2 (width 1),
through scripts/export_hub.py from a checkpoint in a run's workdir, and a
jigsaw ResNet50 v1 in patch mode, through export.export_module. One fresh
process then loads both with tensorflow_hub, tf_keras and Keras 3 and returns
its outputs for the comparisons here.
"""
import json
import os
import subprocess
import sys

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from datasets import preprocess_registry
from self_supervision import export
from self_supervision import task as task_lib
from training import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROTATION_GIN = """
experiment.task = 'rotation'
experiment.dataset = 'fashion_mnist'
experiment.seed = 3
experiment.evaluate_random_init = True
get_model.name = 'resnet50_v2'
get_model.width = 1
rotation.pp_train = 'decode|resize(16)|value_range(-1, 1)|rotate'
rotation.pp_representation = 'decode|resize(16)|value_range(-1, 1)'
train.batch_size = 4
linear_eval.layers = ['pre_logits']
"""

JIGSAW_GIN = """
get_model.name = 'resnet50_v1'
get_model.width = 1
jigsaw.pp_representation = 'decode|resize(48)|crop_patches(3, patch_size=16)|standardize'
jigsaw.embedding_size = 8
jigsaw.head_hidden = 8
"""

ATOL = RTOL = 1e-5
# ResNet v1 units (conv then BN): grappler folds BN's scale into the
# convolution where static shapes allow, so the same v1 trunk rounds
# differently in two graphs that only differ in known shapes (up to ~1e-4 on
# O(1) values at width 1; with arithmetic optimisation and constant folding
# off they agree exactly). v2 units (BN before conv) meet ATOL.
V1_TOL = 2e-4


def _calibrate_batch_norm(trunk, images_shape, seed):
  """Moving statistics of one batch and random scales and offsets.

  Without this a fresh trunk's BN statistics (0, 1) do not match its
  activations, which then grow to where float32 rounding differs between
  eager and graph execution; calibrated, inference is a realistic test.
  """
  rng = np.random.RandomState(seed)
  bns = [l for l in trunk._flatten_layers(include_self=False)  # pylint: disable=protected-access
         if isinstance(l, keras.layers.BatchNormalization)]
  momenta = [bn.momentum for bn in bns]
  for bn in bns:
    bn.gamma.assign(rng.uniform(0.8, 1.2, bn.gamma.shape).astype(np.float32))
    bn.beta.assign(rng.normal(0, 0.1, bn.beta.shape).astype(np.float32))
    bn.momentum = 0.0
  trunk(rng.normal(0, 1, images_shape).astype(np.float32), training=True)
  for bn, momentum in zip(bns, momenta):
    bn.momentum = momentum


def _build(gin_text, task_name):
  task_lib.task_names()
  gin.clear_config()
  gin.parse_config(gin_text, skip_unknown=True)
  task = task_lib.get_task(task_name, num_classes=10)
  model = task.build_model()
  return task, model


@pytest.fixture(scope="module")
def rotation_run(tmp_path_factory):
  """A rotation run's checkpoint; scripts/export_hub.py starts exporting it.

  The script runs in its own process while this one exports the jigsaw
  module (see `jigsaw`), so the two exports overlap.
  """
  workdir = workdir_lib.Workdir(tmp_path_factory.mktemp("rotation_run"))
  task, model = _build(ROTATION_GIN, "rotation")
  gin.clear_config()
  _calibrate_batch_norm(task.trunk(model), (8, 16, 16, 3), seed=1)
  optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
  optimizer.build(model.trainable_variables)
  # As the trainer saves: the model and the optimizer, numbered by step.
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(model=model, optimizer=optimizer),
      workdir.checkpoints, max_to_keep=3)
  manager.save(checkpoint_number=7)
  with open(workdir.operative_config, "w") as f:
    f.write(ROTATION_GIN)
  process = subprocess.Popen(
      [sys.executable, os.path.join(ROOT, "scripts", "export_hub.py"),
       f"--workdir={workdir}"],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
  yield task, model, workdir.path, process
  if process.poll() is None:
    process.kill()


@pytest.fixture(scope="module")
def jigsaw(rotation_run, tmp_path_factory):
  """A jigsaw network exported in process with export.export_module.

  Asks for `rotation_run` only so that the script's export runs meanwhile.
  """
  del rotation_run
  task, model = _build(JIGSAW_GIN, "jigsaw")
  gin.clear_config()
  _calibrate_batch_norm(task.trunk(model), (8, 16, 16, 3), seed=2)
  path = str(tmp_path_factory.mktemp("jigsaw") / "module")
  assert export.export_module(task, model, path, step=11,
                              info=dict(dataset="in_memory")) == path
  return task, model, path


@pytest.fixture(scope="module")
def rotation(rotation_run, jigsaw):
  """(task, model, module path) of the rotation run, once the script is done."""
  del jigsaw
  task, model, workdir, process = rotation_run
  stdout, stderr = process.communicate(timeout=600)
  assert process.returncode == 0, stderr[-3000:]
  path = export.hub_export_dir(workdir, 7)
  assert f"to {path}" in stdout
  return task, model, path


def _images():
  rng = np.random.RandomState(0)
  return dict(
      x=rng.uniform(0, 1, (3, 16, 16, 3)).astype(np.float32),
      # Another batch size and image size: the signatures take any.
      x_other=rng.uniform(0, 1, (2, 24, 20, 3)).astype(np.float32),
      labels=np.array([0, 1, 2], np.int64),
      # Whole images for the jigsaw module, any size.
      whole=rng.uniform(0, 1, (2, 40, 52, 3)).astype(np.float32),
      stacks=rng.uniform(0, 1, (2, 9, 16, 16, 3)).astype(np.float32))


# Runs in a fresh process: the only project code it sees is the modules.
_LOADER = r"""
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_hub as hub
import tf_keras
import keras

rotation, jigsaw, data_file, out_file = sys.argv[1:]
d = dict(np.load(data_file))
x = d["x"]
out, info = {}, {}

m = hub.load(rotation)
out["hub_call"] = m(x).numpy()
out["hub_call_false"] = m(x, training=False).numpy()
out["hub_call_other"] = m(d["x_other"]).numpy()
out["hub_default"] = m.signatures["default"](tf.constant(x))["default"].numpy()
for k, v in m.signatures["representation"](tf.constant(x)).items():
  out["rep/" + k] = v.numpy()
for k, v in m.signatures["representation"](tf.constant(d["x_other"])).items():
  out["rep_other/" + k] = v.numpy()
out["hub_regularization"] = np.array([f().numpy() for f in m.regularization_losses])
info["num_variables"] = len(m.variables)
info["num_trainable"] = len(m.trainable_variables)

# Keras 3.
inp = keras.Input((None, None, 3))
tfsm = keras.Model(inp, keras.layers.TFSMLayer(rotation, call_endpoint="default")(inp)["default"])
out["keras3"] = keras.ops.convert_to_numpy(tfsm(x))

# Fine-tuning one step through hub.KerasLayer(trainable=True).
layer = hub.KerasLayer(rotation, trainable=True)
inp = tf_keras.Input((16, 16, 3))
features = layer(inp)
clf = tf_keras.Model(inp, tf_keras.layers.Dense(3)(features))
out["tf_keras"] = tf_keras.Model(inp, features).predict(x, verbose=0)
clf.compile(optimizer=tf_keras.optimizers.SGD(0.1),
            loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
out["tune_losses"] = np.array([float(l) for l in clf.losses])
snapshot = lambda: {w.name: w.numpy() for w in layer.weights}
trainable = {w.name for w in layer.trainable_weights}
before = snapshot()
out["tune_inference"] = layer(x, training=False).numpy()
out["tune_batch_stats"] = layer(x, training=True).numpy()
after_calls = snapshot()
for w in layer.weights:  # undo the moving-average update of that call
  w.assign(before[w.name])
clf.train_on_batch(x, d["labels"])
after_step = snapshot()
changed = lambda a, b: sorted(n for n in a if not np.array_equal(a[n], b[n]))
info["trainable"] = sorted(trainable)
info["non_trainable"] = sorted(set(before) - trainable)
info["changed_by_calls"] = changed(before, after_calls)
info["changed_by_step"] = changed(before, after_step)

j = hub.load(jigsaw)
out["jig_call"] = j(d["stacks"][:, 0]).numpy()
info["jig_signatures"] = sorted(j.signatures)
for k, v in j.signatures["image_representation"](tf.constant(d["whole"])).items():
  out["jig_image/" + k] = v.numpy()
for k, v in j.signatures["patches_representation"](tf.constant(d["stacks"])).items():
  out["jig_patches/" + k] = v.numpy()
for k, v in j.signatures["representation"](tf.constant(d["stacks"][:, 4])).items():
  out["jig_patch/" + k] = v.numpy()

np.savez(out_file, **out)
with open(out_file + ".json", "w") as f:
  json.dump(info, f)
"""


@pytest.fixture(scope="module")
def loaded(rotation, jigsaw, tmp_path_factory):
  """Outputs of both modules, loaded in a fresh process."""
  tmp = tmp_path_factory.mktemp("loaded")
  data_file, out_file = str(tmp / "data.npz"), str(tmp / "out.npz")
  np.savez(data_file, **_images())
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  result = subprocess.run(
      [sys.executable, "-c", _LOADER, rotation[2], jigsaw[2], data_file,
       out_file], capture_output=True, text=True, timeout=600, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(out_file + ".json") as f:
    info = json.load(f)
  return dict(np.load(out_file)), info


def _in_graph(fn, *specs):
  """fn as the evaluator runs a model: in a tf.function, where grappler may
  fuse conv + BN (v1 units), which rounds differently from eager execution."""
  return tf.function(fn, input_signature=[tf.TensorSpec(s, tf.float32)
                                          for s in specs])


@pytest.fixture(scope="module")
def rotation_reference(rotation):
  """The in-framework rotation model's end points for images in [0, 1]."""
  task, model, _ = rotation
  return _in_graph(lambda x: task.representation(model, task.scale_images(x)),
                   [None, None, None, 3])


def test_three_loaders_match_the_model(rotation_reference, loaded):
  out, _ = loaded
  images = _images()
  expected = rotation_reference(images["x"])["pre_logits"].numpy()
  assert expected.shape == (3, 512)
  for key in ("hub_call", "hub_call_false", "hub_default", "tf_keras",
              "keras3", "tune_inference"):
    np.testing.assert_allclose(out[key], expected, rtol=RTOL, atol=ATOL,
                               err_msg=key)
  other = rotation_reference(images["x_other"])["pre_logits"]
  np.testing.assert_allclose(out["hub_call_other"], other, rtol=RTOL, atol=ATOL)


def test_representation_signature_has_every_end_point(rotation_reference,
                                                       loaded):
  out, _ = loaded
  images = _images()
  for prefix, x in (("rep/", images["x"]), ("rep_other/", images["x_other"])):
    expected = rotation_reference(x)
    got = {k[len(prefix):]: v for k, v in out.items() if k.startswith(prefix)}
    assert set(got) == {"after_root", "block1", "block2", "block3", "block4",
                        "pre_logits", "logits"}
    for name, value in expected.items():
      assert got[name].shape == tuple(value.shape), name
      np.testing.assert_allclose(got[name], value, rtol=RTOL, atol=ATOL,
                                 err_msg=name)
  # 16x16 through strides 2 (root), 2 (pool), 1, 2, 2, 2.
  assert out["rep/block1"].shape == (3, 4, 4, 64)
  assert out["rep/block4"].shape == (3, 1, 1, 512)
  assert out["rep_other/block1"].shape == (2, 6, 5, 64)


def test_fine_tuning_reaches_the_trunk_and_bn_follows_training(rotation,
                                                                loaded):
  out, info = loaded
  task, model, _ = rotation
  trunk = task.trunk(model)
  assert info["num_variables"] == len(trunk.variables)
  assert info["num_trainable"] == len(trunk.trainable_variables)
  # The module's weight decay is the trainer's term, as a hub loss.
  decay = float(tf.add_n(trunk.losses))
  np.testing.assert_allclose(out["hub_regularization"], [decay], rtol=1e-5)
  np.testing.assert_allclose(out["tune_losses"], [decay], rtol=1e-5)

  trainable, non_trainable = info["trainable"], info["non_trainable"]
  assert len(trainable) == len(trunk.trainable_variables)
  moving = [n for n in non_trainable if "moving" in n]
  assert len(moving) == len(non_trainable) > 0
  # training=True normalises with batch statistics, and only that call
  # updates the moving averages; inference leaves them alone.
  assert not np.allclose(out["tune_batch_stats"], out["tune_inference"],
                         atol=1e-3)
  assert info["changed_by_calls"] == sorted(moving)
  # One SGD step moves every trunk weight that reaches the loss: all but the
  # rotation logits' bias (the logits kernel moves through weight decay).
  step_changed = set(info["changed_by_step"])
  assert set(trainable) - step_changed == {
      n for n in trainable if "logits" in n and "bias" in n}
  assert set(moving) <= step_changed


def test_metadata_records_sizes_and_end_points(rotation):
  _, _, path = rotation
  meta = export.read_metadata(path)
  assert meta["task"] == "rotation"
  assert (meta["architecture"], meta["width"], meta["step"]) == (
      "resnet50_v2", 1, 7)
  assert meta["input"]["range"] == [0.0, 1.0]
  assert meta["input"]["shape"] == [None, None, None, 3]
  assert meta["input"]["size"] == [16, 16]
  assert meta["input"]["patches"] is None
  assert meta["representation_preprocess"] == "decode|resize(16)|value_range(-1, 1)"
  assert meta["input_preprocess"] == "decode|resize(16)"
  assert meta["end_points"] == ["after_root", "block1", "block2", "block3",
                                "block4", "pre_logits", "logits"]
  outputs = meta["signatures"]["representation"]["outputs"]
  assert outputs["block2"] == [None, 2, 2, 128]
  assert meta["signatures"]["default"]["outputs"] == {"default": [None, 512]}
  assert sorted(meta["signatures"]) == ["default", "representation"]
  assert meta["run"]["dataset"] == "fashion_mnist"
  readme = open(os.path.join(path, "assets", "README.md")).read()
  assert "TFSMLayer" in readme and "hub.KerasLayer" in readme
  assert "[16, 16]" in readme


def test_jigsaw_module_has_patch_and_whole_image_signatures(jigsaw, loaded):
  out, info = loaded
  task, model, path = jigsaw
  assert info["jig_signatures"] == ["default", "image_representation",
                                    "patches_representation", "representation"]
  images = _images()
  trunk = task.trunk(model)
  per_patch_fn = _in_graph(
      lambda x: trunk(task.scale_images(x), training=False)[1],
      [None, None, None, 3])
  representation_fn = _in_graph(lambda x: task.representation(model, x),
                                [None, 9, 16, 16, 3])
  # Per patch: the trunk on a standardized patch.
  per_patch = per_patch_fn(images["stacks"][:, 0])
  np.testing.assert_allclose(out["jig_call"], per_patch["pre_logits"],
                             rtol=V1_TOL, atol=V1_TOL)
  centre = per_patch_fn(images["stacks"][:, 4])
  for name, value in centre.items():
    np.testing.assert_allclose(out["jig_patch/" + name], value, rtol=V1_TOL,
                               atol=V1_TOL, err_msg=name)
  # Whole images: the task's representation pipeline, then its 9-patch
  # average, as the evaluator computes it.
  pp = preprocess_registry.get_preprocess_fn(
      task.preprocess(task_lib.REPRESENTATION), training=False)
  stacks = tf.stack([pp({"image": tf.constant(im)})["image"]
                     for im in images["whole"]])
  assert stacks.shape == (2, 9, 16, 16, 3)
  whole = representation_fn(stacks)
  standardized = tf.reshape(
      tf.image.per_image_standardization(images["stacks"].reshape(-1, 16, 16, 3)),
      images["stacks"].shape)
  from_stacks = representation_fn(standardized)
  assert set(whole) == set(centre)
  for name in whole:
    np.testing.assert_allclose(out["jig_image/" + name], whole[name],
                               rtol=V1_TOL, atol=V1_TOL, err_msg=name)
    np.testing.assert_allclose(out["jig_patches/" + name], from_stacks[name],
                               rtol=V1_TOL, atol=V1_TOL, err_msg=name)
  # Averaged over patches: per-image shapes equal per-patch shapes.
  assert out["jig_image/block1"].shape == (2,) + tuple(centre["block1"].shape[1:])
  assert out["jig_image/logits"].shape == (2, 8)

  meta = export.read_metadata(path)
  assert meta["task"] == "jigsaw"
  assert (meta["architecture"], meta["patch_mode"]) == ("resnet50_v1", True)
  assert meta["input"]["patches"] == dict(num_patches=9, patch_size=[16, 16],
                                          order="row-major")
  assert meta["input_preprocess"] == ("decode|resize(48)|"
                                      "crop_patches(3, patch_size=16)")
  assert meta["signatures"]["patches_representation"]["inputs"] == {
      "patches": [None, 9, 16, 16, 3]}
  assert meta["signatures"]["image_representation"]["outputs"]["pre_logits"] == [
      None, 512]


def _fake_task(pp, scaling):
  """A task with one pipeline for all modes, scaled by `scaling`."""

  class Fake(task_lib.Task):
    """Only pipelines and scaling matter to describe_input."""
    input_scaling = scaling

    def __init__(self):
      super().__init__(num_classes=2, pp_train=pp, pp_pretext_eval=pp,
                       pp_representation=pp)

    def build_model(self, seed=0):
      raise AssertionError("describe_input must not build the network")

    def compute_loss(self, model, batch, training):
      raise AssertionError("describe_input must not compute a loss")

  return Fake()


def test_describe_input_uses_the_declared_scaling():
  task = _fake_task("decode|resize_small(40)|central_crop(32)|standardize",
                    "standardize")
  info = export.describe_input(task)
  assert info == export.InputInfo(
      representation_pipeline="decode|resize_small(40)|central_crop(32)|standardize",
      patches=False, num_patches=None, input_size=(32, 32),
      unit_range_pipeline="decode|resize_small(40)|central_crop(32)")
  assert info.unit_range_pipeline == task.unit_range_pipeline()
  # Output size following the input: no fixed size.
  info = export.describe_input(_fake_task(
      "decode|resize_small(64)|value_range(-1, 1)", "value_range(-1, 1)"))
  assert info.input_size is None
  assert info.unit_range_pipeline == "decode|resize_small(64)"
  # A stack of patches: the [0, 1] pipeline ends with the stack.
  info = export.describe_input(_fake_task(
      "decode|resize(48)|crop_patches(3, patch_size=16)|standardize",
      "standardize"))
  assert (info.patches, info.num_patches, info.input_size) == (
      True, 9, (16, 16))
  assert info.unit_range_pipeline == (
      "decode|resize(48)|crop_patches(3, patch_size=16)")
  with pytest.raises(ValueError, match="one RGB image"):
    export.describe_input(_fake_task("decode(1)|resize(8)|standardize",
                                     "standardize"))


def test_a_pipeline_must_end_with_the_declared_scaling():
  # The task declares [-1, 1] but the pipeline scales to [0, 2]: no [0, 1]
  # pipeline would give the module the evaluator's input.
  pp = "decode|resize(8)|value_range(0, 2)"
  with pytest.raises(ValueError) as error:
    _fake_task(pp, "value_range(-1, 1)")
  assert repr(pp) in str(error.value)
  assert "'value_range(-1, 1)'" in str(error.value)


def test_export_refuses_to_overwrite(jigsaw):
  task, model, path = jigsaw
  with pytest.raises(FileExistsError, match="overwrite=True"):
    export.export_module(task, model, path)


def test_vgg_needs_a_fixed_input_size():
  task_lib.task_names()
  gin.clear_config()
  gin.parse_config("""
get_model.name = 'vgg19_bn'
get_model.width = 1
rotation.pp_representation = 'decode|resize_small(32)|value_range(-1, 1)'
""")
  try:
    task = task_lib.get_task("rotation", num_classes=10)
    model = task.build_model()
  finally:
    gin.clear_config()
  with pytest.raises(ValueError, match="vgg19_bn only runs at the size"):
    export.HubModule(task, model)
