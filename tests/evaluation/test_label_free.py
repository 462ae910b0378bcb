"""RankMe on matrices with known singular values, Spearman on hand-ranked pairs,
and their records in results.json."""
import json

import numpy as np
import pytest

from evaluation import label_free
from evaluation import results as results_lib


def _with_singular_values(s, n, d, seed=0):
  """An [n, d] matrix whose nonzero singular values are exactly `s`."""
  rng = np.random.RandomState(seed)
  u, _ = np.linalg.qr(rng.randn(n, len(s)))
  v, _ = np.linalg.qr(rng.randn(d, len(s)))
  return (u * np.asarray(s, np.float64)) @ v.T


def _expected(s, eps=label_free.RANKME_EPS, total_dims=None):
  """exp(entropy) of s / sum(s) + eps over all min(n, d) singular values."""
  s = np.concatenate([s, np.zeros((total_dims or len(s)) - len(s))])
  p = s / s.sum() + eps
  return float(np.exp(-np.sum(p * np.log(p))))


@pytest.mark.parametrize("n,d", [(200, 16), (16, 200)])  # gram path, SVD path
def test_rankme_of_known_spectra(n, d):
  # A flat spectrum over 4 of 16 dimensions: 4, up to the epsilon.
  x = _with_singular_values([3.0, 3.0, 3.0, 3.0], n, d)
  assert label_free.rankme(x) == pytest.approx(_expected(np.full(4, 3.0), total_dims=16),
                                               rel=1e-6)
  assert label_free.rankme(x) == pytest.approx(4.0, abs=1e-4)
  # An uneven one: exp of the entropy of (8, 4, 2, 1, 1) / 16.
  s = np.array([8.0, 4.0, 2.0, 1.0, 1.0])
  x = _with_singular_values(s, n, d, seed=1)
  assert label_free.rankme(x) == pytest.approx(_expected(s, total_dims=16), rel=1e-6)
  p = s / 16
  assert label_free.rankme(x) == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=1e-4)
  # Rank one, and scale does not matter.
  x = _with_singular_values([5.0], n, d, seed=2)
  assert label_free.rankme(x) == pytest.approx(1.0, abs=1e-4)
  assert label_free.rankme(1e3 * x) == pytest.approx(label_free.rankme(x), rel=1e-6)


def test_rankme_gram_and_svd_paths_agree_and_bad_input_is_named():
  x = np.random.RandomState(3).randn(5000, 64).astype(np.float32)  # chunked gram
  s = np.linalg.svd(x.astype(np.float64), compute_uv=False)
  assert label_free.rankme(x) == pytest.approx(_expected(s), rel=1e-6)
  assert label_free.rankme(x.T) == pytest.approx(label_free.rankme(x), rel=1e-6)
  assert label_free.rankme(np.zeros((4, 3))) == 1.0
  x[7, 3] = np.nan
  with pytest.raises(ValueError, match="NaN or inf; the trunk diverged"):
    label_free.rankme(x)
  with pytest.raises(ValueError, match=r"non-empty \[N, D\] matrix"):
    label_free.rankme(np.zeros((0, 3)))


def test_spearman_on_hand_ranked_pairs():
  # d = (-1, 1, -1, 1, 0): rho = 1 - 6 * 4 / (5 * 24) = 0.8.
  assert label_free.spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
  assert label_free.spearman([10, 20, 30], [0.3, 0.2, 0.1]) == pytest.approx(-1.0)
  # Ties take mean ranks: (1, 2.5, 2.5, 4) against (1, 2, 3, 4): sqrt(0.9).
  assert label_free.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(np.sqrt(0.9))
  np.testing.assert_array_equal(label_free.ranks([3.0, 1.0, 3.0, 2.0]),
                                [3.5, 1.0, 3.5, 2.0])
  assert np.isnan(label_free.spearman([1, 2], [2, 1]))
  assert np.isnan(label_free.spearman([1, 1, 1], [1, 2, 3]))
  with pytest.raises(ValueError, match="pairs"):
    label_free.spearman([1, 2, 3], [1, 2])


def test_label_free_entries_merge_by_trunk_layer_and_split(tmp_path):
  x = _with_singular_values([1.0, 1.0], 10, 4)
  first = label_free.entry("trained@5", "fashion_mnist", "pre_logits", "val",
                           "adaptive_max", x)
  assert first == dict(trunk="trained@5", dataset="fashion_mnist", layer="pre_logits",
                       split="val", pooling="adaptive_max", examples=10, dim=4,
                       rankme=2.0, alpha_req=round(label_free.alpha_req(x), 4))
  results_lib.update(str(tmp_path), label_free=[first])
  # The same key replaces; another split adds; evaluations are untouched.
  results_lib.update(str(tmp_path), label_free=[dict(first, rankme=1.5),
                                                dict(first, split="test")])
  results_lib.update(str(tmp_path), evaluations=[dict(protocol="linear_lbfgs",
                                                      trunk="trained@5", top1=1.0)])
  saved = json.loads((tmp_path / "results.json").read_text())
  assert [(e["split"], e["rankme"]) for e in saved["label_free"]] == [
      ("val", 1.5), ("test", 2.0)]
  assert len(saved["evaluations"]) == 1
