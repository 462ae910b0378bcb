"""The kNN protocol: streamed, chunked neighbours equal a numpy brute force;
Wu et al.'s weighted vote; the results entry through the protocol registry."""
import json

import numpy as np
import pytest

import fake_data
from tiny_tasks import pixel_trunk
from evaluation import feature_cache
from evaluation import knn
from evaluation import protocols


def _brute_force(train_x, train_y, query_x, k, num_classes, temperature):
  """Exact float64 reference: cosine similarities, stable sort, weighted votes."""
  def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  sims = unit(query_x) @ unit(train_x).T
  order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
  top = np.take_along_axis(sims, order, axis=1)
  scores = np.zeros((len(query_x), num_classes))
  for q in range(len(query_x)):
    for s, i in zip(top[q], order[q]):
      scores[q, train_y[i]] += np.exp(s / temperature)
  return top, train_y[order], scores


def test_streamed_chunks_equal_the_brute_force(tmp_path):
  rng = np.random.RandomState(0)
  train_x = rng.randn(103, 12).astype(np.float32)
  train_y = rng.randint(0, 4, 103)
  query_x = rng.randn(23, 12).astype(np.float32)
  # A memory map, read 10 rows at a time, queries in blocks of 6.
  path = tmp_path / "train.npy"
  np.save(path, train_x)
  mapped = np.load(path, mmap_mode="r")
  sims, labels = knn.neighbours(mapped, train_y, query_x, 9, chunk_rows=10,
                                query_rows=6)
  ref_sims, ref_labels, ref_scores = _brute_force(train_x, train_y, query_x, 9, 4, 0.07)
  np.testing.assert_allclose(sims, ref_sims, atol=1e-6)
  np.testing.assert_array_equal(labels, ref_labels)
  scores = knn.vote(sims, labels, 4, 0.07)
  # vote() scales every score by exp(-1 / T): the same ranking.
  np.testing.assert_allclose(scores * np.exp(1 / 0.07), ref_scores, rtol=1e-5)
  np.testing.assert_array_equal(np.argmax(scores, 1), np.argmax(ref_scores, 1))


def test_ties_go_to_the_earlier_train_example():
  # Four identical train rows across two chunks: the first two win.
  train_x = np.array([[1.0, 0.0]] * 4 + [[0.0, 1.0]], np.float32)
  train_y = np.array([0, 1, 2, 3, 4])
  sims, labels = knn.neighbours(train_x, train_y, np.array([[2.0, 0.0]]), 2,
                                chunk_rows=3)
  np.testing.assert_array_equal(labels, [[0, 1]])
  np.testing.assert_allclose(sims, [[1.0, 1.0]])
  with pytest.raises(ValueError, match=r"k = 6 needs 1 <= k <= 5"):
    knn.neighbours(train_x, train_y, train_x, 6)


def test_the_weighted_vote_follows_the_temperature():
  # One close neighbour of class 1 against two far ones of class 0.
  sims = np.array([[0.9, 0.8, 0.1]])
  labels = np.array([[1, 0, 0]])
  sharp = knn.vote(sims, labels, 3, 0.07)
  assert sharp[0, 1] / sharp[0, 0] == pytest.approx(
      np.exp(0.9 / 0.07) / (np.exp(0.8 / 0.07) + np.exp(0.1 / 0.07)))
  assert knn.accuracy(sharp, np.array([1]), 1) == 1.0
  flat = knn.vote(sims, labels, 3, 100.0)  # near-uniform weights: two votes win
  assert knn.accuracy(flat, np.array([1]), 1) == 0.0
  assert knn.accuracy(flat, np.array([1]), 2) == 1.0
  assert sharp[0, 2] == 0.0


@pytest.fixture(scope="module")
def dataset():
  return fake_data.small_pixels(separable=True)


_trunk = pixel_trunk


def test_the_protocol_scores_every_k_from_the_cache(dataset, tmp_path):
  cache = feature_cache.FeatureCache(str(tmp_path / "features"))
  entry = knn.evaluate(_trunk(), dataset, layers=["pixels"], ks=[5, 50],
                       eval_split="test", cache=cache, chunk_rows=16,
                       log=lambda _: None)[0]
  assert cache.misses == 2  # train, test
  read = feature_cache.read_splits(_trunk(), dataset, ["train", "test"], ["pixels"],
                                   cache=cache, log=lambda _: None)
  (train_x, train_y), (test_x, test_y) = [
      (read[s][0]["pixels"], read[s][1]) for s in ("train", "test")]
  assert cache.hits == 2
  for k in (5, 50):
    _, _, scores = _brute_force(train_x, train_y, test_x, k, 3, 0.07)
    expected = 100.0 * np.mean(np.argmax(scores, 1) == test_y)
    assert entry["by_k"][str(k)]["top1"] == pytest.approx(expected, abs=1e-3)
    assert entry["by_k"][str(k)]["top5"] == 100.0  # 3 classes
  assert (entry["protocol"], entry["trunk"], entry["layer"], entry["train_split"],
          entry["eval_split"], entry["fraction"]) == (
              "knn", "pixels", "pixels", "train", "test", 1.0)
  assert entry["top1"] == entry["by_k"]["5"]["top1"]
  assert entry["hyperparameters"]["temperature"] == 0.07
  assert entry["hyperparameters"]["train_examples"] == 120
  # Separable classes: the 5 nearest agree.
  assert entry["top1"] == 100.0


def test_low_data_and_the_registry(dataset, tmp_path):
  entry = knn.evaluate(_trunk(), dataset, layers=["pixels"], ks=[3], fraction=0.25,
                       log=lambda _: None)[0]
  assert entry["hyperparameters"]["train_examples"] == 30
  assert entry["fraction"] == 0.25
  assert "knn" in protocols.PROTOCOLS
  workdir = str(tmp_path)
  first = protocols.run("knn", _trunk(), dataset, workdir=workdir,
                        overrides=dict(layers=["pixels"]), log=lambda _: None)
  assert [e["layer"] for e in first] == ["pixels"]
  assert first[0]["dataset"] == dataset.name
  again = protocols.run("knn", _trunk(), dataset, workdir=workdir,
                        overrides=dict(layers=["pixels"]), log=lambda _: None)
  assert again == []  # already in results.json
  saved = json.loads((tmp_path / "results.json").read_text())
  assert [e["protocol"] for e in saved["evaluations"]] == ["knn"]
  with pytest.raises(ValueError, match=r"knn_eval.ks = \[0\]"):
    knn.evaluate(_trunk(), dataset, layers=["pixels"], ks=[0])
  with pytest.raises(ValueError, match="knn_eval.temperature = 0"):
    knn.evaluate(_trunk(), dataset, layers=["pixels"], temperature=0)
