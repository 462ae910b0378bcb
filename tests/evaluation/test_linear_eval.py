"""The Table 1 protocol on cached features: chunked from disk equals in memory,
low-data fractions, and the results entry."""
import os

import numpy as np
import pytest

import fake_data
from tiny_tasks import pixel_trunk
from datasets import low_data
from evaluation import feature_cache
from evaluation import linear_eval
from training import preemption

# The demo's splits (a refit on train + val, scored on test); the defaults
# are Table 1's (tests/evaluation/test_corrections.py).
SETTINGS = dict(layers=["pixels"], l2_grid=[1e-1, 1e-3], max_iter=100,
                batch_size=32, eval_split="test", refit_on_train_and_val=True,
                log=lambda _: None)
TABLE1 = dict(SETTINGS, eval_split="val", refit_on_train_and_val=False)


@pytest.fixture(scope="module")
def dataset():
  return fake_data.small_pixels(separable=True)


_trunk = pixel_trunk


def test_chunked_fit_from_the_cache_equals_the_in_memory_fit(dataset, tmp_path):
  in_memory = linear_eval.evaluate(_trunk(), dataset, **SETTINGS)[0]
  cache = feature_cache.FeatureCache(str(tmp_path))
  chunked = linear_eval.evaluate(_trunk(), dataset, cache=cache, chunk_rows=7,
                                 **SETTINGS)[0]
  assert cache.misses == 3  # train, val, test
  for key in ("top1", "top5"):
    assert chunked[key] == in_memory[key]
  assert chunked["hyperparameters"] == in_memory["hyperparameters"]
  assert chunked["top1"] == 100.0


def test_entry_records_what_was_fitted(dataset):
  entry = linear_eval.evaluate(_trunk(), dataset, **SETTINGS)[0]
  assert entry["protocol"] == "linear_lbfgs"
  assert entry["trunk"] == "pixels" and entry["layer"] == "pixels"
  assert entry["train_split"] == "train+val" and entry["eval_split"] == "test"
  assert entry["selected_on"] == "val"
  assert entry["fraction"] == 1.0
  hyper = entry["hyperparameters"]
  assert hyper["l2"] in (1e-1, 1e-3) and hyper["l2_grid"] == [1e-1, 1e-3]
  assert set(hyper["val_top1_by_l2"]) == {"0.1", "0.001"}
  assert hyper["standardize"] is True
  # The refit saw every label of train and val.
  assert hyper["train_examples"] == 120 + 30


def test_table1_protocol_fits_train_and_scores_val(dataset):
  entry = linear_eval.evaluate(_trunk(), dataset, **TABLE1)[0]
  assert (entry["train_split"], entry["selected_on"], entry["eval_split"]) == (
      "train", "val", "val")
  assert entry["hyperparameters"]["train_examples"] == 120
  assert entry["top1"] == max(entry["hyperparameters"]["val_top1_by_l2"].values())


def test_low_data_fits_a_balanced_fraction(dataset, tmp_path):
  cache = feature_cache.FeatureCache(str(tmp_path))
  entry = linear_eval.evaluate(_trunk(), dataset, cache=cache, fraction=0.25,
                               **SETTINGS)[0]
  assert entry["fraction"] == 0.25
  # The same fraction of val joins the refit: 30 of train's 120 labels plus
  # the balanced quarter of val's 30.
  val_labels = dataset.labels[120:150]
  val_part = len(low_data.balanced_subset(val_labels, 0.25, 0))
  assert 5 <= val_part <= 10
  assert entry["hyperparameters"]["train_examples"] == 30 + val_part
  no_refit = linear_eval.evaluate(_trunk(), dataset, cache=cache, fraction=0.25,
                                  **dict(SETTINGS, refit_on_train_and_val=False))[0]
  assert no_refit["hyperparameters"]["train_examples"] == 30
  with pytest.raises(ValueError, match=r"in \(0, 1\]"):
    linear_eval.evaluate(_trunk(), dataset, fraction=2, **SETTINGS)


def test_row_concat_reads_across_parts():
  a = np.arange(12, dtype=np.float32).reshape(4, 3)
  b = np.arange(12, 18, dtype=np.float32).reshape(2, 3)
  both = linear_eval.RowConcat([a, b])
  assert both.shape == (6, 3)
  np.testing.assert_array_equal(both[3:5], np.concatenate([a, b])[3:5])
  np.testing.assert_array_equal(both[0:6], np.concatenate([a, b]))
  with pytest.raises(ValueError, match="widths"):
    linear_eval.RowConcat([a, np.zeros([2, 4])])


def test_holdout_selection_never_looks_at_the_scored_split(dataset):
  entry = linear_eval.evaluate(_trunk(), dataset, holdout_fraction=0.1,
                               **TABLE1)[0]
  assert entry["selected_on"] == "train (held-out 10%)"
  assert entry["eval_split"] == "val" and entry["train_split"] == "train"
  hyper = entry["hyperparameters"]
  assert hyper["holdout_fraction"] == 0.1
  # The grid was ranked on the 12 held-out train rows (val has 30), and the
  # chosen L2 refit on all 120.
  for value in hyper["val_top1_by_l2"].values():
    assert value * 12 / 100 == pytest.approx(round(value * 12 / 100))
  assert hyper["train_examples"] == 120
  with pytest.raises(ValueError, match="linear_eval.holdout_fraction = 1.0"):
    linear_eval.evaluate(_trunk(), dataset, holdout_fraction=1.0, **SETTINGS)


def test_a_preemption_notice_stops_a_fit_or_an_extraction_and_keeps_nothing(
    dataset, monkeypatch, tmp_path):
  check = preemption.check_inside("inside an L-BFGS fit", num_workers=1)
  check()  # no notice: nothing happens
  # Workers stop together between entries, never alone inside one.
  assert preemption.check_inside("inside an L-BFGS fit", num_workers=2) is None
  monkeypatch.setattr(preemption, "requested", lambda: True)
  with pytest.raises(preemption.Preempted, match="inside an L-BFGS fit.*Rerun"):
    check()
  with pytest.raises(preemption.Preempted, match="inside an L-BFGS fit"):
    linear_eval.evaluate(_trunk(), dataset, **TABLE1)
  # Through the feature cache the notice stops the extraction first, and its
  # half-written entry is gone.
  cache = feature_cache.FeatureCache(str(tmp_path))
  with pytest.raises(preemption.Preempted,
                     match="while extracting features of train"):
    linear_eval.evaluate(_trunk(), dataset, cache=cache, **TABLE1)
  assert os.listdir(tmp_path) == []
