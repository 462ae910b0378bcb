"""The study's grid: 72 Table 1 cells whose configs the generator reproduces,
and every ImageNet config checked against the protocol's numbers."""
import glob
import inspect
import json
import os

import gin
import pytest

from run_lib import experiment_lib  # run_lib: every configurable a run binds
from models import registry as models_registry
from self_supervision import patch_task
from self_supervision import task as task_lib
from self_supervision import trainer as trainer_lib
from study.grid import cells as study_cells
from study.grid import configs
from study.grid import cost
from study.grid import grids
from study.grid import plan
from training import config as config_lib
from training import schedule
from training import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

IMAGENET_CONFIGS = sorted(
    os.path.relpath(p, ROOT)
    for p in glob.glob(os.path.join(ROOT, "configs", "*", "imagenet_*.gin")))


def test_table1_has_the_papers_72_cells():
  cells = study_cells.table1_cells()
  assert len(cells) == 72 == len(set(cells))
  per_task = {t: sum(c[0] == t for c in cells) for t in study_cells.TASK_NAMES}
  assert per_task == {"random_init": 6, "rotation": 24, "exemplar": 18,
                      "relative_patch_location": 12, "jigsaw": 12}
  # docs/protocol.md §8's headline cells.
  paper = study_cells.PAPER_TABLE1
  assert paper[("rotation", "revnet50", 16)] == 53.7
  assert paper[("exemplar", "resnet50_v1", 12)] == 47.7
  assert paper[("relative_patch_location", "resnet50_v1", 8)] == 50.5
  assert paper[("jigsaw", "resnet50_v1", 8)] == 45.4
  assert paper[("random_init", "revnet50", 4)] == 8.1
  assert paper[("jigsaw", "vgg19_bn", 8)] == 21.1
  assert len(paper) == 72


def test_the_generator_reproduces_every_committed_table1_config():
  assert configs.check() == []
  assert len([p for p in IMAGENET_CONFIGS if "supervised" not in p]) == 72


def test_check_names_a_changed_cell(tmp_path):
  configs.write(str(tmp_path))
  path = tmp_path / "configs" / "rotation" / "imagenet_revnet50_k16.gin"
  path.write_text(path.read_text().replace("width = 16", "width = 15"))
  (tmp_path / "configs" / "rotation" / "imagenet_alexnet_k1.gin").write_text("")
  assert configs.check(str(tmp_path)) == [
      "differs from the generator: configs/rotation/imagenet_revnet50_k16.gin",
      "not a Table 1 cell: configs/rotation/imagenet_alexnet_k1.gin"]
  assert configs.write(str(tmp_path)) == ["configs/rotation/imagenet_revnet50_k16.gin"]


def _setting(fn, configurable, name):
  """What a run will use: the gin binding, else the function's default."""
  bindings = gin.get_bindings(configurable)
  if name in bindings:
    return bindings[name]
  return inspect.signature(fn).parameters[name].default


# docs/protocol.md §4: images per global batch (before copies) and the schedule, per task.
BATCH = {"rotation": 64, "exemplar": 64, "jigsaw": 128,
         "relative_patch_location": 128, "supervised": 256, "random_init": 64}


@pytest.mark.parametrize("path", IMAGENET_CONFIGS)
def test_every_imagenet_config_is_what_spec_says(path, clean_gin):
  del clean_gin
  config_lib.parse([os.path.join(ROOT, path)])
  folder = path.split(os.sep)[1]
  name = os.path.basename(path)[len("imagenet_"):-len(".gin")]
  trunk, k = name.rsplit("_k", 1)
  _, _, model, last_relu = study_cells.TRUNKS[study_cells.TRUNK_NAMES.index(trunk)]

  experiment = gin.get_bindings("experiment")
  assert experiment["dataset"] == "imagenet2012" and experiment.get("seed", 0) == 0
  task_name = "supervised" if folder == "random_init" else folder
  assert experiment["task"] == task_name
  # The trunk (docs/protocol.md §1): the file name says which, weight decay 1e-4.
  get_model = models_registry.get_model
  assert _setting(get_model, "get_model", "name") == model
  assert _setting(get_model, "get_model", "width") == int(k)
  assert _setting(get_model, "get_model", "last_relu") is last_relu
  assert _setting(get_model, "get_model", "weight_decay") == 1e-4
  assert _setting(get_model, "get_model", "representation_size") is None

  # Training (docs/protocol.md §4; supervised and Rnd: §2).
  train = lambda n: _setting(trainer_lib.Trainer.__init__, "train", n)  # noqa: E731
  assert train("batch_size") == BATCH[folder]
  assert train("optimizer") == "sgd" and train("momentum") == 0.9
  assert _setting(schedule.scaled_learning_rate, "scaled_learning_rate",
                  "base_lr") == 0.1
  assert schedule.scaled_learning_rate(256) == pytest.approx(0.1)
  assert train("train_split") == "train" and train("eval_split") == "val"
  epochs, decays = {"supervised": (90, [30, 60, 80]),
                    "random_init": (0, [15, 25])}.get(folder, (35, [15, 25]))
  assert train("epochs") == epochs and list(train("decay_epochs")) == decays
  assert train("warmup_epochs") == 5 and train("decay_factor") == 0.1
  assert train("steps_per_loop") == 500 and train("checkpoint_secs") == 600
  assert train("keep_checkpoint_every_hours") == 4

  # The Table 1 protocol (docs/protocol.md §5): L-BFGS on pre_logits, train -> val.
  linear = lambda n: gin.get_bindings("linear_eval")[n]  # noqa: E731
  assert linear("layers") == ["pre_logits"]
  assert (linear("train_split"), linear("val_split"), linear("eval_split"),
          linear("refit_on_train_and_val")) == ("train", "val", "val", False)
  assert inspect.signature(experiment_lib.experiment_settings).parameters[
      "protocols"].default == ("linear_lbfgs",)
  assert "protocols" not in experiment

  # The task's own reference settings (docs/protocol.md §2).
  task = task_lib.get_task(task_name, num_classes=1000)
  pp = task.preprocess(task_lib.TRAIN)
  if folder == "rotation":
    assert pp == "decode|inception_preprocess(224)|rotate"
  elif folder == "exemplar":
    assert pp == "decode|to_gray(2/3)|inception_patches(8, 224)|standardize"
    assert (task.embedding_size, task.margin, task.mining_group_images) == (1000, 0.5, 8)
    assert task.normalization == "per_example"
  elif folder in ("jigsaw", "relative_patch_location"):
    assert pp == patch_task.DEFAULT_PP_TRAIN and "per_element=True" in pp
    assert (task.embedding_size, task.head_hidden, task.head_dropout,
            task.head_weight_decay) == (1000, 4096, 0.5, 5e-4)
    assert task.preprocess(task_lib.REPRESENTATION) == (
        "decode|resize_small(224)|central_crop(192)|crop_patches(3, patch_size=64)"
        "|standardize")
    if folder == "jigsaw":
      assert (task.num_pretext_classes, len(task.permutations),
              task.permutations_per_batch) == (100, 100, 8)
  else:
    assert task.preprocess(task_lib.REPRESENTATION) == (
        "decode|resize_small(256)|central_crop(224)|value_range(-1, 1)")


def test_table2_adds_the_sgd_protocol_on_trainval_to_test(clean_gin):
  del clean_gin
  config_lib.parse([os.path.join(ROOT, "configs/rotation/imagenet_revnet50_k16.gin"),
                    os.path.join(ROOT, "configs/common/linear_eval_table2.gin")])
  assert gin.get_bindings("experiment")["protocols"] == ["linear_lbfgs", "linear_sgd"]
  sgd = gin.get_bindings("sgd_eval")
  assert (sgd["train_split"], sgd["eval_split"], sgd["batch_size"], sgd["base_lr"],
          sgd["first_decay_epochs"], sgd["second_decay_after"],
          sgd["tail_epochs"]) == ("trainval", "test", 2048, 0.1, 30, 20, 40)
  # The Table 1 entry of the same run stays the Table 1 protocol.
  assert gin.get_bindings("linear_eval")["eval_split"] == "val"


def test_cell_compute_is_counted_from_the_flops_table():
  from models import flops
  train, evaluate = cost.cell_flops("rotation", "resnet50_v2", 4)
  forward = flops.count_flops("resnet50_v2", 4, image_size=224)
  assert forward == pytest.approx(8.17e9, rel=1e-3)
  assert train == 3 * 4 * forward * 1_231_167 * 35
  assert evaluate == forward * 1_281_167
  assert cost.cell_flops("random_init", "vgg19_bn", 4)[0] == 0
  patch_train, patch_eval = cost.cell_flops("jigsaw", "resnet50_v1", 8)
  patch = flops.count_flops("resnet50_v1", 8, image_size=64, patch_mode=True,
                            num_classes=1000)
  assert patch_eval == 9 * patch * 1_281_167
  assert patch_train > 3 * 9 * patch * 1_231_167 * 35
  table = cost.cost_table(100.0)
  assert "Table 1 (72 cells)" in table and len(table.splitlines()) == 2 + 72 + 5 + 2


def _synthetic_results(workdir, task, steps=100):
  """A finished run's results.json with the Table 1 entry of its final trunk."""
  os.makedirs(workdir)
  with open(workdir_lib.Workdir(workdir).results_json, "w") as f:
    json.dump({"run": dict(task=task, dataset="imagenet2012", steps=steps,
                           total_steps=steps),
               "pretext": {}, "evaluations": [dict(
                   protocol="linear_lbfgs", trunk=f"trained@{steps}", layer="pre_logits",
                   fraction=1.0, eval_split="val", train_split="train", top1=1.0)]}, f)


def test_the_grid_plans_cells_of_a_task_it_has_never_heard_of(tmp_path):
  checkout, root = tmp_path / "checkout", tmp_path / "runs"
  # No config yet: the error names the file a new task's cells need.
  with pytest.raises(SystemExit, match=r"Unknown grid 'table1:colorization'.*"
                     r"table1:<task> \(needs configs/common/<task>_imagenet.gin\)"):
    grids.runs("table1:colorization", str(checkout))
  (checkout / "configs" / "common").mkdir(parents=True)
  (checkout / "configs" / "common" / "colorization_imagenet.gin").write_text("")
  (checkout / "configs" / "miniature").mkdir()
  (checkout / "configs" / "miniature" / "colorization.gin").write_text("")
  _synthetic_results(str(root / "table1" / "colorization" / "vgg19_bn_k8"), "colorization")
  rows = plan.plan("table1:colorization", str(root), "py", str(checkout))
  # Every trunk at the widths every paper task has, k = 4 first.
  assert [r[1] for r in rows] == [f"table1/colorization/{t}_k{k}" for k in (4, 8)
                                  for t in study_cells.TRUNK_NAMES]
  assert [r[0] for r in rows] == ["new"] * 11 + ["done"]
  assert rows[3][3] == (
      f"py {checkout}/train_and_eval.py "
      f"--config={checkout}/configs/common/colorization_imagenet.gin "
      f"--config={checkout}/configs/common/linear_eval_table1.gin "
      f"--workdir={root}/table1/colorization/revnet50_minus_k4 "
      "'--gin_bindings=get_model.name = '\"'\"'revnet50'\"'\"'' "
      "'--gin_bindings=get_model.width = 4' '--gin_bindings=get_model.last_relu = False'")
  # The miniature: a task it does not name runs on its first trunk, at k = 1.
  mini = grids.runs("miniature:colorization", str(checkout))
  assert [r.name for r in mini] == ["miniature/colorization/resnet50_v2_k1"]
  assert mini[0].configs == ("configs/miniature/colorization.gin",)
  # A known task's column is the committed cells, a trunk name is still a row.
  assert grids.runs("table1:rotation", str(checkout)) == grids.GRIDS["table1:rotation"]
  with pytest.raises(SystemExit, match="Unknown grid 'miniature:revnet50'"):
    grids.runs("miniature:revnet50", str(checkout))
  assert study_cells.label("colorization") == "colorization"
