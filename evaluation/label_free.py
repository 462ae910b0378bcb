"""Label-free measures of a representation, and the rank statistics that judge them.

The paper (Sec. 4.4) finds that pretext accuracy predicts downstream accuracy
within one architecture but not across architectures, which leaves open how to
pick a trunk without downstream labels. Every run records, for each evaluated
trunk, RankMe (Garrido et al. 2023, "RankMe: Assessing the downstream
performance of pretrained self-supervised representations by their rank") of
its `pre_logits` on the held-out split; the report (python -m study.report)
sets it and the pretext accuracy against downstream accuracy with Spearman's
rank correlation.

numpy only: the report builder imports this without TensorFlow.
"""
from typing import Dict, Sequence

import numpy as np

# Garrido et al.'s epsilon: keeps log(p) finite for zero singular values.
RANKME_EPS = 1e-7


def rankme(features: np.ndarray, eps: float = RANKME_EPS) -> float:
  """RankMe of an embedding matrix: exp of the entropy of its normalised spectrum.

  Args:
    features: [N, D] representations of N held-out images.
    eps: added to each normalised singular value, as in Garrido et al.

  Returns:
    exp(-sum_k p_k log p_k) with p_k = s_k / sum(s) + eps, s the singular
    values of `features` (the square roots of the eigenvalues of its
    second-moment matrix features^T features): between 1 (one direction) and
    min(N, D) (a flat spectrum). Like the paper, the matrix is not centred.
  """
  if features.ndim != 2 or min(features.shape) == 0:
    raise ValueError(
        f"rankme needs a non-empty [N, D] matrix, got shape {features.shape}.")
  n, d = features.shape
  if n >= d:
    # ImageNet's held-out split is 50,000 x up to 16,384: the D x D second-moment
    # matrix, summed in float64 chunks, costs far less memory than an SVD of X.
    gram = np.zeros((d, d), np.float64)
    for start in range(0, n, 4096):
      chunk = np.asarray(features[start:start + 4096], np.float64)
      _check_finite(chunk)
      gram += chunk.T @ chunk
    s = np.sqrt(np.clip(np.linalg.eigvalsh(gram), 0.0, None))
  else:
    x = np.asarray(features, np.float64)
    _check_finite(x)
    s = np.linalg.svd(x, compute_uv=False)
  total = s.sum()
  if total == 0:
    return 1.0  # all-zero features: one (degenerate) direction, by convention
  p = s / total + eps
  return float(np.exp(-np.sum(p * np.log(p))))


def _check_finite(x):
  if not np.all(np.isfinite(x)):
    raise ValueError("rankme: the features hold NaN or inf; the trunk diverged "
                     "(its training log names the step).")


def ranks(values: Sequence[float]) -> np.ndarray:
  """1-based ranks, ties given the mean of the ranks they span ([N] floats)."""
  v = np.asarray(values, np.float64)
  order = np.argsort(v, kind="mergesort")
  sorted_v = v[order]
  out = np.empty(len(v), np.float64)
  i = 0
  while i < len(v):
    j = i
    while j + 1 < len(v) and sorted_v[j + 1] == sorted_v[i]:
      j += 1
    out[order[i:j + 1]] = (i + j) / 2.0 + 1.0
    i = j + 1
  return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
  """Spearman's rank correlation of paired values (ties: mean ranks).

  NaN when there are fewer than 3 pairs or either side is constant: no
  ranking to compare, which the report prints as such.
  """
  if len(a) != len(b):
    raise ValueError(f"spearman needs pairs: {len(a)} vs {len(b)} values.")
  if len(a) < 3:
    return float("nan")
  ra, rb = ranks(a), ranks(b)
  ra, rb = ra - ra.mean(), rb - rb.mean()
  denom = np.sqrt(np.sum(ra * ra) * np.sum(rb * rb))
  if denom == 0:
    return float("nan")
  return float(np.sum(ra * rb) / denom)


def entry(trunk_name: str, dataset: str, layer: str, split: str, pooling: str,
          features: np.ndarray) -> Dict:
  """The results.json record of one trunk's label-free measures."""
  return dict(trunk=trunk_name, dataset=dataset, layer=layer, split=split,
              pooling=pooling, examples=int(features.shape[0]),
              dim=int(features.shape[1]), rankme=round(rankme(features), 3))
