"""The report's controls on synthetic results documents: standard errors, the
marks, the opening count, failed fits, alpha-ReQ and permutation p-values."""
import json
import math
import os

import numpy as np
import pytest

from evaluation import label_free
from study.report import controls
from test_make_report import build, entry, make_run, table_rows

N = 10_000  # the scored split's size in every entry below


def _scored(top1, **kw):
  return entry(top1, eval_examples=N, num_classes=10, dataset="fashion_mnist", **kw)


def test_standard_errors_and_the_two_standard_error_rule():
  assert controls.standard_error(_scored(90.0)) == pytest.approx(0.3)
  over_seeds = dict(_scored(90.0), seeds=[0, 1, 2], top1_std=0.6)
  assert controls.standard_error(over_seeds) == pytest.approx(math.sqrt(0.09 + 0.12))
  assert controls.standard_error(entry(90.0)) is None  # no split size recorded
  pixels, random = _scored(86.0), _scored(85.0)
  # 86.5 - 86.0 = 0.5 < 2 * hypot(0.342, 0.347) = 0.974: not beaten.
  assert controls.beats(_scored(86.5), pixels) is False
  assert controls.beats(_scored(87.0), pixels) is True  # 1.0 > 0.97
  assert controls.verdict(_scored(90.0), dict(pixels=pixels, random=random)) is True
  assert controls.verdict(_scored(86.5), dict(pixels=pixels, random=random)) is False
  assert controls.verdict(_scored(90.0), dict(pixels=pixels)) is None
  assert controls.entry_text(_scored(90.0)) == "90.0 ± 0.3"


def test_a_fit_that_never_left_chance_is_a_failure():
  at_chance_loss = dict(entry(9.3), curve=[dict(epoch=1, train_loss=math.log(10))])
  assert controls.failed_fit(at_chance_loss)  # C read off the loss itself
  assert controls.failed_fit(_scored(11.0))  # within 1 point of 1/C
  assert not controls.failed_fit(_scored(11.5))
  learning = dict(_scored(60.0), curve=[dict(epoch=1, train_loss=1.2)])
  assert not controls.failed_fit(learning)
  assert not controls.failed_fit(entry(10.0))  # no C known: not judged


def test_alpha_req_of_constructed_spectra():
  assert label_free.alpha_from_spectrum(
      [k ** -1.5 for k in range(1, 6)]) == pytest.approx(1.5)
  # Rows +c_d e_d and -c_d e_d: centred, covariance diag(c_d^2) / 6.
  c = np.arange(1, 7) ** -1.0
  x = np.concatenate([np.diag(c), -np.diag(c)])
  np.testing.assert_allclose(label_free.eigenspectrum(x), c ** 2 / 6)
  assert label_free.alpha_req(x) == pytest.approx(2.0)
  assert math.isnan(label_free.alpha_from_spectrum([1.0, 0.0, 0.0]))
  # Exact over all 4! pairings: only the two orders give |rho| = 1.
  assert label_free.permutation_p([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(2 / 24)
  assert label_free.permutation_p(list(range(10)), list(range(10))) == (
      pytest.approx(1 / 10001))


def test_the_report_marks_cells_against_their_controls(tmp_path):
  root = tmp_path / "sweep"
  mlp_at_chance = _scored(9.3, protocol="mlp_sgd_features",
                          curve=[dict(epoch=e, train_loss=math.log(10))
                                 for e in (1, 2)])
  make_run(root, "exemplar/revnet50_k1", "exemplar", "revnet50", 1, None,
           extra_entries=[_scored(10.2)])
  make_run(root, "jigsaw/revnet50_k1", "jigsaw", "revnet50", 1, None,
           extra_entries=[_scored(86.5)])
  make_run(root, "rotation/revnet50_k1", "rotation", "revnet50", 1, None,
           extra_entries=[_scored(90.0), _scored(85.0, trunk="random_init"),
                          _scored(86.0, trunk="pixels", layer="pixels"),
                          mlp_at_chance])
  report, _ = build(root)
  assert report.splitlines()[2] == (
      "**1 of 3 trained cells beat both controls** (pixels and the random trunk "
      "of the same architecture and width, by more than 2 standard errors).")
  header, rows = table_rows(report, "Table 1 layout: fashion_mnist")
  cells = dict(zip(header, rows["RevNet50"]))
  assert cells == {"Rotation k=1": "<u>[90.0](#run-3)</u>",
                   "Exemplar k=1": "[failed](#run-1)",
                   "Jigsaw k=1": "[86.5](#run-2)°",
                   "Rnd k=1": "[85.0](#run-3)†"}
  assert "Controls: pixels 86.0 ± 0.3 (`linear_lbfgs` on `val`)" in report
  # The MLP at chance is in no figure or correlation.
  assert "Failed fits (never left chance; in no point, correlation or ranking): " \
         "[run-3](#run-3)." in report
  assert "Spearman ρ(linear, MLP)" not in report


def test_alpha_req_is_correlated_like_rankme(tmp_path):
  root = tmp_path / "sweep"
  # Every pretext accuracy is 0.5 (constant): no rho for it.
  for arch, top1, alpha in (("revnet50", 30.0, 3.0), ("resnet50_v1", 40.0, 2.0),
                            ("vgg19_bn", 50.0, 1.0)):
    workdir = make_run(root, f"rot/{arch}", "rotation", arch, 1, top1, rankme=top1)
    path = os.path.join(workdir, "results.json")
    with open(path) as f:
      doc = json.load(f)
    doc["label_free"][0]["alpha_req"] = alpha
    with open(path, "w") as f:
      json.dump(doc, f)
  report, _ = build(root)
  row = next(l for l in report.splitlines() if l.startswith("| task: Rotation"))
  assert [c.strip() for c in row.split("|")[2:6]] == [
      "3", "n/a (constant)", "1.00 (n=3, p=0.33)", "-1.00 (n=3, p=0.33)"]


def test_low_data_controls_match_pre_logits_by_its_size_and_fig7_by_fraction(tmp_path):
  root = tmp_path / "sweep"
  pooled = lambda n: dict(pool_to_features=n)  # noqa: E731

  def low(top1, n, settings=None, **kw):
    return _scored(top1, fraction=0.1, features=n, settings=settings, **kw)
  # The Rnd run's later evaluations inherited Fig. 5's pool_to_features = 512:
  # its 512-d pre_logits is unchanged by it, so it is the cell's control; a
  # pre_logits pooled to 256 is another representation and is not.
  make_run(root, "rnd/revnet50_k1", "rotation", "revnet50", 1, None, steps=0,
           extra_entries=[_scored(85.0, trunk="trained@0", features=512),
                          low(80.0, 512, pooled(512), trunk="trained@0"),
                          low(79.0, 256, pooled(256), trunk="trained@0"),
                          _scored(86.0, trunk="pixels", layer="pixels"),
                          low(81.0, 3072, trunk="pixels", layer="pixels")])
  make_run(root, "rotation/revnet50_k1", "rotation", "revnet50", 1, None,
           extra_entries=[_scored(90.0, features=512), low(83.0, 512),
                          low(84.0, 256, pooled(256))])
  out = tmp_path / "report"
  report, _ = build(root, out)
  from study.report import baselines, runs as report_runs
  runs, _ = report_runs.load_runs(str(root))
  rotation = next(r for r in runs if r.task == "rotation")
  by_top1 = {e["top1"]: e for e in rotation.evaluations}
  found = baselines.controls_for(runs, rotation, by_top1[83.0])
  assert (found["random"]["top1"], found["pixels"]["top1"]) == (80.0, 81.0)
  assert baselines.controls_for(runs, rotation, by_top1[84.0])["random"]["top1"] == 79.0
  # 83.0 - 81.0 = 2.0 > 2 * hypot(0.376, 0.392) = 1.09: above both.
  assert baselines.mark_for(runs, rotation, by_top1[83.0]) == ""
  assert ("With 10% of the labels (`linear_lbfgs`, pre_logits; pixels 81.0 ± 0.4): 1 of "
          "1 trained cells beat both controls scored alike (Rotation, RevNet50 k=1: "
          "83.0 ± 0.4, +2.0 ± 0.5 over pixels (81.0)).\n") in report
  # One width: Fig. 7 is drawn by labelled fraction, not on a one-tick width axis.
  assert ("*Fig. 7: linear top-1 % by labelled fraction of train (one width), one "
          "panel per task;") in report
  assert (out / "figures" / "fig7_low_data.png").read_bytes()[:4] == b"\x89PNG"
