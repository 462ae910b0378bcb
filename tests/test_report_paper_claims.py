"""The four claims' verdicts when the runs can decide them: a reversal of two
architectures across tasks, width steps beside the random trunk's."""
import pytest

from study.report import paper_claims
from study.report import runs as report_runs
from study.report import tables
from test_make_report import entry, make_run

N = 10_000  # SE(90%) = 0.30, SE(85%) = 0.36


def scored(top1, **kw):
  return entry(top1, eval_examples=N, num_classes=10, dataset="fashion_mnist", **kw)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
  root = tmp_path_factory.mktemp("claims") / "sweep"
  cells = {("rotation", "revnet50", 1): 90.0, ("rotation", "resnet50_v1", 1): 87.0,
           ("jigsaw", "revnet50", 1): 85.0, ("jigsaw", "resnet50_v1", 1): 88.0,
           ("rotation", "revnet50", 2): 92.0, ("rotation", "resnet50_v1", 2): 87.2}
  for (task, trunk, k), top1 in cells.items():
    make_run(root, f"{task}/{trunk}_k{k}", task, trunk, k, None,
             extra_entries=[scored(top1)])
  for k, top1 in ((1, 80.0), (2, 81.0)):
    make_run(root, f"random_init/revnet50_k{k}", "supervised", "revnet50", k, None,
             steps=0, pretext=None, extra_entries=[scored(top1, trunk="trained@0")])
  runs, _ = report_runs.load_runs(str(root))
  return runs, tables.grid_cells(runs, "fashion_mnist", "fashion_mnist")


def test_a_pair_of_architectures_reversed_across_tasks_decides_claim_1(sweep):
  runs, cells = sweep
  lines = paper_claims.architectures(cells, runs)
  assert lines[0] == (
      "1. **Rankings of architectures are not consistent across tasks (paper): holds.** "
      "ResNet50 v1 vs RevNet50 at k=1 reverses beyond 2 SE between Rotation and Jigsaw.")
  assert ("   - Jigsaw, k=1: ResNet50 v1 88.0 ± 0.3 vs RevNet50 85.0 ± 0.4: +3.0 ± 0.5 "
          "(beyond 2 SE).") in lines
  # RevNet50 has its Rnd cell at k=2, ResNet50 v1 none: no gains to compare.
  assert ("   - Rotation, k=2: RevNet50 92.0 ± 0.3 vs ResNet50 v1 87.2 ± 0.3: +4.8 ± 0.4 "
          "(beyond 2 SE).") in lines


def test_width_steps_are_read_beside_the_random_trunks_step(sweep):
  runs, cells = sweep
  lines = paper_claims.widths(cells, runs)
  # +2.0 beyond 2 SE; +0.2 within; RevNet50's +2.0 minus its random trunk's
  # +1.0 is 1.0 ± hypot(0.40, 0.56) = 0.69, within 2 SE.
  assert lines[0] == (
      "2. **Wider is better (paper): partly holds.** Of 2 steps to a wider trained model, "
      "1 gain and 0 lose beyond 2 SE, 1 are within 2 SE; the trained model's step "
      "exceeds its random trunk's step beyond 2 SE in 0 of 1.")
  assert lines[1:] == [
      "   - Rnd, RevNet50, k=1 → 2: +1.0 ± 0.6 (within 2 SE).",
      "   - Rotation, ResNet50 v1, k=1 → 2: +0.2 ± 0.5 (within 2 SE).",
      "   - Rotation, RevNet50, k=1 → 2: +2.0 ± 0.4 (beyond 2 SE); its random trunk "
      "+1.0 ± 0.6 (within 2 SE)."]


def test_claims_without_runs_to_decide_them_say_what_would():
  assert paper_claims.layers([], []) == [
      "3. **The best layer: ResNet pre_logits stay good, VGG degrades towards the top "
      "(paper): not decided.** No trained run was scored at three or more layers "
      "(Fig. 5's runs: the miniature's `miniature_fig5` cells, grid `fig5`)."]
  assert paper_claims.linear_vs_mlp([]) == [
      "4. **MLP rankings match linear ones (paper): not decided.** No run has an MLP "
      "entry beside its linear one."]
  assert paper_claims.spearman_note(3) == (
      "Spearman's rho over n = 3 is not informative (its smallest two-sided p is "
      "2/3! = 0.33): ")
  assert paper_claims.spearman_note(5) == ""


def test_a_reversal_against_a_random_trunk_says_what_the_trained_cells_show(tmp_path):
  # Linear / MLP top-1 on 10,000 images: the MLP lifts rotation above the
  # random trunk (which the linear probe puts first); the two trained cells
  # keep their order under both, and the random trunk keeps its against jigsaw.
  root = tmp_path / "sweep"
  for rel, task, steps, lin, mlp in (
      ("random_init/revnet50_k1", "supervised", 0, 87.0, 86.8),
      ("rotation/revnet50_k1", "rotation", 100, 85.0, 89.0),
      ("jigsaw/revnet50_k1", "jigsaw", 100, 82.0, 84.0)):
    trunk = f"trained@{steps}"
    make_run(root, rel, task, "revnet50", 1, None, steps=steps,
             pretext=None if steps == 0 else 0.5,
             extra_entries=[scored(lin, trunk=trunk),
                            scored(mlp, trunk=trunk, protocol="mlp_sgd_features")])
  runs, _ = report_runs.load_runs(str(root))
  lines = paper_claims.linear_vs_mlp(runs)
  assert lines[0] == (
      "4. **MLP rankings match linear ones (paper): does not hold.** Of 3 pairs of the "
      "3 usable cells, 2 are ordered alike beyond 2 SE by both, 1 oppositely, 0 told "
      "apart by one protocol only, 0 by neither; ordered oppositely: RevNet50 k=1 Rnd "
      "vs RevNet50 k=1 Rotation. Among the trained cells alone (the random trunks left "
      "out): of 1 pairs, 1 ordered alike beyond 2 SE by both, 0 oppositely. "
      + paper_claims.spearman_note(3) + "the pairs are compared instead.")
