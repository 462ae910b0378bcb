"""Representations on disk, keyed by everything that produced them.

Extracting ImageNet features of a wide trunk takes longer than fitting any
protocol on them, so features are written once next to the run and every
later protocol, L2 grid or low-data fraction reads them back (memory-mapped,
so a 42 GB matrix costs no RAM until a chunk of it is read).

An entry is one (split, layer) matrix. Its key is a hash of: the trunk's
fingerprint (checkpoint path, size and modification time, or a module's, or
the random-init seed and architecture), the dataset, split and its size, the
end point, the pooling, the preprocessing string, the storage dtype and, when
the trunk computed in bfloat16 or float16 (`extraction.precision`), that
compute dtype (the field is absent for float32: part of format 1, which
every cache on disk shares, so one float32 extraction has one hash). A new
checkpoint, a different pooling, pipeline or compute precision therefore
misses and re-extracts; nothing is ever invalidated by hand. Layout:

  <root>/<split>-<layer>-<hash16>/{key.json, features.npy [N, D], labels.npy [N]}

Entries appear atomically (written to a temporary directory, then renamed), so
an interrupted extraction leaves no half entry behind.
"""
import hashlib
import json
import os
import shutil
import tempfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from evaluation import representations
from self_supervision import task as task_lib
from training import preemption
from training import strategy as strategy_lib

FORMAT_VERSION = 1
DTYPES = ("float32", "float16")


def file_fingerprint(paths: Sequence[str]) -> List[Dict]:
  """[{name, size, mtime_ns}] of existing `paths`: changes when a file is rewritten."""
  out = []
  for p in sorted(paths):
    st = os.stat(p)
    out.append(dict(name=os.path.basename(p), size=st.st_size,
                    mtime_ns=st.st_mtime_ns))
  return out


class FeatureCache:
  """Feature matrices under `root`, one entry per (trunk, split, layer, ...)."""

  def __init__(self, root: str, dtype: str = "float32"):
    if dtype not in DTYPES:
      raise ValueError(f"Unknown feature cache dtype {dtype!r}; use one of "
                       f"{DTYPES} (float16 halves the disk and read time).")
    self.root, self.dtype = os.fspath(root), dtype
    self.hits = self.misses = 0
    # (task, model, (layers, pooling, compute_dtype), Extractor)
    self._extractor = None

  def key(self, *, trunk: Dict, dataset: str, split: str, num_examples: int,
          layer: str, pooling: str, preprocess: str,
          compute_dtype: str = "float32") -> Dict:
    """The identity of one entry (what its hash is taken of).

    compute_dtype: what the trunk computed in; format 1 records it only when
    it is not float32 (the hash of a float32 entry has no such field).
    """
    key = dict(version=FORMAT_VERSION, trunk=trunk, dataset=dataset,
               split=split, num_examples=int(num_examples), layer=layer,
               pooling=pooling, preprocess=preprocess, dtype=self.dtype)
    if compute_dtype != "float32":
      key["compute_dtype"] = compute_dtype
    return key

  def path(self, key: Dict) -> str:
    digest = hashlib.sha256(
        json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    safe_layer = key["layer"].replace("/", "_")
    return os.path.join(self.root, f"{key['split']}-{safe_layer}-{digest}")

  def load(self, key: Dict) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """(features [N, D] memory-mapped, labels int64 [N]), or None on a miss."""
    path = self.path(key)
    try:
      with open(os.path.join(path, "key.json")) as f:
        stored = json.load(f)
      features = np.load(os.path.join(path, "features.npy"), mmap_mode="r")
      labels = np.load(os.path.join(path, "labels.npy"))
    except (OSError, ValueError):
      return None
    n = key["num_examples"]
    if stored != key or features.shape[0] != n or labels.shape != (n,):
      return None
    return features, labels

  def get(self, task, model, dataset, split: str, layers: Sequence[str], *,
          trunk: Dict, pooling: str = "adaptive_max", batch_size: int = 256,
          strategy=None, compute_dtype: str = "float32",
          log: Callable[[str], None] = print
          ) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """Features of `layers` for `split`: cached ones read, the others extracted.

    Missing layers are extracted together in one pass over the split and
    stored before being returned. compute_dtype: what the trunk computes in
    ('float32', 'bfloat16', 'float16'; see representations.Extractor); part
    of the key, so features of two precisions never stand in for each other.

    Returns:
      ({layer: [N, D_layer] array (memory-mapped, self.dtype)}, int64 [N]).
    """
    pp = task.preprocess(task_lib.REPRESENTATION)
    n = dataset.num_examples(split)
    if not n:
      raise ValueError(f"The {split} split of {dataset.name} has no examples "
                       f"to read features of; evaluate on another split.")
    keys = {l: self.key(trunk=trunk, dataset=dataset.name, split=split,
                        num_examples=n, layer=l, pooling=pooling,
                        preprocess=pp, compute_dtype=compute_dtype)
            for l in layers}
    features, labels = {}, None
    missing = []
    for layer in layers:
      hit = self.load(keys[layer])
      if hit is None:
        missing.append(layer)
      else:
        features[layer], labels = hit
        self.hits += 1
    if missing:
      self.misses += len(missing)
      log(f"  extracting {', '.join(missing)} of {split} into {self.root}")
      fresh, labels = self._extract(task, model, dataset, split, missing,
                                    [keys[l] for l in missing], pooling,
                                    batch_size, strategy, compute_dtype, log)
      features.update(fresh)
    else:
      log(f"  features of {split} ({', '.join(layers)}) read from {self.root}")
    return {l: features[l] for l in layers}, labels

  def _extract(self, task, model, dataset, split, layers, keys, pooling,
               batch_size, strategy, compute_dtype, log):
    # One traced extractor serves every split of the same trunk. The memo
    # holds the task and model themselves (compared by identity), so they stay
    # alive and cannot be mistaken for a later object at the same address.
    memo = self._extractor
    settings = (tuple(layers), pooling, compute_dtype)
    if not (memo and memo[0] is task and memo[1] is model
            and memo[2] == settings):
      memo = (task, model, settings, representations.Extractor(
          task, model, layers, pooling=pooling, strategy=strategy,
          compute_dtype=compute_dtype))
      self._extractor = memo
    extractor = memo[3]
    n = keys[0]["num_examples"]
    if not strategy_lib.is_chief():
      return self._extract_as_worker(extractor, dataset, split, layers, keys,
                                     batch_size, strategy, log)
    os.makedirs(self.root, exist_ok=True)
    tmp_dirs = [tempfile.mkdtemp(prefix=".tmp-", dir=self.root) for _ in layers]
    writers = [None] * len(layers)
    # A split of ImageNet takes longer than a preemption's grace period; the
    # half-written entry goes with the temporary directories below.
    interrupt = preemption.check_inside(
        f"while extracting features of {split}",
        strategy_lib.num_workers(strategy or tf.distribute.get_strategy()))
    try:
      labels = np.empty([n], np.int64)
      row = 0
      for feats, lab in extractor.batches(dataset, split,
                                          batch_size=batch_size, log=log):
        if interrupt is not None:
          interrupt()
        if row + len(lab) > n:
          raise RuntimeError(f"{split} yields more than its {n} examples.")
        for i, f in enumerate(feats):
          if writers[i] is None:
            writers[i] = _RowWriter(os.path.join(tmp_dirs[i], "features.npy"),
                                    (n, f.shape[1]), self.dtype)
          writers[i].write(f)
        labels[row:row + len(lab)] = lab
        row += len(lab)
      for w in writers:
        w.close()
      out = {}
      for layer, key, tmp in zip(layers, keys, tmp_dirs):
        np.save(os.path.join(tmp, "labels.npy"), labels)
        with open(os.path.join(tmp, "key.json"), "w") as f:
          json.dump(key, f, indent=1, sort_keys=True)
        final = self.path(key)
        if os.path.exists(final):  # stale or broken entry under the same key
          shutil.rmtree(final)
        os.replace(tmp, final)
        hit = self.load(key)
        if hit is None:
          raise RuntimeError(f"Feature cache entry {final} did not read back.")
        out[layer] = hit[0]
    except OSError as e:
      # A full disk or a read-only workdir: the path, not the protocol whose
      # call it happened in, is what the user can act on.
      raise OSError(
          e.errno, f"Could not write features of {split} into {self.root} "
          f"({e.strerror or e}): is the disk full or the workdir read-only? "
          f"Free space and rerun the same command; finished entries are "
          f"kept.") from None
    else:
      # The other workers read these entries next (_extract_as_worker).
      strategy_lib.barrier(strategy or tf.distribute.get_strategy())
      return out, labels
    finally:
      for w in writers:
        if w is not None:
          w.abort()
      for tmp in tmp_dirs:
        shutil.rmtree(tmp, ignore_errors=True)

  def _extract_as_worker(self, extractor, dataset, split, layers, keys,
                         batch_size, strategy, log):
    """A non-chief worker's share of an extraction: its shard of every batch
    runs here (the chief gathers them all and writes the entries); then it
    reads the chief's entries."""
    for _ in extractor.batches(dataset, split, batch_size=batch_size, log=log):
      pass
    strategy_lib.barrier(strategy or tf.distribute.get_strategy())
    out, labels = {}, None
    for layer, key in zip(layers, keys):
      hit = self.load(key)
      if hit is None:
        raise RuntimeError(
            f"The chief wrote the feature cache entry {self.path(key)}, but "
            f"this worker cannot read it: put the workdir on a filesystem "
            f"every worker shares (NFS, GCS).")
      out[layer], labels = hit
    return out, labels


class _RowWriter:
  """Writes a [N, D] .npy file row block by row block, in order.

  Plain sequential writes, not a writable memmap: filling a fresh memmap
  page-faults on every 4 KB page, which measured 0.22 s against 0.03 s for
  the same 113 MB (Fashion-MNIST train at D = 512) on this machine, as much as
  3% of the demo trunk's whole forward pass. The file is fsync'ed before the
  entry is renamed into place, as the memmap was flushed.
  """

  def __init__(self, path: str, shape: Tuple[int, int], dtype: str):
    self.shape, self.dtype = shape, np.dtype(dtype)
    self.rows = 0
    self._file = open(path, "wb")
    np.lib.format.write_array_header_1_0(self._file, dict(
        descr=np.lib.format.dtype_to_descr(self.dtype), fortran_order=False,
        shape=shape))

  def write(self, block: np.ndarray):
    """Appends rows: `block` is [b, D]; converted to the file's dtype."""
    if block.ndim != 2 or block.shape[1] != self.shape[1]:
      raise ValueError(f"Expected rows of width {self.shape[1]}, got a block "
                       f"of shape {block.shape}.")
    if self.rows + block.shape[0] > self.shape[0]:
      raise RuntimeError(f"More than the {self.shape[0]} rows of this entry.")
    self._file.write(np.ascontiguousarray(block, self.dtype).data)
    self.rows += block.shape[0]

  def close(self):
    if self.rows != self.shape[0]:
      raise RuntimeError(f"Wrote {self.rows} of {self.shape[0]} rows.")
    self._file.flush()
    os.fsync(self._file.fileno())
    self._file.close()

  def abort(self):
    if not self._file.closed:
      self._file.close()


def split_parts(dataset, split: str) -> Optional[Tuple[str, ...]]:
  """The splits `split` concatenates in order (the dataset's `split_parts`),
  or None: datasets that do not declare any are read split by split."""
  parts = getattr(dataset, "split_parts", None)
  return parts(split) if parts is not None else None


def read_splits(trunk, dataset, splits: Sequence[str], layers: Sequence[str], *,
                pooling: str = "adaptive_max", batch_size: int = 256,
                cache: Optional[FeatureCache] = None, strategy=None,
                log: Callable[[str], None] = print
                ) -> Dict[str, Tuple[Dict[str, np.ndarray], np.ndarray]]:
  """{split: ({layer: [N, D]}, labels [N])} for a `trunks.Trunk`.

  Through `cache` when given (read or extract-and-store), otherwise extracted
  into memory with one extractor (one trace) for all splits. The trunk
  computes in the precision gin's `extraction.precision` resolves to
  (representations.extraction_dtype); the features are float32 (or the
  cache's dtype) whatever it is.

  A split the dataset declares as the concatenation of others (trainval =
  train then val) is read as those parts and concatenated (in memory): the
  L-BFGS protocol reads train and val anyway, and a trunk's features of an
  image do not depend on the split it is read in, so trainval costs no pass
  of its own (on ImageNet, a whole pass over the training set per trunk).
  """
  splits = list(dict.fromkeys(splits))
  read = list(dict.fromkeys(
      part for s in splits for part in (split_parts(dataset, s) or (s,))))
  dtype = representations.extraction_dtype(trunk.task, trunk.model, strategy,
                                           log=log)
  if cache is not None:
    got = {s: cache.get(trunk.task, trunk.model, dataset, s, layers,
                        trunk=trunk.fingerprint, pooling=pooling,
                        batch_size=batch_size, strategy=strategy,
                        compute_dtype=dtype, log=log)
           for s in read}
  else:
    extractor = representations.Extractor(trunk.task, trunk.model, layers,
                                          pooling=pooling, strategy=strategy,
                                          compute_dtype=dtype)
    got = {s: extractor(dataset, s, batch_size=batch_size, log=log)
           for s in read}
  out = {}
  for s in splits:
    parts = split_parts(dataset, s)
    if parts is None:
      out[s] = got[s]
      continue
    labels = np.concatenate([got[p][1] for p in parts])
    if len(labels) != dataset.num_examples(s):
      raise RuntimeError(
          f"{dataset.name}: {s} should be {' + '.join(parts)}, but they hold "
          f"{len(labels)} examples, not {dataset.num_examples(s)}: the "
          f"dataset's split_parts does not describe its splits.")
    out[s] = ({l: np.concatenate([got[p][0][l] for p in parts])
               for l in layers}, labels)
    log(f"  features of {s}: {' + '.join(parts)}, concatenated")
  return out
