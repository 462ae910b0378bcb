"""Issue 29 in-process: a bad setting never blocks its fix, a damaged state
file is refused, damaged images are found by decoding, and each bad input is
one line naming its fix (the command lines' view: test_cli.py)."""
import json
import os
import socket
import tarfile
import time

import gin
import numpy as np
import pytest
import tensorflow as tf

import fake_data
from tiny_tasks import PixelTask
from datasets import image_folder
from datasets import imagenet
from datasets import low_data
from evaluation import campaign
from evaluation import feature_cache
from evaluation import hub_trunk
from evaluation import protocols as protocols_lib
from evaluation import trunks
from models import registry as models_registry  # noqa: F401  (get_model.*)
from training import config as config_lib
from training import experiment as experiment_lib
from training import preemption
from training import run_record
from training import workdir_lock

EXPERIMENT = experiment_lib.Experiment(task="rotation", dataset="fashion_mnist")
CONFIG = {"experiment.task": "rotation", "get_model.width": "1"}


def _record(workdir, overwrite=False):
  return run_record.RunRecord(workdir, EXPERIMENT, tf.distribute.get_strategy(),
                              overwrite)


# --- a bad setting is recorded, then refuses its own correction -------------

def test_a_config_is_the_identity_only_once_started(tmp_path):
  with _record(tmp_path) as record:
    record.start(CONFIG)
  # A config that fails before its model is built is checked, never recorded.
  bad = dict(CONFIG, **{"get_model.width": "0"})
  with pytest.raises(ValueError, match="holds a model made with get_model.width = 1"):
    _record(tmp_path).check(bad)
  with _record(tmp_path, overwrite=True) as record:
    record.check(bad)  # --overwrite_config lets it through the guard
    # ... and get_model fails to build: start() never runs.
  with _record(tmp_path) as record:
    record.check(CONFIG)  # the original command is not refused
    record.start(CONFIG)
  with open(tmp_path / "run.json") as f:
    assert json.load(f)["model_config"] == CONFIG


def test_binding_a_default_to_its_own_value_is_no_change(tmp_path, clean_gin):
  del clean_gin
  base = run_record.model_config(EXPERIMENT, "rotation", {"train": "decode"})
  gin.parse_config("get_model.last_relu = True\nget_model.width = 4")
  same = run_record.model_config(EXPERIMENT, "rotation", {"train": "decode"})
  assert same == base and "get_model.last_relu" not in same
  # A run.json written before defaults were dropped holds the binding.
  with open(tmp_path / "run.json", "w") as f:
    json.dump({"model_config": dict(base, **{"get_model.last_relu": "True"})}, f)
  run_record.check_model_config(str(tmp_path), base)
  with pytest.raises(ValueError, match=r"get_model.last_relu = True, but this "
                     r"config says get_model.last_relu = \(default\)|"
                     r"get_model.last_relu = False"):
    run_record.check_model_config(
        str(tmp_path), dict(base, **{"get_model.last_relu": "False"}))


# --- a damaged state file turns the guard off ---------------------------------

@pytest.mark.parametrize("text,why", [
    ('{"model_config": {"experiment.task": "rot', "Unterminated string"),
    ("", "Expecting value"),
    ('["a list"]', "not a JSON object"),
    ('{"model_config": "width 1"}', "model_config is not a mapping"),
])
def test_a_damaged_run_json_is_refused_naming_it(tmp_path, text, why):
  (tmp_path / "run.json").write_text(text)
  with pytest.raises(ValueError) as info:
    _record(tmp_path).check(CONFIG)
  message = str(info.value)
  assert message.startswith(f"{tmp_path}/run.json is damaged ({why}")
  assert "--overwrite_config" in message
  # The deliberate way out records this config.
  with _record(tmp_path, overwrite=True) as record:
    record.start(CONFIG)
  with open(tmp_path / "run.json") as f:
    assert json.load(f)["model_config"] == CONFIG


# --- gin bindings: one line naming the binding --------------------------------

@pytest.mark.parametrize("binding,message", [
    ("train.epochs = (2", "--gin_bindings='train.epochs = (2' does not parse "
     "(EOF in multi-line statement): close the bracket or quote it opens."),
    ("train.epochs = 'two'", "train.epochs = 'two': it takes a number."),
    ("train.steps_per_loop = 0", "train.steps_per_loop = 0: it must be at least 1."),
    ("train.batch_size = 8.5", "train.batch_size = 8.5: it takes an integer."),
    ("linear_eval.layers = 'pre_logits'", "linear_eval.layers = 'pre_logits': it "
     "takes a list of quoted strings (for one, write ['pre_logits'])."),
    ("train.decay_epochs = [1, 'x']", "train.decay_epochs = [1, 'x']: it takes a "
     "list of numbers."),
])
def test_a_binding_its_parameter_cannot_take_is_named(clean_gin, binding, message):
  del clean_gin
  with pytest.raises(ValueError) as info:
    config_lib.parse(["configs/demo_fashion_mnist.gin"], [binding])
  assert str(info.value).startswith(message), str(info.value)


def test_an_unclosed_bracket_in_a_file_and_a_missing_include_are_named(
    clean_gin, tmp_path):
  del clean_gin
  bad = tmp_path / "bad.gin"
  bad.write_text("include 'configs/demo_fashion_mnist.gin'\ntrain.decay_epochs = [1,\n")
  with pytest.raises(ValueError, match=f"Config file {bad} does not parse"):
    config_lib.parse([str(bad)])
  bad.write_text("include 'configs/common/nope.gin'\n")
  with pytest.raises(FileNotFoundError, match="Unable to open file: "
                     "configs/common/nope.gin.*includes name files by their path"):
    config_lib.parse([str(bad)])


def test_every_config_of_the_repository_passes_the_checks(clean_gin):
  del clean_gin
  import glob  # pylint: disable=g-import-not-at-top
  from datasets import registry  # pylint: disable=g-import-not-at-top
  from evaluation import knn_monitor  # noqa: F401  pylint: disable=g-import-not-at-top
  from self_supervision import export  # noqa: F401  pylint: disable=g-import-not-at-top
  registry.dataset_names()
  root = config_lib.ROOT
  paths = sorted(glob.glob(os.path.join(root, "configs", "**", "*.gin"), recursive=True))
  assert len(paths) > 50
  for path in paths:
    gin.clear_config()
    config_lib.parse([path], finalize=False)


# --- the lock, the archives, the hub path, the low-data subset -----------------

def test_an_empty_lock_file_is_taken_over_with_a_line(tmp_path):
  lock = tmp_path / "lock"
  lock.write_text("")
  old = time.time() - 60
  os.utime(lock, (old, old))
  lines = []
  with workdir_lock.Lock(str(tmp_path), log=lines.append):
    with open(lock) as f:
      assert json.load(f)["pid"] == os.getpid()
  assert lines == [f"Taking over {lock}, which names no holder (empty or damaged: "
                   f"a process killed while taking it)."]
  assert not lock.exists()
  # A live holder's record is still refused.
  lock.write_text(json.dumps(dict(host=socket.gethostname(), pid=os.getpid() + 0,
                                  start_time="t", command="c")))
  os.utime(lock, (old, old))
  with workdir_lock.Lock(str(tmp_path)):  # this very process: it holds it
    pass


@pytest.mark.parametrize("content,why", [(b"", "it is empty (0 bytes)"),
                                         (b"x" * 1000, "")])
def test_an_empty_or_cut_imagenet_archive_is_named(tmp_path, content, why):
  manual = tmp_path / "manual"
  manual.mkdir()
  (manual / imagenet.TRAIN_ARCHIVE).write_bytes(content)
  with tarfile.open(manual / imagenet.VAL_ARCHIVE, "w"):
    pass
  ds = imagenet.Imagenet2012(data_dir=str(tmp_path / "tfds"), manual_dir=str(manual))
  with pytest.raises(ValueError) as info:
    ds.prepare()
  assert str(info.value).startswith(
      f"imagenet2012: cannot prepare: {manual}/{imagenet.TRAIN_ARCHIVE} is not a "
      f"readable tar archive ({why}")
  assert "download it again" in str(info.value)


def test_hub_paths_that_are_not_this_projects_modules_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match=f"--hub_module={tmp_path}/nope: no "
                     "such file or directory"):
    hub_trunk.check_path(str(tmp_path / "nope"))

  class Foreign(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def __call__(self, x):
      return {"out": x * 2}
  module = Foreign()
  tf.saved_model.save(module, str(tmp_path / "foreign"),
                      signatures={"serving_default": module.__call__})
  with pytest.raises(FileNotFoundError, match="is a SavedModel not exported by "
                     "this project .* only modules of self_supervision/export.py"):
    hub_trunk.HubTrunk(str(tmp_path / "foreign"))


def test_a_fraction_that_leaves_a_class_out_is_refused():
  dataset = fake_data.InMemoryDataset(num_train=60, num_val=6, num_test=6, size=4,
                                      num_classes=3)
  with pytest.raises(ValueError, match=r"A low-data fraction of 0.02 keeps 1 of the "
                     r"60 examples of train, from 1 of its 3 classes: every class "
                     r"needs one, so use a fraction of at least 0.05."):
    low_data.low_data(dataset, "train", 0.02)
  assert low_data.low_data(dataset, "train", 0.05).num_examples("train") == 3


# --- images: decoded, one class, an empty class --------------------------------

def _png(path, value=7):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  data = tf.io.encode_png(tf.fill([8, 8, 3], tf.constant(value, tf.uint8))).numpy()
  with open(path, "wb") as f:
    f.write(data)
  return path


def _corrupt_inside(path):
  """Keeps the PNG signature and IEND marker; garbles the image data."""
  with open(path, "rb") as f:
    data = bytearray(f.read())
  start = data.index(b"IDAT") + 4
  data[start:start + 12] = b"\x00" * 12
  with open(path, "wb") as f:
    f.write(bytes(data))


@pytest.fixture
def folder(tmp_path):
  root = str(tmp_path / "images")
  for c in ("a", "b"):
    for i in range(6):
      _png(os.path.join(root, c, f"{i}.png"), 10 * i)
  bad = os.path.join(root, "b", "3.png")
  _corrupt_inside(bad)
  return root, bad


def test_damage_inside_a_complete_png_is_found_by_decoding(folder):
  root, bad = folder
  assert bool(image_folder.looks_complete(tf.io.read_file(bad)))  # markers intact
  with pytest.raises(ValueError, match=(
      f"image_folder: 1 of 12 files under {root} do not decode as JPEG or PNG "
      f"images \\(truncated or corrupt\\): {bad}. Replace or remove them, or set "
      f"image_folder.bad_images = 'skip'")):
    image_folder.ImageFolder(root).prepare()


def test_skip_really_skips_a_damaged_png_and_counts_it(folder, capsys):
  root, bad = folder
  ds = image_folder.ImageFolder(root, bad_images="skip")
  ds.prepare()
  out = capsys.readouterr().out
  assert f"skipping 1 of 12 files under {root}" in out
  assert ds.num_examples("trainval") == 11
  paths = [ex["path"].numpy().decode() for ex in ds.as_dataset("trainval")]
  assert bad not in paths and len(paths) == 11
  for ex in ds.as_dataset("trainval"):  # every image left decodes
    tf.io.decode_image(ex["image"])


def test_one_class_or_an_empty_class_folder_is_refused(tmp_path):
  root = str(tmp_path / "one")
  _png(os.path.join(root, "a", "0.png"))
  with pytest.raises(ValueError, match=f"image_folder: {root} has one class folder "
                     r"\(a\); an evaluation classifies at least two"):
    image_folder.ImageFolder(root)
  os.makedirs(os.path.join(root, "b"))
  _png(os.path.join(root, "c", "0.png"))
  with pytest.raises(ValueError, match=r"class folder\(s\) b under .* hold no "
                     r".jpg/.jpeg/.png file"):
    image_folder.ImageFolder(root)


# --- a full disk while extracting, a notice during the evaluation ------------

def test_a_full_disk_while_extracting_names_the_cache(tmp_path, monkeypatch):
  dataset = fake_data.InMemoryDataset(num_train=20, num_val=4, num_test=4, size=8)
  cache = feature_cache.FeatureCache(str(tmp_path / "features"))

  def full(self, block):
    raise OSError(28, "No space left on device")
  monkeypatch.setattr(feature_cache._RowWriter, "write", full)
  with pytest.raises(OSError) as info:
    cache.get(PixelTask(), None, dataset, "train", ["pixels"],
              trunk=dict(kind="test"), batch_size=8, log=lambda _: None)
  assert str(info.value) == (
      f"[Errno 28] Could not write features of train into {tmp_path}/features (No "
      f"space left on device): is the disk full or the workdir read-only? Free "
      f"space and rerun the same command; finished entries are kept.")
  assert os.listdir(tmp_path / "features") == []  # no half entry


def test_a_notice_stops_the_campaign_at_the_next_finished_entry(tmp_path, monkeypatch):
  ran = []

  def run(protocol, trunk, dataset, *, seed, **kwargs):
    del trunk, dataset, kwargs
    ran.append((protocol, seed))
    preemption._notice.set()  # pylint: disable=protected-access
  monkeypatch.setattr(protocols_lib, "run", run)
  monkeypatch.setattr(protocols_lib, "make_cache", lambda workdir: None)
  trunk = trunks.Trunk("t", PixelTask(), None, dict(kind="test"))
  try:
    with pytest.raises(preemption.Preempted, match=(
        f"Stopped the evaluation between entries on a preemption notice; every "
        f"finished one is in {tmp_path}/results.json. Rerun the same command")):
      campaign.evaluate([lambda: trunk], [None], protocols=["a", "b"],
                        seeds=[0, 1], workdir=str(tmp_path))
  finally:
    preemption.clear()
  assert ran == [("a", 0)]


def test_a_hand_edited_results_value_names_the_file(tmp_path):
  entry = dict(protocol="linear_lbfgs", trunk="trained@1", layer="pre_logits",
               pooling="adaptive_max", train_split="train", eval_split="val",
               fraction=1.0, top1=80.0, top5=90.0, dataset="fashion_mnist")
  assert "80.00" in campaign.table(str(tmp_path), [entry])
  with pytest.raises(ValueError, match=(
      f"{tmp_path}/results.json holds a value the summary cannot read \\(could not "
      f"convert string to float: 'abc'\\) in the entry linear_lbfgs / trained@2 / "
      f"pre_logits: was it edited by hand\\?")):
    campaign.table(str(tmp_path), [entry, dict(entry, trunk="trained@2", top1="abc")])
