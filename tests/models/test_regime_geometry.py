"""The miniature's trunk geometry and budgets (docs/miniature/regime_search.md).

The miniature trains whole-image tasks in the paper's patch-mode geometry on 32 px
images (block4 4x4 instead of the ImageNet stem's 1x1: supervised 87.56% -> 90.22%
on val at 2 epochs) with SGD for a few epochs; these tests hold the configs to
that, through gin, the way a run builds its trunk.
"""
import os

import gin
import pytest
import tensorflow as tf

import models
import run_lib  # noqa: F401  (every configurable a run's config binds)
from study.grid import grids
from training import config as config_lib
from training import schedule

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FASHION_TRAIN = 55_000
WHOLE_IMAGE_TASKS = ('random_init', 'supervised', 'rotation', 'exemplar')
PATCH_TASKS = ('jigsaw', 'relative_patch_location')
# ResNet50 v2 k = 1 on a 32 px image in patch mode (root stride 1, max-pool,
# block strides 1, 2, 2, 1).
PATCH_MODE_SHAPES_32PX = dict(
    after_root=(2, 16, 16, 16), block1=(2, 16, 16, 64), block2=(2, 8, 8, 128),
    block3=(2, 4, 4, 256), block4=(2, 4, 4, 512), pre_logits=(2, 512))


def _parse_cell(task, trunk, k=1):
  run = grids.miniature_cell(task, trunk, k)
  config_lib.parse([os.path.join(ROOT, c) for c in run.configs], run.bindings)


def _shapes(model, size=32):
  _, end_points = model(tf.zeros([2, size, size, 3]), training=False)
  return {n: tuple(t.shape) for n, t in end_points.items()}


@pytest.mark.parametrize('task', WHOLE_IMAGE_TASKS)
def test_whole_image_cells_train_resnet50_v2_in_patch_mode(task, clean_gin):
  del clean_gin
  _parse_cell(task, 'resnet50_v2')
  assert gin.query_parameter('get_model.patch_mode') is True
  shapes = _shapes(models.get_model())
  assert shapes == PATCH_MODE_SHAPES_32PX


def test_revnet_cell_keeps_block4_at_4x4(clean_gin):
  del clean_gin
  _parse_cell('rotation', 'revnet50')
  shapes = _shapes(models.get_model())
  assert shapes['block4'] == (2, 4, 4, 512)
  assert shapes['pre_logits'] == (2, 512)


def test_vgg_cells_are_unchanged_by_the_patch_mode_binding(clean_gin):
  # patch_mode is a no-op for vgg19_bn (no stem): the miniature's common binding
  # leaves its cells as they were.
  del clean_gin
  _parse_cell('rotation', 'vgg19_bn')
  bound = models.get_model()
  assert gin.query_parameter('get_model.patch_mode') is True
  gin.clear_config()
  plain = models.get_model('vgg19_bn', width=1)
  shapes = _shapes(bound)
  assert shapes == _shapes(plain)
  assert shapes['block4'] == (2, 2, 2, 64)
  assert [v.shape for v in bound.variables] == [v.shape for v in plain.variables]


# (epochs, images per step, peak learning rate = 0.1 * images / 256) of each task.
BUDGETS = dict(random_init=(0, 128, 0.05), supervised=(6, 128, 0.05),
               rotation=(2, 64, 0.025), exemplar=(1, 32, 0.0125),
               jigsaw=(3, 128, 0.05), relative_patch_location=(3, 128, 0.05))


@pytest.mark.parametrize('task', sorted(BUDGETS))
def test_each_task_trains_a_few_epochs_of_sgd(task, clean_gin):
  del clean_gin
  _parse_cell(task, 'resnet50_v2')
  epochs, batch, peak_lr = BUDGETS[task]
  train = gin.get_bindings('train')  # macros resolved
  assert (train['epochs'], train['batch_size'], train['optimizer']) == (epochs, batch, 'sgd')
  assert schedule.scaled_learning_rate(batch) == pytest.approx(peak_lr)
