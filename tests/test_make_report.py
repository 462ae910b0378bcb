"""python -m study.report on small synthetic sweeps: exact cells, links, figures."""
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from evaluation import feature_cache
from evaluation import knn
from evaluation import label_free
from study.report import __main__ as report_cli
from study.report import gallery
from study.report import markdown
from study.report import runs as report_runs
from training import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def entry(top1, protocol="linear_lbfgs", trunk="trained@100", layer="pre_logits",
          fraction=1.0, eval_split="val", **extra):
  return dict(protocol=protocol, trunk=trunk, layer=layer, pooling="adaptive_max",
              train_split="train", selected_on="val", eval_split=eval_split,
              fraction=fraction, top1=top1, top5=99.0, **extra)


def make_run(root, rel, task, arch, width, top1, last_relu=True, steps=100,
             pretext=0.5, rankme=None, extra_entries=(), total_steps=None,
             dataset="fashion_mnist", gin="", seed=0):
  """A run directory with results.json, run.json and operative_config.gin."""
  workdir = os.path.join(root, *rel.split("/"))
  os.makedirs(workdir)
  total = steps if total_steps is None else total_steps
  evaluations = [] if top1 is None else [
      entry(top1, trunk=f"trained@{steps}", dataset=dataset)]
  results = {
      "run": dict(task=task, dataset=dataset, architecture=arch, width=width,
                  last_relu=last_relu, seed=seed, steps=steps, total_steps=total),
      "pretext": {} if pretext is None else dict(split="val", step=steps,
                                                  accuracy=pretext),
      "evaluations": evaluations + list(extra_entries),
  }
  if rankme is not None:
    results["label_free"] = [dict(trunk=f"trained@{steps}", dataset=dataset,
                                  layer="pre_logits", split="val",
                                  pooling="adaptive_max", examples=100, dim=64,
                                  rankme=rankme)]
  files = workdir_lib.Workdir(workdir)
  with open(files.results_json, "w") as f:
    json.dump(results, f)
  with open(files.run_json, "w") as f:
    json.dump(dict(command=f"python train_and_eval.py --workdir={workdir}", seed=seed,
                   git_commit="abc123-dirty", status="done"), f)
  with open(files.operative_config, "w") as f:
    f.write(f"get_model.name = '{arch}'\nget_model.width = {width}\n{gin}")
  return workdir


def build(root, out=None, **kwargs):
  summary = markdown.build_report(str(root), str(out or root), with_gallery=False,
                                     **kwargs)
  with open(summary["report"]) as f:
    return f.read(), summary


def table_rows(report, heading):
  """{row name: [cell texts]} and the header cells of the table after `heading`."""
  lines = report.split(f"## {heading}\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
  split = lambda line: [c.strip() for c in line.strip("|").split("|")]  # noqa: E731
  return split(lines[0])[1:], {split(l)[0]: split(l)[1:] for l in lines[2:]}


def anchor_of(cell):
  return re.search(r"\(#(run-\d+)\)", cell).group(1)


def section_of(report, anchor):
  return report.split(f'<a id="{anchor}"></a>\n', 1)[1].split("\n", 1)[0]


@pytest.fixture
def grid(tmp_path):
  """3 trunks x 2 tasks x 2 widths minus one cell, plus an Rnd run."""
  root = tmp_path / "sweep"
  values = {  # (task, trunk, k): top-1
      ("rotation", "revnet50", 1): 40.04, ("rotation", "revnet50", 2): 45.46,
      ("rotation", "resnet50_v1", 1): 38.0, ("rotation", "resnet50_v1", 2): 41.0,
      ("rotation", "resnet50_v2_minus", 1): 30.0,
      ("rotation", "resnet50_v2_minus", 2): 33.0,
      ("jigsaw", "revnet50", 1): 35.0, ("jigsaw", "revnet50", 2): 36.0,
      ("jigsaw", "resnet50_v1", 1): 42.0,  # resnet50_v1 k=2 missing
      ("jigsaw", "resnet50_v2_minus", 1): 31.0,
      ("jigsaw", "resnet50_v2_minus", 2): 34.25,
  }
  for (task, trunk, k), top1 in values.items():
    arch = trunk.replace("_minus", "")
    make_run(root, f"table1/{task}/{trunk}_k{k}", task, arch, k, top1,
             last_relu=not trunk.endswith("_minus"))
  make_run(root, "table1/random_init/revnet50_k1", "supervised", "revnet50", 1, 8.1,
           steps=0, pretext=None)
  return root


def test_table1_cells_placement_bold_underline_and_links(grid):
  report, summary = build(grid)
  header, rows = table_rows(report, "Table 1 layout: fashion_mnist")
  assert header == ["Rnd k=1", "Rotation k=1", "Rotation k=2", "Jigsaw k=1",
                    "Jigsaw k=2"]
  assert list(rows) == ["RevNet50", "ResNet50 v1", "ResNet50 v2 (-)"]
  revnet, v1, v2_minus = rows.values()
  # RevNet50's best task is rotation (45.5 > 36.0); it is also column k=2's best.
  assert [re.sub(r"\(#run-\d+\)", "", c) for c in revnet] == [
      "[8.1]", "[**40.0**]", "<u>[**45.5**]</u>", "[35.0]", "[**36.0**]"]
  # ResNet50 v1: jigsaw (42.0) beats rotation (41.0); its jigsaw k=2 is missing.
  assert [re.sub(r"\(#run-\d+\)", "", c) for c in v1] == [
      "–", "[38.0]", "[41.0]", "<u>[**42.0**]</u>", "–"]
  assert [re.sub(r"\(#run-\d+\)", "", c) for c in v2_minus] == [
      "–", "[30.0]", "[33.0]", "[31.0]", "<u>[34.2]</u>"]
  # Each link names its run's anchor, whose appendix section names the workdir.
  assert section_of(report, anchor_of(revnet[2])) == (
      f"### {anchor_of(revnet[2])}: `table1/rotation/revnet50_k2`")
  assert section_of(report, anchor_of(v1[3])).endswith("`table1/jigsaw/resnet50_v1_k1`")
  assert section_of(report, anchor_of(revnet[0])).endswith(
      "`table1/random_init/revnet50_k1`")
  assert section_of(report, anchor_of(v2_minus[4])).endswith(
      "`table1/jigsaw/resnet50_v2_minus_k2`")
  assert summary["runs"] == 12
  # Ids follow the sorted relative paths.
  assert anchor_of(v1[3]) == "run-1"  # table1/jigsaw/resnet50_v1_k1 sorts first
  assert "- runs read: 12" in report and "`abc123-dirty`" in report


def test_rnd_from_a_random_init_entry_only_without_an_rnd_run(tmp_path):
  root = tmp_path / "sweep"
  rnd = lambda v: [entry(v, trunk="random_init", dataset="fashion_mnist")]  # noqa: E731
  make_run(root, "a/rotation/v1_k1", "rotation", "resnet50_v1", 1, 40.0,
           extra_entries=rnd(3.3))
  make_run(root, "a/rotation/rev_k1", "rotation", "revnet50", 1, 50.0,
           extra_entries=rnd(9.9))
  make_run(root, "b/rnd/rev_k1", "supervised", "revnet50", 1, 7.7, steps=0)
  _, rows = table_rows(build(root)[0], "Table 1 layout: fashion_mnist")
  assert rows["ResNet50 v1"][0] == "[3.3](#run-2)†"
  assert rows["RevNet50"][0] == "[**7.7**](#run-3)"  # the Rnd run, not the entry


def test_label_free_spearman_matches_label_free_module(tmp_path):
  root = tmp_path / "sweep"
  top1 = [30.0, 40.0, 50.0, 60.0]
  pretext = [0.2, 0.4, 0.6, 0.9]  # same order as top1: rho = 1
  rankme = [90.0, 70.0, 50.0, 10.0]  # reversed: rho = -1
  trunks = ["revnet50", "resnet50_v1", "resnet50_v2", "vgg19_bn"]
  for t, a, p, r in zip(trunks, top1, pretext, rankme):
    make_run(root, f"rot/{t}", "rotation", t, 1, a, pretext=p, rankme=r)
  # A second task: pretext accuracies no longer compare across all runs.
  make_run(root, "jig/revnet50", "jigsaw", "revnet50", 1, 20.0, pretext=0.99,
           rankme=5.0)
  report, _ = build(root)
  rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:5]]
          for line in report.splitlines()
          if line.startswith("| all trained") or line.startswith("| task:")
          or line.startswith("| architecture:")}
  assert label_free.spearman(top1, [100 * p for p in pretext]) == 1.0
  assert label_free.spearman(top1, rankme) == -1.0
  assert rows["task: Rotation"] == ["4", "1.00 (n=4, p=0.083)", "-1.00 (n=4, p=0.083)"]
  assert rows["task: Jigsaw"] == ["1", "n/a (n<3)", "n/a (n<3)"]
  expected = label_free.spearman(top1 + [20.0], rankme + [5.0])
  p = label_free.permutation_p(top1 + [20.0], rankme + [5.0])
  assert rows["all trained runs"] == ["5", "n/a (tasks differ)",
                                      f"{expected:.2f} (n=5, p={p:.2g})"]
  assert rows["architecture: RevNet50"] == ["2", "n/a (tasks differ)", "n/a (n<3)"]
  # The per-run table: RankMe next to the linked top-1.
  assert re.search(r"\| Rotation \| RevNet50 k=1 \| 20\.0 \| 90\.0 \| – \| "
                   r"\[30\.0\]\(#run-\d+\) \|", report)


def test_figures_written_only_with_their_data(grid, tmp_path):
  root = grid
  mlp = lambda v: [entry(v, protocol="mlp_sgd_features")]  # noqa: E731
  make_run(root, "fig3/rotation/revnet50_k4", "rotation", "revnet50", 4, 50.0,
           extra_entries=mlp(55.0))
  make_run(root, "fig3/rotation/resnet50_v1_k4", "rotation", "resnet50_v1", 4, 45.0,
           extra_entries=mlp(52.0))
  make_run(root, "fig3/rotation/vgg19_bn_k4", "rotation", "vgg19_bn", 4, 20.0,
           extra_entries=mlp(30.0))
  layers = [entry(v, layer=l, fraction=0.2) for v, l in
            zip((10.0, 20.0, 30.0), ("block1", "block3", "pre_logits"))]
  make_run(root, "fig5/rotation/v2_k4", "rotation", "resnet50_v2", 4, 44.0,
           extra_entries=layers + [entry(20.0, fraction=0.1)])
  for size in (64, 128):
    make_run(root, f"fig6/r{size}", "rotation", "revnet50", 2, 40.0 + size / 64,
             gin=f"get_model.representation_size = {size}\n")
  out = tmp_path / "report"
  report, summary = build(root, out)
  figures = out / "figures"
  for name in ("fig2_best_width.png", "fig3_linear_vs_mlp.png",
               "fig4_pretext_vs_downstream.png", "fig5_layers.png",
               "fig6_width_x_representation.png", "fig7_low_data.png"):
    assert (figures / name).read_bytes()[:4] == b"\x89PNG", name
    assert f"](figures/{name})" in report
  assert not (figures / "fig8_sgd_curves.png").exists()
  assert "*Fig. 8 not drawn: needs linear SGD entries with a `curve`" in report
  assert "Fig. 5: linear top-1 % by end point on 20% of the labels" in report
  assert sorted(summary["figures"]) == sorted(os.listdir(figures))
  # Fig. 3's statistics: ranks agree (50 > 45 > 20 and 55 > 52 > 30).
  assert ("Spearman ρ(linear, MLP) over 3 runs (every fit that left chance; claim 4 "
          "counts only the converged ones not below their linear probe): 1.00 (n=3, "
          "p=0.33)") in report
  assert "- Rotation: linear ranks RevNet50 k=4 > ResNet50 v1 k=4 > VGG19-BN k=4; " \
         "MLP agrees." in report
  # Bottleneck runs (k=2, 41.0 and 42.0) stay out of Table 1's k=2 cell.
  header, rows = table_rows(report, "Table 1 layout: fashion_mnist")
  cell = rows["RevNet50"][header.index("Rotation k=2")]
  assert cell.startswith("[**45.5**]")
  assert section_of(report, anchor_of(cell)).endswith("`table1/rotation/revnet50_k2`")


def test_fig8_curves_and_an_empty_sweeps_absent_figures(tmp_path):
  root = tmp_path / "sweep"
  curve = [dict(epoch=e, step=10 * e, top1=10.0 * e, top5=90.0, train_loss=1.0)
           for e in (1, 2, 3)]
  for d in (30, 120):
    make_run(root, f"fig8/decay{d}", "rotation", "revnet50", 16, None,
             extra_entries=[entry(30.0, protocol="linear_sgd", curve=curve)],
             gin=f"sgd_eval.first_decay_epochs = {d}\n")
  report, summary = build(root)
  assert summary["figures"] == ["fig8_sgd_curves.png"]
  assert (root / "figures" / "fig8_sgd_curves.png").read_bytes()[:4] == b"\x89PNG"
  assert "*Fig. 2 not drawn: no Table 1 cells.*" in report
  assert "Table 1 layout" not in report and "Table 2 layout" not in report


def test_places_and_table2_only_with_their_entries(grid):
  report, _ = build(grid)
  assert "Places table" not in report and "Table 2 layout" not in report
  sgd = lambda v, d: entry(v, protocol="linear_sgd", eval_split="test",  # noqa: E731
                           dataset=d)
  make_run(grid, "table2/rotation/revnet50_k3", "rotation", "revnet50", 3, 60.0,
           extra_entries=[sgd(55.4, "fashion_mnist"), sgd(41.0, "places365")])
  report, _ = build(grid)
  header, rows = table_rows(report, "Places table: places365 (trunks trained on "
                                    "fashion_mnist)")
  assert header == ["Rotation k=3"] and rows == {"RevNet50": ["[41.0](#run-13)"]}
  assert "| Rotation | RevNet50 k=3 | [55.4](#run-13) | [41.0](#run-13) |" in report
  assert "| Task | Run | fashion_mnist | places365 |" in report


def test_cli(tmp_path, grid, capsys):
  out = tmp_path / "out"
  assert report_cli.main([str(grid), "--out", str(out), "--no-gallery",
                           "--title", "Mini"]) == 0
  assert (out / "report.md").read_text().startswith("# Mini\n")
  assert "read 12 runs" in capsys.readouterr().out
  assert not (out / "runs").exists()
  # --copy-runs: each run's three small files beside the report, linked.
  assert report_cli.main([str(grid), "--out", str(out), "--no-gallery",
                           "--copy-runs"]) == 0
  copied = sorted(os.path.relpath(p, out) for p in glob.glob(str(out / "runs" / "**"),
                                                              recursive=True)
                  if os.path.isfile(p))
  assert len(copied) == 12 * 3
  rel = copied[0].rsplit("/", 1)[0]
  copy, original = (workdir_lib.Workdir(d).results_json
                    for d in (out / rel, grid / rel[len("runs/"):]))
  assert open(copy).read() == open(original).read()
  report = (out / "report.md").read_text()
  assert (f"- files: [results.json]({rel}/results.json), [run.json]({rel}/run.json), "
          f"[operative_config.gin]({rel}/operative_config.gin)") in report
  empty = tmp_path / "empty"
  empty.mkdir()
  assert report_cli.main([str(empty)]) == 2
  assert "no results.json under" in capsys.readouterr().err


def test_nearest_by_cosine_in_chunks():
  reference = np.array([[1, 0], [0, 1], [1, 1], [-1, 0], [2, 0.1], [0, -3], [3, 0]],
                       np.float32)
  query = np.array([[1, 0], [0, 2], [-1, -0.5]], np.float32)
  # Cosine, not distance: [3, 0] ties [1, 0] (the lower index first) and
  # [2, 0.1] beats [1, 1]; the third query's order is [-1, 0], [0, -3], [0, 1].
  expected = [[0, 6, 4], [1, 2, 4], [3, 5, 1]]
  for chunk in (1, 2, 4, 100):
    np.testing.assert_array_equal(
        knn.nearest(reference, query, 3, chunk_rows=chunk)[1], expected)
  np.testing.assert_array_equal(knn.nearest(reference, query[:1], 1)[1], [[0]])
  np.testing.assert_array_equal(gallery.query_indices(100), [0, 19, 39, 59, 79, 99])
  np.testing.assert_array_equal(gallery.query_indices(3), [0, 1, 2])


def test_parse_gin_joins_continued_lines():
  text = ("include 'a.gin'\n# Parameters for get_model:\n"
          "get_model.representation_size = 2048\n"
          "experiment.protocols = \\\n    ['linear_lbfgs', 'mlp_sgd']\nx.y = None\n")
  assert report_runs.parse_gin(text) == {
      "get_model.representation_size": "2048",
      "experiment.protocols": "['linear_lbfgs', 'mlp_sgd']", "x.y": "None"}


def test_the_report_builder_does_not_import_tensorflow(tmp_path):
  # The whole builder but the gallery, imported and run on a sweep.
  make_run(tmp_path / "sweep", "rot/revnet50_k1", "rotation", "revnet50", 1, 40.0)
  code = ("import sys; from study.report import __main__ as m; "
          f"m.main([{str(tmp_path / 'sweep')!r}, '--no-gallery']); "
          "print('tensorflow' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, cwd=ROOT).stdout
  assert out.strip().splitlines()[-1] == "False"


def write_cache(workdir, split, features, steps=100, pooling="adaptive_max"):
  """A feature cache entry as an evaluation leaves it, where the cache finds it."""
  cache = feature_cache.FeatureCache(workdir_lib.Workdir(workdir).features)
  key = cache.key(trunk=dict(kind="checkpoint", step=steps, path="x"),
                  dataset="fashion_mnist", split=split, num_examples=len(features),
                  layer="pre_logits", pooling=pooling, preprocess="decode")
  entry_dir = cache.path(key)
  os.makedirs(entry_dir)
  with open(os.path.join(entry_dir, "key.json"), "w") as f:
    json.dump(key, f)
  np.save(os.path.join(entry_dir, "features.npy"), features.astype(np.float32))
  np.save(os.path.join(entry_dir, "labels.npy"), np.arange(len(features)) % 10)


def test_gallery_with_stand_in_images(tmp_path, monkeypatch):
  root = tmp_path / "sweep"
  rng = np.random.default_rng(0)
  val, train = rng.normal(size=(12, 8)), rng.normal(size=(30, 8))
  best = make_run(root, "rot/revnet50_k2", "rotation", "revnet50", 2, 50.0)
  write_cache(best, "val", val)
  write_cache(best, "train", train)
  make_run(root, "rot/revnet50_k1", "rotation", "revnet50", 1, 40.0)  # not the best
  make_run(root, "jig/revnet50_k1", "jigsaw", "revnet50", 1, 30.0)  # no cache
  requested = {}

  def fake_load_images(dataset, split, indices, data_dir=None, manual_dir=None):
    requested[split] = sorted({int(i) for i in indices})
    return {int(i): np.full((8, 8, 1), int(i), np.uint8) for i in indices}, None
  monkeypatch.setattr(gallery, "load_images", fake_load_images)
  summary = markdown.build_report(str(root))
  report = open(summary["report"]).read()
  # The queries: 6 evenly spaced val rows; the references: their 5 nearest by cosine.
  queries = gallery.query_indices(12)
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
  nn = np.argsort(-(unit(val[queries]) @ unit(train).T), axis=1)[:, :5]
  assert requested == {"val": list(queries), "train": sorted(set(nn.ravel()))}
  png = root / "figures" / "gallery_fashion_mnist_rotation.png"
  assert png.read_bytes()[:4] == b"\x89PNG"
  assert "](figures/gallery_fashion_mnist_rotation.png)" in report
  assert "gallery_fashion_mnist_rotation.png" in summary["figures"]
  assert re.search(r"- Jigsaw \(\[run-1\]\(#run-1\), RevNet50 k=1\): no cached "
                   r"pre_logits features of step 100", report)

  def broken(*args, **kwargs):
    raise FileNotFoundError("no fashion_mnist here")
  monkeypatch.setattr(gallery, "load_images", broken)
  report = open(markdown.build_report(str(root))["report"]).read()
  assert "could not load fashion_mnist images (FileNotFoundError: no fashion_mnist " \
         "here); no gallery." in report
  assert not png.exists()  # the earlier build's gallery is not left behind


def test_seeds_show_mean_and_deviation(tmp_path):
  # Three seeds of an SGD evaluation and of a low-data L-BFGS one: the Table 2
  # cell shows mean ± standard deviation; a single seed shows its value alone.
  root = tmp_path / "runs"
  sgd = [entry(t, protocol="linear_sgd", eval_split="test", seed=s, trunk="trained@100")
         for s, t in enumerate((70.0, 72.0, 77.0))]
  make_run(root, "a/rot", "rotation", "revnet50", 4, 60.0, extra_entries=sgd)
  make_run(root, "a/ex", "exemplar", "revnet50", 4, 55.0,
           extra_entries=[entry(50.0, protocol="linear_sgd", eval_split="test")])
  markdown.build_report(str(root), with_gallery=False)
  report = (root / "report.md").read_text()
  assert "| Rotation | RevNet50 k=4 | [73.0 ± 3.6](#run-2) |" in report
  assert "| Exemplar | RevNet50 k=4 | [50.0](#run-1) |" in report
  # The appendix lists the merged entry once.
  assert report.count("| linear_sgd | fashion_mnist | `trained@100` |") == 2
  assert "| 73.00 ± 3.61 (seeds 0, 1, 2) | 99.00 |" in report


def test_a_task_the_report_has_never_heard_of_gets_its_own_column_and_row(tmp_path):
  root = tmp_path / "sweep"
  sgd = lambda v: [entry(v, protocol="linear_sgd", eval_split="test")]  # noqa: E731
  make_run(root, "a/colorization", "colorization", "revnet50", 1, 61.0,
           extra_entries=sgd(60.0), rankme=3.0)
  make_run(root, "b/rotation", "rotation", "revnet50", 1, 50.0, extra_entries=sgd(49.0),
           rankme=2.0)
  make_run(root, "c/supervised", "supervised", "revnet50", 1, 70.0,
           extra_entries=sgd(69.0), rankme=1.0)
  make_run(root, "d/rotation", "rotation", "resnet50_v1", 1, 40.0, rankme=4.0)
  report, _ = build(root)
  header, rows = table_rows(report, "Table 1 layout: fashion_mnist")
  # After the known columns, under its own name; it competes as a pretext task.
  assert header == ["Rotation k=1", "Supervised k=1", "colorization k=1"]
  assert rows["RevNet50"] == ["[**50.0**](#run-2)", "[70.0](#run-3)",
                              "<u>[61.0](#run-1)</u>"]
  assert "| Rotation | RevNet50 k=1 | [49.0](#run-2) |\n" \
         "| Supervised | RevNet50 k=1 | [69.0](#run-3) |\n" \
         "| colorization | RevNet50 k=1 | [60.0](#run-1) |" in report
  assert "| task: colorization | 1 |" in report
  assert "- task: colorization (column colorization)" in report


def test_the_report_names_no_absolute_path(tmp_path):
  root = tmp_path / "machine" / "checkout" / "workdirs" / "sweep"
  workdir = make_run(root, "table1/rotation/revnet50_k1", "rotation", "revnet50", 1,
                     50.0)
  checkout = tmp_path / "machine" / "checkout"
  recorded = (f"{tmp_path}/venv/bin/python3 {checkout}/train_and_eval.py "
              f"--config={checkout}/configs/miniature/rotation.gin --workdir={workdir} "
              "--gin_bindings=get_model.width = 1")
  evaluation = (f"/usr/bin/python {checkout}/evaluation/__main__.py "
                f"--workdir={workdir} --protocol=knn")
  with open(workdir_lib.Workdir(workdir).run_json, "w") as f:
    json.dump(dict(invocations=[dict(command=recorded), dict(command=evaluation)]), f)
  out = tmp_path / "published"
  report, _ = build(root, out)
  assert str(tmp_path) not in report
  # Outside the report's folder: a placeholder, not a climb out of it.
  assert "- sweep root: `<root>`" in report
  # Run from the checkout: the paths in it relative to it.
  assert ("- commands: `python train_and_eval.py --config=configs/miniature/rotation.gin "
          "--workdir=workdirs/sweep/table1/rotation/revnet50_k1 --gin_bindings="
          "get_model.width = 1`; then `python -m evaluation "
          "--workdir=workdirs/sweep/table1/rotation/revnet50_k1 --protocol=knn`") in report
  # A sweep root outside the checkout is named `<root>`.
  run = report_runs.load_runs(str(root))[0][0]
  assert markdown.portable(f"python {checkout}/train_and_eval.py --workdir=/data/runs/"
                           "table1/rotation/revnet50_k1 --data_dir=/data/tfds", run) == (
      "python train_and_eval.py --workdir=<root>/table1/rotation/revnet50_k1 "
      "--data_dir=/data/tfds")
