"""The claims' controls on synthetic results documents: the marks and control
rows of Table 2 and the figures, '≈' in the linear-vs-MLP rankings, Fig. 5 at
equal dimension, Fig. 6's 2-SE steps, MLP convergence; the miniature Fig. 6 grid."""
import os

import gin
import pytest

import run_lib  # noqa: F401  (registers experiment.* and every configurable a run binds)

from study.grid import cells as study_cells
from study.grid import grids
from study.report import baselines
from study.report import claims
from study.report import runs as report_runs
from test_make_report import build, entry, make_run, table_rows
from training import config as config_lib

N = 10_000  # every entry's scored split: SE(90%) = 0.3, SE(50%) = 0.5


def scored(top1, **kw):
  return entry(top1, eval_examples=N, num_classes=10, dataset="fashion_mnist", **kw)


def mlp(top1, curve=None, **kw):
  return scored(top1, protocol="mlp_sgd_features", curve=curve or [], **kw)


def curve_of(*top1s):
  return [dict(epoch=e + 1, step=e, top1=t, top5=99.0, train_loss=1.0)
          for e, t in enumerate(top1s)]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
  """Rotation on three trunks with linear, MLP, layers, controls; Fig. 6 runs."""
  root = tmp_path_factory.mktemp("claims") / "sweep"
  pixels = [scored(86.0, trunk="pixels", layer="pixels"),
            mlp(86.0, trunk="pixels", layer="pixels"),
            scored(80.0, trunk="pixels", layer="pixels", protocol="linear_sgd",
                   eval_split="test")]
  # RevNet50: 90 linear / 91 MLP (converged), random 85 / 85.
  make_run(root, "rot/revnet50", "rotation", "revnet50", 2, None, extra_entries=[
      scored(90.0), mlp(91.0, curve_of(80.0, 90.8, 91.0, 91.0, 91.0)),
      scored(85.0, trunk="random_init"), mlp(85.0, trunk="random_init"),
      scored(88.0, protocol="linear_sgd", eval_split="test"),
      scored(83.0, trunk="random_init", protocol="linear_sgd", eval_split="test"),
      *pixels])
  # ResNet50 v1: 89.8 (within 2 SE of RevNet50) / 92.0 (still improving: not
  # converged, +3.0 over its last 20% of epochs).
  make_run(root, "rot/resnet50_v1", "rotation", "resnet50_v1", 2, None,
           extra_entries=[scored(89.8), mlp(92.0, curve_of(70.0, 80.0, 85.0, 89.0,
                                                            92.0))])
  # VGG19-BN: 86.3 linear, below pixels + 2 SE: marked °.
  make_run(root, "rot/vgg19_bn", "rotation", "vgg19_bn", 2, None,
           extra_entries=[scored(86.3), mlp(87.5)])
  # Fig. 5: four layers of ResNet50 v2 pooled to 2048, with its random trunk's.
  layers = ("block1", "block2", "block3", "pre_logits")
  equal = dict(settings=dict(pool_to_features=2048))
  make_run(root, "fig5/resnet50_v2", "rotation", "resnet50_v2", 1, None,
           extra_entries=[scored(v, layer=l, **equal)
                          for v, l in zip((88.0, 89.0, 87.0, 84.0), layers)]
           + [scored(v, layer=l, trunk="random_init", **equal)
              for v, l in zip((87.5, 86.0, 84.0, 80.0), layers)]
           + [scored(70.0, layer="block1")])  # its own size: another series
  # Fig. 6: k = 1, 2 x size 512, 2048; each with its own random trunk.
  for (k, size), (top1, rnd) in {(1, 512): (86.0, 84.0), (1, 2048): (88.0, 85.0),
                                 (2, 512): (86.5, 86.0), (2, 2048): (90.0, 87.0)}.items():
    make_run(root, f"fig6/k{k}_r{size}", "rotation", "revnet50", k, None,
             gin=f"get_model.representation_size = {size}\n",
             extra_entries=[scored(top1), scored(rnd, trunk="random_init")])
  text, summary = build(root)
  return root, text, summary


def test_the_controls_of_a_figures_point_are_scored_like_it(report):
  root, _, _ = report
  runs, _ = report_runs.load_runs(str(root))
  fig5 = next(r for r in runs if r.rel == "fig5/resnet50_v2")
  block1 = next(e for e in fig5.evaluations if e["layer"] == "block1"
                and e["trunk"] == "trained@100" and baselines.pooled_to(e))
  found = baselines.controls_for(runs, fig5, block1)
  assert found["random"]["top1"] == 87.5  # the random trunk at 2048 too
  assert found["pixels"]["top1"] == 86.0  # the pixels keep their own size
  assert found["supervised"] is None
  # 88.0 vs 87.5: 0.5 < 2 * hypot(0.325, 0.331): not above its random trunk.
  assert baselines.mark_for(runs, fig5, block1) == "°"


def test_table2_marks_cells_and_lists_the_controls(report):
  _, text, _ = report
  header, rows = table_rows(text, "Table 2 layout: fashion_mnist")
  assert header == ["Run", "fashion_mnist"]
  assert rows["Rotation"] == ["RevNet50 k=2", "[88.0](#run-7)"]
  assert rows["pixels (control)"] == ["–", "80.0 ± 0.4"]
  assert rows["random (control)"] == ["RevNet50 k=2", "83.0 ± 0.4"]


def test_rankings_join_trunks_within_two_standard_errors_and_mark_them(report):
  _, text, _ = report
  # Linear: 90.0 ≈ 89.8 (0.2 < 0.85) > 86.3°; MLP: 92.0 > 91.0 > 87.5 (the
  # MLP has no random trunk for VGG19-BN, so it cannot be judged: no mark).
  assert ("- Rotation: linear ranks RevNet50 k=2 ≈ ResNet50 v1 k=2 > VGG19-BN k=2°; "
          "MLP differs only within 2 standard errors: ResNet50 v1 k=2 > RevNet50 k=2 "
          "> VGG19-BN k=2.") in text
  assert ("Spearman ρ(linear, MLP) over 3 runs (every fit that left chance; claim 4 "
          "counts only the converged ones not below their linear probe): 0.50 (n=3, "
          "p=1)") in text


def test_mlp_curves_and_the_fit_that_is_not_converged(report):
  _, text, summary = report
  assert "fig3_mlp_curves.png" in summary["figures"]
  assert ("Not converged (1 of 2 MLP fits: their last 20% of epochs still gained "
          "more than one standard error; train them longer before reading Fig. 3): "
          "[run-6](#run-6) Rotation, ResNet50 v1 k=2 (+3.0 ± 0.3).") in text
  assert claims.still_improving(mlp(91.0, curve_of(80.0, 90.8, 91.0, 91.0, 91.0))) is None
  # SE(50%) = 0.5: a gain of 1.0 over the last epoch is not converged, 0.4 is.
  assert claims.still_improving(mlp(50.0, curve_of(49.0, 50.0))) == (1.0, 0.5)
  assert claims.still_improving(mlp(50.0, curve_of(49.6, 50.0))) is None
  assert claims.still_improving(mlp(50.0, curve_of(49.0))) is None  # one point
  assert claims.still_improving(entry(50.0, curve=curve_of(40.0, 50.0))) is None  # no SE


def test_fig5_is_drawn_at_equal_dimension_beside_the_random_curve(report):
  _, text, summary = report
  assert "fig5_layers.png" in summary["figures"]
  assert ("At equal dimension: every end point pooled to 2048 features "
          "(`linear_eval.pool_to_features`)") in text


def test_fig6_steps_on_both_axes_with_their_random_trunks(report):
  _, text, summary = report
  assert "fig6_width_x_representation.png" in summary["figures"]
  steps = [l for l in text.splitlines() if l.startswith("- Rotation, RevNet50 (")]
  assert steps == [
      "- Rotation, RevNet50 (fashion_mnist), k=1 → 2 at size 512: +0.5 ± 0.5 "
      "(within 2 SE); its random trunk +2.0 ± 0.5 (exceeds 2 SE); ° k=1 size 512 "
      "and k=2 size 512 not above both controls.",
      "- Rotation, RevNet50 (fashion_mnist), k=1 → 2 at size 2048: +2.0 ± 0.4 "
      "(exceeds 2 SE); its random trunk +2.0 ± 0.5 (exceeds 2 SE).",
      "- Rotation, RevNet50 (fashion_mnist), size 512 → 2048 at k=1: +2.0 ± 0.5 "
      "(exceeds 2 SE); its random trunk +1.0 ± 0.5 (within 2 SE); ° k=1 size 512 "
      "not above both controls.",
      "- Rotation, RevNet50 (fashion_mnist), size 512 → 2048 at k=2: +3.5 ± 0.5 "
      "(exceeds 2 SE); its random trunk +1.0 ± 0.5 (exceeds 2 SE); ° k=2 size 512 "
      "not above both controls."]


def test_the_miniature_fig6_grid_runs_both_axes(clean_gin, tmp_path):
  del clean_gin
  runs = grids.runs("miniature_fig6")
  assert [r.name for r in runs] == [
      f"miniature_fig6/rotation/revnet50_k{k}_r{s}" for k in (1, 2) for s in (512, 2048)]
  assert len({r.workdir(str(tmp_path)) for r in runs}) == 4  # four models
  assert not {r.name for r in runs} & {r.name for r in grids.runs("miniature")}
  run = runs[-1]
  config_lib.parse([os.path.join(study_cells.CHECKOUT, c) for c in run.configs],
                   run.bindings)
  assert gin.get_bindings("get_model")["representation_size"] == 2048
  assert gin.get_bindings("get_model")["width"] == 2
  experiment = gin.get_bindings("experiment")
  assert experiment["evaluate_random_init"] and experiment["evaluate_pixels"]
