"""SGD-trained evaluation heads (Table 2 linear, MLP): pipeline, heads, schedule,
per-epoch curve, resume, low data, images and cached features."""
import json
import os

import numpy as np
import pytest

import fake_data
import strategies
from tiny_tasks import PixelTask
from evaluation import feature_cache
from evaluation import sgd_eval
from evaluation import trunks
from evaluation.sgd import driver

QUIET = dict(log=lambda _: None)
FAST = dict(batch_size=16, base_lr=0.5, base_batch_size=16, eval_batch_size=32,
            first_decay_epochs=3, second_decay_after=1, tail_epochs=2,
            layer="pixels", train_split="train", eval_split="test")


@pytest.fixture(scope="module")
def dataset():
  return fake_data.InMemoryDataset(num_train=96, num_val=16, num_test=48,
                                   size=8, num_classes=3, separable=True)


def _trunk(pp="decode|value_range(-1, 1)"):
  return trunks.Trunk("pixels", PixelTask(pp), None, dict(kind="test", pp=pp))


def test_augmented_pipeline_randomises_the_central_crop_and_adds_a_flip():
  assert (sgd_eval.augmented_pipeline(
      "decode|resize_small(256)|central_crop(224)|value_range(-1, 1)")
          == "decode|resize_small(256)|crop(224)|flip_lr|value_range(-1, 1)")
  assert (sgd_eval.augmented_pipeline(
      "decode|resize_small(224)|central_crop(192)|crop_patches(3, patch_size=64)")
          == "decode|resize_small(224)|crop(192)|flip_lr|"
             "crop_patches(3, patch_size=64)")
  assert sgd_eval.augmented_pipeline("decode|resize(32)") == "decode|resize(32)"


def _trainable(model):
  return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def test_heads_have_the_paper_shapes():
  linear = sgd_eval.build_head("linear", 10, normalize=False)
  linear.build((None, 2048))
  assert linear.count_params() == 2048 * 10 + 10
  mlp = sgd_eval.build_head("mlp", 10, normalize=False)
  mlp.build((None, 2048))
  assert mlp.count_params() == 2048 * 1000 + 1000 + 1000 * 10 + 10
  assert [l.name for l in mlp.layers] == ["hidden", "dropout", "logits"]
  # Normalising adds moving statistics only: no trainable parameter.
  normalized = sgd_eval.build_head("mlp", 10)
  normalized.build((None, 2048))
  assert [l.name for l in normalized.layers][0] == "normalize"
  assert _trainable(normalized) == _trainable(mlp)
  assert normalized.count_params() == mlp.count_params() + 2 * 2048
  with pytest.raises(ValueError, match="linear"):
    sgd_eval.build_head("svm", 10)


def test_protocol_names():
  assert sgd_eval.protocol_name("linear", "images") == "linear_sgd"
  assert sgd_eval.protocol_name("mlp", "features") == "mlp_sgd_features"


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_features_variant_learns_and_logs_one_curve_point_per_epoch(
    dataset, tmp_path, head):
  cache = feature_cache.FeatureCache(str(tmp_path / "features"))
  [entry] = sgd_eval.evaluate(_trunk(), dataset, str(tmp_path), head=head,
                              inputs="features", cache=cache, **FAST, **QUIET)
  assert entry["protocol"] == f"{head}_sgd_features"
  assert [c["epoch"] for c in entry["curve"]] == [1, 2, 3, 4, 5]
  assert [c["step"] for c in entry["curve"]] == [6, 12, 18, 24, 30]
  assert entry["top1"] == entry["curve"][-1]["top1"] == 100.0
  assert entry["hyperparameters"]["lr"] == 0.5
  assert entry["hyperparameters"]["train_examples"] == 96
  with open(os.path.join(entry["eval_dir"], "curve.json")) as f:
    assert json.load(f)["curve"] == entry["curve"]


def test_training_resumes_and_a_finished_run_is_not_retrained(dataset, tmp_path):
  cache = feature_cache.FeatureCache(str(tmp_path / "features"))
  short = dict(FAST, first_decay_epochs=1, second_decay_after=0, tail_epochs=1)
  [first] = sgd_eval.evaluate(_trunk(), dataset, str(tmp_path),
                              inputs="features", cache=cache, **short, **QUIET)
  assert len(first["curve"]) == 2
  messages = []
  [again] = sgd_eval.evaluate(_trunk(), dataset, str(tmp_path),
                              inputs="features", cache=cache, **short,
                              log=messages.append)
  assert any("already trained" in m for m in messages)
  assert again["curve"] == first["curve"]
  # A longer schedule continues from the last checkpoint (step 12).
  longer = dict(short, tail_epochs=2)
  [more] = sgd_eval.evaluate(_trunk(), dataset, str(tmp_path),
                             inputs="features", cache=cache, **longer, **QUIET)
  assert [c["step"] for c in more["curve"]] == [6, 12, 18]
  assert more["curve"][:2] == first["curve"]


class _Killed(Exception):
  pass


def test_an_interrupted_probe_resumes_to_the_uninterrupted_result(
    dataset, tmp_path, monkeypatch):
  cache = feature_cache.FeatureCache(str(tmp_path / "features"))
  short = dict(FAST, first_decay_epochs=1, second_decay_after=0, tail_epochs=2)
  [whole] = sgd_eval.evaluate(_trunk(), dataset, str(tmp_path / "whole"),
                              inputs="features", cache=cache, **short, **QUIET)
  assert [c["step"] for c in whole["curve"]] == [6, 12, 18]

  def die_at_epoch_2(line):
    if line.startswith("  epoch 2.00/"):
      raise _Killed  # trained to step 12, nothing of it saved yet
  with pytest.raises(_Killed):
    sgd_eval.evaluate(_trunk(), dataset, str(tmp_path / "cut"), inputs="features",
                      cache=cache, **short, log=die_at_epoch_2)
  # Killed after the last curve point was written, before its checkpoint.
  write_json, calls = driver._write_json, []

  def die_at_the_last_point(path, doc):
    write_json(path, doc)
    calls.append(path)
    if len(doc["curve"]) == 3:
      raise _Killed
  monkeypatch.setattr(driver, "_write_json", die_at_the_last_point)
  with pytest.raises(_Killed):
    sgd_eval.evaluate(_trunk(), dataset, str(tmp_path / "cut"), inputs="features",
                      cache=cache, **short, **QUIET)
  assert len(calls) == 2  # resumed at step 6: epochs 2 and 3
  monkeypatch.undo()
  messages = []
  [resumed] = sgd_eval.evaluate(_trunk(), dataset, str(tmp_path / "cut"),
                                inputs="features", cache=cache, **short,
                                log=messages.append)
  assert any("from step 12" in m for m in messages)
  for got, expected in zip(resumed["curve"], whole["curve"]):
    assert got["step"] == expected["step"]
    for key in ("top1", "top5", "train_loss", "train_top1"):
      assert got[key] == pytest.approx(expected[key], abs=1e-4), key
  assert len(resumed["curve"]) == 3


def test_images_variant_under_two_replicas_with_low_data(dataset, tmp_path):
  [entry] = sgd_eval.evaluate(
      _trunk(), dataset, str(tmp_path), inputs="images", fraction=0.5,
      strategy=strategies.two_replicas(), **FAST, **QUIET)
  assert entry["protocol"] == "linear_sgd"
  assert entry["fraction"] == 0.5
  assert entry["hyperparameters"]["train_examples"] == 48
  assert [c["step"] for c in entry["curve"]] == [3, 6, 9, 12, 15]
  assert entry["top1"] == 100.0
  assert entry["hyperparameters"]["pp_train"] == "decode|value_range(-1, 1)"


def test_a_padded_last_eval_batch_counts_its_real_rows_only(tmp_path):
  # 48 test images: batches of 47 end in one of 1, padded to 47 so that both
  # replicas get rows; the padding must not enter top-1 / top-5. Random
  # labels keep the accuracies away from 100%.
  dataset = fake_data.InMemoryDataset(num_train=96, num_val=16, num_test=48,
                                      size=8, num_classes=3)
  curves = []
  for eval_batch_size in (48, 47):
    [entry] = sgd_eval.evaluate(
        _trunk(), dataset, str(tmp_path / str(eval_batch_size)),
        inputs="features", strategy=strategies.two_replicas(),
        **dict(FAST, eval_batch_size=eval_batch_size), **QUIET)
    curves.append([(c["top1"], c["top5"]) for c in entry["curve"]])
  assert curves[0] == curves[1]
  assert any(t1 < 100.0 for t1, _ in curves[0])  # not trivially perfect


def test_images_variant_augments_with_a_random_crop_and_flip(dataset, tmp_path):
  trunk = _trunk("decode|central_crop(6)|value_range(-1, 1)")
  [entry] = sgd_eval.evaluate(trunk, dataset, str(tmp_path), inputs="images",
                              **dict(FAST, tail_epochs=1, second_decay_after=1),
                              **QUIET)
  assert (entry["hyperparameters"]["pp_train"]
          == "decode|crop(6)|flip_lr|value_range(-1, 1)")
  assert len(entry["curve"]) == 4
  assert all(0 <= c["top1"] <= 100 for c in entry["curve"])


def test_a_diverging_head_stops_with_the_fix(dataset, tmp_path):
  with pytest.raises(FloatingPointError, match="Lower sgd_eval.base_lr"):
    sgd_eval.evaluate(_trunk(), dataset, str(tmp_path), inputs="features",
                      **dict(FAST, base_lr=1e38), **QUIET)


def test_bad_settings_are_refused(dataset, tmp_path):
  with pytest.raises(ValueError, match="inputs"):
    sgd_eval.evaluate(_trunk(), dataset, str(tmp_path), inputs="pixels", **QUIET)
  with pytest.raises(ValueError, match="divisible"):
    sgd_eval.evaluate(_trunk(), dataset, str(tmp_path), batch_size=15,
                      strategy=strategies.two_replicas(), **QUIET)
  with pytest.raises(ValueError, match="first_decay_epochs"):
    sgd_eval.evaluate(_trunk(), dataset, str(tmp_path),
                      **dict(FAST, second_decay_after=5), **QUIET)
