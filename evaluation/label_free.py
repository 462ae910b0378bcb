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
import itertools
from typing import Dict, Sequence

import numpy as np

# Garrido et al.'s epsilon: keeps log(p) finite for zero singular values.
RANKME_EPS = 1e-7
# Eigenvalues below this fraction of the largest are float noise, not decay.
ALPHA_REQ_RTOL = 1e-10


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


def eigenspectrum(features: np.ndarray) -> np.ndarray:
  """Eigenvalues of the covariance of `features` [N, D] (centred, / N), in
  decreasing order, in float64 ([min(N, D)])."""
  if features.ndim != 2 or min(features.shape) < 2:
    raise ValueError(f"The eigenspectrum needs an [N, D] matrix with N, D >= 2, "
                     f"got shape {features.shape}.")
  n, d = features.shape
  mean = np.zeros(d, np.float64)
  for start in range(0, n, 4096):
    mean += np.asarray(features[start:start + 4096], np.float64).sum(axis=0)
  mean /= n
  gram = np.zeros((d, d), np.float64)
  for start in range(0, n, 4096):
    chunk = np.asarray(features[start:start + 4096], np.float64) - mean
    _check_finite(chunk)
    gram += chunk.T @ chunk
  eigenvalues = np.clip(np.linalg.eigvalsh(gram / n), 0.0, None)[::-1]
  return eigenvalues[:min(n, d)]


def alpha_from_spectrum(eigenvalues: Sequence[float],
                        rtol: float = ALPHA_REQ_RTOL) -> float:
  """The power-law decay exponent alpha of a spectrum, lambda_k ~ k^-alpha.

  The least-squares slope of log lambda_k against log k (k = 1, 2, ...),
  negated, over the eigenvalues above `rtol` times the largest (the rest are
  rounding noise, whose logarithms would dominate the fit). NaN when fewer
  than 2 are left.
  """
  lam = np.sort(np.asarray(eigenvalues, np.float64))[::-1]
  if not len(lam) or lam[0] <= 0:
    return float("nan")
  lam = lam[lam > rtol * lam[0]]
  if len(lam) < 2:
    return float("nan")
  log_k = np.log(np.arange(1, len(lam) + 1))
  slope = np.polyfit(log_k, np.log(lam), 1)[0]
  return float(-slope)


def alpha_req(features: np.ndarray, rtol: float = ALPHA_REQ_RTOL) -> float:
  """alpha-ReQ (Agrawal et al. 2022, "alpha-ReQ: Assessing representation
  quality in self-supervised learning by measuring eigenspectrum decay"):
  the decay exponent of the covariance eigenspectrum of `features` [N, D]
  (alpha_from_spectrum of eigenspectrum). Near 1 the paper finds the best
  downstream accuracy: smaller spreads the variance over noise directions,
  larger collapses it onto a few."""
  return alpha_from_spectrum(eigenspectrum(features), rtol)


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


def permutation_p(a: Sequence[float], b: Sequence[float],
                  permutations: int = 10000, seed: int = 0) -> float:
  """Two-sided permutation p-value of Spearman's rho of paired values.

  The fraction of pairings of `b` with `a` whose |rho| is at least the
  observed one: every pairing when n <= 7 (n! <= 5040, exact), else
  `permutations` random ones (seeded; the observed pairing counts as one,
  so p >= 1 / (permutations + 1)). NaN where spearman is.
  """
  observed = spearman(a, b)
  if observed != observed:
    return float("nan")
  ra, rb = ranks(a), ranks(b)
  ra, rb = ra - ra.mean(), rb - rb.mean()
  denom = np.sqrt(np.sum(ra * ra) * np.sum(rb * rb))
  target = abs(observed) * denom - 1e-9 * denom
  n = len(ra)
  if n <= 7:
    orders = np.array(list(itertools.permutations(range(n))))
    hits = np.sum(np.abs(rb[orders] @ ra) >= target)
    return float(hits / len(orders))
  rng = np.random.RandomState(seed)
  orders = np.argsort(rng.rand(permutations, n), axis=1)
  hits = np.sum(np.abs(rb[orders] @ ra) >= target)
  return float((hits + 1) / (permutations + 1))


def entry(trunk_name: str, dataset: str, layer: str, split: str, pooling: str,
          features: np.ndarray) -> Dict:
  """The results.json record of one trunk's label-free measures: RankMe and
  alpha-ReQ (None when the spectrum has fewer than 2 usable eigenvalues)."""
  alpha = alpha_req(features) if min(features.shape) >= 2 else float("nan")
  return dict(trunk=trunk_name, dataset=dataset, layer=layer, split=split,
              pooling=pooling, examples=int(features.shape[0]),
              dim=int(features.shape[1]), rankme=round(rankme(features), 3),
              alpha_req=None if alpha != alpha else round(alpha, 4))
