"""The feature cache: hits, misses on anything that changes the features, and
no half entries."""
import os

import numpy as np
import pytest

import fake_data
from tiny_tasks import PixelTask
from evaluation import feature_cache
from evaluation import representations
from evaluation import trunks

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
