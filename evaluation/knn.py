"""The kNN protocol (Wu et al. 2018, "Unsupervised feature learning via
non-parametric instance discrimination"): weighted nearest-neighbour votes on
cached features.

Features are L2-normalised and compared by cosine similarity; each of the k
nearest `train_split` examples votes for its label with weight
exp(similarity / temperature) (0.07, as Wu et al.); the class with the largest
vote is the prediction. Nothing is fitted and no hyperparameter is chosen on
the scored split: k and the temperature are fixed beforehand.

The train features stream from the feature cache in chunks of `chunk_rows`
(a memory-mapped matrix costs no RAM until a chunk is read), each chunk
compared with every query on whatever device TensorFlow places the matmul on
(the accelerator when there is one), keeping the running k largest
similarities per query. Ties go to the earlier train example, as in a stable
sort of the whole matrix.
"""
import time
from typing import Callable, Dict, List, Optional, Sequence

import gin
import numpy as np
import tensorflow as tf

from datasets import low_data
from evaluation import feature_cache

PROTOCOL = "knn"


def _normalise(x: np.ndarray) -> tf.Tensor:
  """[n, D] rows scaled to unit L2 norm (zero rows stay zero), float32."""
  x = tf.convert_to_tensor(np.asarray(x, np.float32))
  return tf.math.l2_normalize(x, axis=1)


@tf.function(reduce_retracing=True)
def _merge(top_sims, top_index, queries, train, train_index):
  """Running top-k: [q, k] state merged with the similarities to a train chunk.

  The state comes first in the concatenation and top_k prefers lower indices
  among equal values, so ties keep the earlier train example.
  """
  sims = tf.matmul(queries, train, transpose_b=True)  # [q, n]
  all_sims = tf.concat([top_sims, sims], axis=1)
  index = tf.broadcast_to(train_index[None, :], tf.shape(sims))
  all_index = tf.concat([top_index, index], axis=1)
  values, order = tf.math.top_k(all_sims, k=tf.shape(top_sims)[1])
  return values, tf.gather(all_index, order, batch_dims=1)


def nearest(train_x, query_x, k: int, *, chunk_rows: int = 8192,
            query_rows: int = 4096):
  """The k most cosine-similar train rows of every query, ties to the lower index.

  Args:
    train_x: [N, D] features (an array or a memory map: read chunk by chunk).
    query_x: [Q, D] features.
    k: neighbours per query (at most N).

  Returns:
    (similarities [Q, k] float32 in descending order, train row indices [Q, k]
    int64).
  """
  n = len(train_x)
  if not 1 <= k <= n:
    raise ValueError(f"knn: k = {k} needs 1 <= k <= {n} (the train examples).")
  queries = _normalise(query_x)
  q = int(queries.shape[0])
  top_sims = [tf.fill([min(query_rows, q - s), k], -np.inf) for s in range(0, q, query_rows)]
  top_index = [tf.zeros([min(query_rows, q - s), k], tf.int64)
               for s in range(0, q, query_rows)]
  for start in range(0, n, chunk_rows):
    train = _normalise(train_x[start:start + chunk_rows])
    index = tf.range(start, start + int(train.shape[0]), dtype=tf.int64)
    for i, qs in enumerate(range(0, q, query_rows)):
      top_sims[i], top_index[i] = _merge(top_sims[i], top_index[i],
                                         queries[qs:qs + query_rows], train, index)
  return (tf.concat(top_sims, 0).numpy(), tf.concat(top_index, 0).numpy())


def neighbours(train_x, train_y: np.ndarray, query_x, k: int, *,
               chunk_rows: int = 8192, query_rows: int = 4096):
  """The k most cosine-similar train examples of every query.

  Args:
    train_x: [N, D] features (an array or a memory map: read chunk by chunk).
    train_y: [N] int labels.
    query_x: [Q, D] features.
    k: neighbours per query (at most N).

  Returns:
    (similarities [Q, k] float32 in descending order, labels [Q, k] int32).
  """
  sims, index = nearest(train_x, query_x, k, chunk_rows=chunk_rows,
                        query_rows=query_rows)
  return sims, np.asarray(train_y, np.int32)[index]


def vote(similarities: np.ndarray, labels: np.ndarray, num_classes: int,
         temperature: float) -> np.ndarray:
  """[Q, num_classes] class scores: sum of exp(sim / T) over neighbours per label."""
  weights = np.exp((similarities.astype(np.float64) - 1.0) / temperature)
  # exp((s - 1) / T) is exp(s / T) scaled by a constant: the same ranking,
  # without overflow at small temperatures.
  scores = np.zeros((labels.shape[0], num_classes), np.float64)
  np.add.at(scores, (np.arange(labels.shape[0])[:, None], labels), weights)
  return scores


def accuracy(scores: np.ndarray, y: np.ndarray, k: int) -> float:
  """Fraction of rows whose label is among the k highest scores (ties: lower
  class index first)."""
  order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
  return float(np.mean(np.any(order == np.asarray(y)[:, None], axis=1)))


@gin.configurable("knn_eval", denylist=["trunk", "dataset", "strategy", "cache",
                                        "log"])
def evaluate(trunk, dataset, *, layers: Sequence[str] = ("pre_logits",),
             train_split: str = "train", eval_split: str = "val",
             ks: Sequence[int] = (20, 200), temperature: float = 0.07,
             pooling: str = "adaptive_max", fraction: float = 1.0,
             subset_seed: int = 0, batch_size: int = 256,
             chunk_rows: int = 8192,
             cache: Optional[feature_cache.FeatureCache] = None,
             strategy=None, log: Callable[[str], None] = print) -> List[Dict]:
  """kNN top-1/top-5 of `trunk`'s layers on `eval_split` against `train_split`.

  ks: neighbour counts; the entry's top1/top5 are the first k's, `by_k` has
  every one's.
  fraction: a class-balanced fraction of `train_split` as the labelled
  neighbours (the low-data regime), chosen by `subset_seed`.

  Returns one results entry per layer: {protocol 'knn', trunk, layer, pooling,
  train_split, eval_split, fraction, top1, top5 (percent), by_k
  {k: {top1, top5}}, hyperparameters, extract_time_s, fit_time_s}.
  """
  fraction = low_data.check_fraction(fraction)
  ks = [int(k) for k in ks]
  if not ks or min(ks) < 1:
    raise ValueError(f"knn_eval.ks = {ks}: give positive neighbour counts, e.g. "
                     f"[20, 200].")
  if temperature <= 0:
    raise ValueError(f"knn_eval.temperature = {temperature}: must be > 0 (Wu et "
                     f"al.: 0.07).")
  t0 = time.time()
  split_features = feature_cache.read_splits(
      trunk, dataset, [train_split, eval_split], layers, pooling=pooling,
      batch_size=batch_size, cache=cache, strategy=strategy, log=log)
  t_extracted = time.time()
  train_y = split_features[train_split][1]
  eval_y = split_features[eval_split][1]
  rows = None
  if fraction < 1.0:
    rows = low_data.balanced_subset(train_y, fraction, subset_seed)
    log(f"  low-data: {len(rows)} of {len(train_y)} {train_split} neighbours "
        f"({100 * fraction:g}%, balanced, seed {subset_seed})")
    train_y = train_y[rows]
  top5_k = min(5, dataset.num_classes)
  entries = []
  for layer in layers:
    start = time.time()
    train_x = split_features[train_split][0][layer]
    if rows is not None:
      train_x = np.asarray(train_x[rows], np.float32)
    kmax = min(max(ks), len(train_y))
    sims, labels = neighbours(train_x, train_y, split_features[eval_split][0][layer],
                              kmax, chunk_rows=chunk_rows)
    by_k = {}
    for k in ks:
      kk = min(k, kmax)
      scores = vote(sims[:, :kk], labels[:, :kk], dataset.num_classes, temperature)
      by_k[str(k)] = dict(top1=round(100.0 * accuracy(scores, eval_y, 1), 4),
                          top5=round(100.0 * accuracy(scores, eval_y, top5_k), 4))
    first = by_k[str(ks[0])]
    log(f"  {PROTOCOL} [{trunk.name}] {layer}: {eval_split} "
        + ", ".join(f"k={k} top-1 {v['top1']:.2f}%" for k, v in by_k.items()))
    entries.append(dict(
        protocol=PROTOCOL, trunk=trunk.name, layer=layer, pooling=pooling,
        train_split=train_split, eval_split=eval_split, fraction=fraction,
        top1=first["top1"], top5=first["top5"], by_k=by_k,
        hyperparameters=dict(ks=ks, temperature=temperature, similarity="cosine",
                             selected_on=None, subset_seed=subset_seed,
                             train_examples=int(len(train_y))),
        extract_time_s=round(t_extracted - t0, 2),
        fit_time_s=round(time.time() - start, 2)))
  return entries
