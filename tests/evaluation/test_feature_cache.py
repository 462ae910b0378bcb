"""The feature cache: hits, misses on anything that changes the features (the
trunk's compute precision too), and no half entries."""
import json
import os

import gin
import keras
import numpy as np
import pytest

import fake_data
from tiny_tasks import PixelTask, TinySupervised
from evaluation import feature_cache
from evaluation import protocols
from evaluation import representations
from evaluation import trunks
from self_supervision import task as task_lib
from training import precision

LAYERS = ["pixels", "image"]
QUIET = dict(log=lambda _: None)


@pytest.fixture(scope="module")
def dataset():
  return fake_data.InMemoryDataset(num_train=40, num_val=8, num_test=8,
                                   size=8, num_classes=3, separable=True)


def _trunk(version=1):
  return trunks.Trunk("t", PixelTask(), None, dict(kind="test", version=version))


def _get(cache, dataset, trunk, split="train", layers=LAYERS, **kwargs):
  return cache.get(trunk.task, trunk.model, dataset, split, layers,
                   trunk=trunk.fingerprint, batch_size=16, **kwargs, **QUIET)


def test_first_read_extracts_and_stores_what_a_plain_extraction_gives(dataset, tmp_path):
  cache = feature_cache.FeatureCache(str(tmp_path))
  feats, labels = _get(cache, dataset, _trunk())
  assert (cache.hits, cache.misses) == (0, 2)
  expected, expected_labels = representations.extract(
      PixelTask(), None, dataset, "train", LAYERS, batch_size=16, **QUIET)
  np.testing.assert_array_equal(labels, expected_labels)
  for layer in LAYERS:
    assert isinstance(feats[layer], np.memmap)
    np.testing.assert_array_equal(feats[layer], expected[layer])
  assert feats["pixels"].shape == (40, 64)
  assert feats["image"].shape == (40, 8 * 8 * 3)
  entries = sorted(os.listdir(tmp_path))
  assert len(entries) == 2 and all(e.startswith("train-") for e in entries)


def test_second_read_is_a_hit_with_the_same_values(dataset, tmp_path):
  first, _ = _get(feature_cache.FeatureCache(str(tmp_path)), dataset, _trunk())
  cache = feature_cache.FeatureCache(str(tmp_path))
  again, labels = _get(cache, dataset, _trunk())
  assert (cache.hits, cache.misses) == (2, 0)
  np.testing.assert_array_equal(again["pixels"], first["pixels"])
  np.testing.assert_array_equal(labels, dataset.labels[:40])
  # A subset of the layers is a hit too; a new layer is extracted alone.
  cache = feature_cache.FeatureCache(str(tmp_path))
  _get(cache, dataset, _trunk(), layers=["pixels"])
  assert (cache.hits, cache.misses) == (1, 0)


class _TrainvalOfParts(fake_data.InMemoryDataset):
  """The fake dataset declaring what it is: trainval is train then val."""

  def split_parts(self, split):
    return ("train", "val") if split == "trainval" else None


@pytest.mark.parametrize("cached", [True, False])
def test_trainval_is_read_as_train_then_val_not_extracted_again(tmp_path, cached):
  composed = _TrainvalOfParts(num_train=40, num_val=8, num_test=8, size=8,
                              num_classes=3, separable=True)
  cache = feature_cache.FeatureCache(str(tmp_path)) if cached else None
  lines = []
  got = feature_cache.read_splits(_trunk(), composed, ["trainval", "val"],
                                  LAYERS, batch_size=16, cache=cache,
                                  log=lines.append)
  feats, labels = got["trainval"]
  expected, expected_labels = representations.extract(
      PixelTask(), None, composed, "trainval", LAYERS, batch_size=16, **QUIET)
  np.testing.assert_array_equal(labels, expected_labels)
  for layer in LAYERS:
    assert feats[layer].shape == expected[layer].shape == (48, feats[layer].shape[1])
    np.testing.assert_array_equal(feats[layer], expected[layer])
  np.testing.assert_array_equal(got["val"][1], composed.labels[40:48])
  assert "  features of trainval: train + val, concatenated" in lines
  assert not any(" of trainval" in line for line in lines if "extracting" in line)
  if cached:
    assert (cache.hits, cache.misses) == (0, 4)  # train and val, 2 layers each
    assert sorted(e.split("-")[0] for e in os.listdir(tmp_path)) == [
        "train", "train", "val", "val"]


def test_parts_that_do_not_add_up_to_the_split_are_named(tmp_path):
  class Wrong(_TrainvalOfParts):
    def split_parts(self, split):
      return ("train",) if split == "trainval" else None

  wrong = Wrong(num_train=40, num_val=8, num_test=8, size=8, num_classes=3)
  with pytest.raises(RuntimeError, match=r"in_memory: trainval should be train, "
                     r"but they hold 40 examples, not 48"):
    feature_cache.read_splits(_trunk(), wrong, ["trainval"], LAYERS,
                              batch_size=16, **QUIET)


@pytest.mark.parametrize("change", ["trunk", "pooling", "split", "dtype",
                                    "preprocess"])
def test_anything_that_changes_the_features_misses(dataset, tmp_path, change):
  _get(feature_cache.FeatureCache(str(tmp_path)), dataset, _trunk())
  cache = feature_cache.FeatureCache(
      str(tmp_path), dtype="float16" if change == "dtype" else "float32")
  trunk = _trunk(version=2 if change == "trunk" else 1)
  if change == "preprocess":
    trunk.task = PixelTask("decode|value_range(0, 1)")
  _get(cache, dataset, trunk, split="val" if change == "split" else "train",
       pooling="avg" if change == "pooling" else "adaptive_max")
  assert (cache.hits, cache.misses) == (0, 2)


def test_float16_storage_rounds_to_half_precision(dataset, tmp_path):
  feats, _ = _get(feature_cache.FeatureCache(str(tmp_path), dtype="float16"),
                  dataset, _trunk())
  exact, _ = representations.extract(PixelTask(), None, dataset, "train",
                                     LAYERS, batch_size=16, **QUIET)
  assert feats["pixels"].dtype == np.float16
  np.testing.assert_allclose(feats["pixels"], exact["pixels"], rtol=1e-3)


def test_a_broken_entry_is_extracted_again(dataset, tmp_path):
  _get(feature_cache.FeatureCache(str(tmp_path)), dataset, _trunk())
  entry = next(e for e in os.listdir(tmp_path) if "-pixels-" in e)
  np.save(os.path.join(tmp_path, entry, "features.npy"), np.zeros([3, 64]))
  cache = feature_cache.FeatureCache(str(tmp_path))
  feats, _ = _get(cache, dataset, _trunk())
  assert (cache.hits, cache.misses) == (1, 1)
  assert feats["pixels"].shape == (40, 64)


class _ShortDataset(fake_data.InMemoryDataset):
  """Promises more training examples than it yields (a truncated split)."""

  def num_examples(self, split):
    return super().num_examples(split) + (5 if split == "train" else 0)


def test_an_interrupted_extraction_leaves_no_entry(tmp_path):
  dataset = _ShortDataset(num_train=20, num_val=4, num_test=4, size=8)
  cache = feature_cache.FeatureCache(str(tmp_path))
  with pytest.raises(RuntimeError, match="Read 20 examples of train, expected 25"):
    _get(cache, dataset, _trunk())
  assert os.listdir(tmp_path) == []


def test_unknown_dtype_is_refused(tmp_path):
  with pytest.raises(ValueError, match="float16"):
    feature_cache.FeatureCache(str(tmp_path), dtype="int8")


def test_later_splits_reuse_the_first_splits_trace(dataset, tmp_path):
  cache = feature_cache.FeatureCache(str(tmp_path))
  trunk = _trunk()
  _get(cache, dataset, trunk, split="train")  # batches of 16, then 8
  extractor = cache._extractor[3]
  traces = extractor._fn.experimental_get_tracing_count()
  for split in ("val", "test", "trainval"):
    _get(cache, dataset, trunk, split=split)
  assert cache._extractor[3] is extractor
  assert extractor._fn.experimental_get_tracing_count() == traces


@pytest.mark.parametrize("dtype", feature_cache.DTYPES)
def test_row_writer_writes_a_npy_file_block_by_block(tmp_path, dtype):
  rows = np.random.RandomState(0).randn(7, 5).astype(np.float32)
  path = str(tmp_path / "f.npy")
  writer = feature_cache._RowWriter(path, (7, 5), dtype)
  for start in (0, 3, 6):
    writer.write(rows[start:start + 3])
  writer.close()
  back = np.load(path, mmap_mode="r")
  assert back.dtype == np.dtype(dtype) and back.shape == (7, 5)
  np.testing.assert_array_equal(back, rows.astype(dtype))


def test_row_writer_refuses_wrong_rows(tmp_path):
  writer = feature_cache._RowWriter(str(tmp_path / "f.npy"), (4, 3), "float32")
  with pytest.raises(ValueError, match="width 3"):
    writer.write(np.zeros([2, 4], np.float32))
  writer.write(np.zeros([3, 3], np.float32))
  with pytest.raises(RuntimeError, match="More than the 4 rows"):
    writer.write(np.zeros([2, 3], np.float32))
  with pytest.raises(RuntimeError, match="Wrote 3 of 4 rows"):
    writer.close()
  writer.abort()


# --- extraction.precision ---------------------------------------------------

_KEY_ARGS = dict(trunk=dict(kind="random_init", seed=0, weights_sha256="ab"),
                 dataset="in_memory", split="train", num_examples=40,
                 layer="pre_logits", pooling="adaptive_max",
                 preprocess="decode|resize(32)|value_range(-1, 1)")


def test_a_float32_key_is_the_key_entries_had_before_compute_dtypes():
  cache = feature_cache.FeatureCache("/r")
  key = cache.key(**_KEY_ARGS)
  assert key == dict(_KEY_ARGS, version=1, dtype="float32")
  assert cache.key(**_KEY_ARGS, compute_dtype="float32") == key
  # The hash the code wrote before the compute dtype existed: caches of
  # earlier runs still hit.
  assert cache.path(key) == os.path.join("/r",
                                         "train-pre_logits-d2fd6d23a3c62854")
  low = cache.key(**_KEY_ARGS, compute_dtype="bfloat16")
  assert low == dict(key, compute_dtype="bfloat16")
  assert cache.path(low) != cache.path(key)


_PP = "decode|resize(32)|value_range(-1, 1)"
_RESNET = ["get_model.name = 'resnet50_v2'", "get_model.width = 1",
           f"rotation.pp_train = '{_PP}|rotate'",
           f"rotation.pp_representation = '{_PP}'"]


def _relative_error(got, exact):
  """max over rows of |got - exact| / |exact| (L2 norms): [N, D] -> float."""
  got, exact = np.asarray(got, np.float64), np.asarray(exact, np.float64)
  return float(np.max(np.linalg.norm(got - exact, axis=1)
                      / np.linalg.norm(exact, axis=1)))


def test_bfloat16_extraction_is_close_to_float32_and_cached_apart(
    dataset, tmp_path, clean_gin, monkeypatch):
  gin.parse_config(_RESNET)
  task = task_lib.get_task("rotation", num_classes=dataset.num_classes)
  model = task.make_model(dataset, 0)
  trunk = trunks.random_init(task, model, seed=0)
  layers = ["pre_logits", "block3"]
  cache = feature_cache.FeatureCache(str(tmp_path))
  exact, labels = _get(cache, dataset, trunk, layers=layers)
  low, low_labels = _get(cache, dataset, trunk, layers=layers,
                         compute_dtype="bfloat16")
  assert (cache.hits, cache.misses) == (0, 4)
  np.testing.assert_array_equal(low_labels, labels)
  for layer in layers:
    assert low[layer].dtype == np.float32
    assert low[layer].shape == exact[layer].shape
    assert not np.array_equal(low[layer], exact[layer])  # bfloat16 did run
  # Measured with seeds 0-2: 0.012-0.016 (pre_logits, 512 values) and 0.011
  # (block3, pooled to 1024), bfloat16's 8-bit mantissa through 50 layers;
  # the bound, 2.5x the worst, fails on a wrong twin, not on rounding.
  for layer in layers:
    assert _relative_error(low[layer], exact[layer]) < 0.04, layer
  # The trunk itself is untouched: the twin took a copy of its weights.
  assert keras.config.dtype_policy().name == "float32"
  assert {l.compute_dtype for l in model._flatten_layers()} == {"float32"}
  # Four entries, the bfloat16 ones saying so in their key.
  compute = []
  for entry in os.listdir(tmp_path):
    with open(os.path.join(tmp_path, entry, "key.json")) as f:
      compute.append(json.load(f).get("compute_dtype", "float32"))
  assert sorted(compute) == ["bfloat16"] * 2 + ["float32"] * 2
  # Through gin: 'mixed' on a CPU with bfloat16 units reads those entries
  # back; the float32 default reads the float32 ones.
  monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
  for binding, expected in (("mixed", low), ("float32", exact)):
    gin.bind_parameter("extraction.precision", binding)
    cache = feature_cache.FeatureCache(str(tmp_path))
    feats, _ = feature_cache.read_splits(trunk, dataset, ["train"], layers,
                                         batch_size=16, cache=cache,
                                         **QUIET)["train"]
    assert (cache.hits, cache.misses) == (2, 0)
    np.testing.assert_array_equal(feats["pre_logits"], expected["pre_logits"])


def test_a_trunk_without_a_model_is_read_in_float32(dataset, tmp_path,
                                                    clean_gin):
  """A hub module (its stand-in here: no model) cannot run in bfloat16."""
  _get(feature_cache.FeatureCache(str(tmp_path)), dataset, _trunk())
  gin.bind_parameter("extraction.precision", "bfloat16")
  said = []
  cache = feature_cache.FeatureCache(str(tmp_path))
  feature_cache.read_splits(_trunk(), dataset, ["train"], LAYERS,
                            batch_size=16, cache=cache, log=said.append)
  assert (cache.hits, cache.misses) == (2, 0)
  assert "read in float32" in said[0]
  with pytest.raises(ValueError, match="hub module is read in float32"):
    representations.Extractor(PixelTask(), None, LAYERS,
                              compute_dtype="bfloat16")


def test_unknown_extraction_precision_is_refused(clean_gin):
  gin.bind_parameter("extraction.precision", "half")
  with pytest.raises(ValueError, match="extraction.precision 'half'"):
    representations.extraction_dtype(PixelTask(), object())


def test_entries_from_low_precision_features_say_so(dataset, tmp_path,
                                                     clean_gin):
  """linear_lbfgs on a bfloat16 pass records it; its pre_logits (TinyTrunk's
  own, in the compute dtype) still reach the solver as float32."""
  task = TinySupervised(num_classes=dataset.num_classes)
  trunk = trunks.random_init(task, task.make_model(dataset, 0), seed=0)
  overrides = dict(l2_grid=[1e-3], layers=["pre_logits"])
  entry, = protocols.run("linear_lbfgs", trunk, dataset, workdir=str(tmp_path),
                         overrides=overrides, **QUIET)
  assert "extraction_precision" not in entry  # float32 entries are unchanged
  gin.bind_parameter("extraction.precision", "bfloat16")
  overrides["pooling"] = "avg"  # another entry, not the one already done
  entry, = protocols.run("linear_lbfgs", trunk, dataset, workdir=str(tmp_path),
                         overrides=overrides, **QUIET)
  assert entry["extraction_precision"] == "bfloat16"
