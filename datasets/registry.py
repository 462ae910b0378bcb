"""The study's datasets by name.

A dataset class registers itself with `@register('name')`, so that a config can say
`experiment.dataset = 'name'` and `get_dataset('name', ...)` builds it. A name ending
in ':' is a prefix: `get_dataset('image_folder:/data/pets')` builds the class
registered as 'image_folder:' with '/data/pets' as its first argument.

Every module of this package is imported on the first lookup, so adding a dataset is
one new module here; a dataset defined elsewhere (a test, a user's module) registers
the same way once its module is imported. What a dataset object offers (the study's
splits, the fields of its examples) is described in `datasets.tfds_dataset`, whose
`SPLITS` and `check_split` are also importable from here.
"""
import importlib
import pkgutil

from datasets.tfds_dataset import SPLITS  # noqa: F401  (re-exported)
from datasets.tfds_dataset import check_split  # noqa: F401  (re-exported)

_PREFIX_MARK = ':'

# Registered name -> (dataset class, how error messages list it).
_DATASETS = {}
_package_imported = False


def register(name, *, usage=None):
  """Class decorator: makes a dataset class available as `get_dataset(name)`.

  `get_dataset` calls the class with the keywords `data_dir` and `manual_dir`
  (which a dataset that keeps no tfds data accepts and ignores) plus the caller's
  own keywords; for a prefix name (ending in ':') the rest of the requested name
  comes first, as the one positional argument.

  Args:
    name: the dataset's name, e.g. 'fashion_mnist', or a prefix such as
      'image_folder:'; ':' may only end it.
    usage: how the error for an unknown name lists this dataset; default the name
      (prefix names: the name followed by '<arg>').

  Returns:
    The decorator, which returns the class unchanged.

  Raises:
    ValueError: a malformed name, or one already registered for another class.
  """
  stem = name[:-len(_PREFIX_MARK)] if name.endswith(_PREFIX_MARK) else name
  if not stem or _PREFIX_MARK in stem:
    raise ValueError(f'Dataset name {name!r} must be non-empty with ":" only at its '
                     f'end (a prefix name).')
  if usage is None:
    usage = f'{name}<arg>' if stem != name else name

  def wrap(cls):
    if name in _DATASETS and _DATASETS[name][0] is not cls:
      raise ValueError(f'Dataset {name!r} is registered twice.')
    _DATASETS[name] = (cls, usage)
    return cls
  return wrap


def dataset_names():
  """The registered names, plain names first, then prefixes (with their ':')."""
  _import_package_modules()
  return tuple(sorted(_DATASETS, key=lambda n: (n.endswith(_PREFIX_MARK), n)))


def __getattr__(attr):
  # DATASET_NAMES, the names without a prefix's ':', is found when asked for: the
  # registered datasets are only known once the package's modules are imported.
  if attr == 'DATASET_NAMES':
    return tuple(name.removesuffix(_PREFIX_MARK) for name in dataset_names())
  raise AttributeError(f'module {__name__!r} has no attribute {attr!r}')


def get_dataset(name, data_dir=None, manual_dir=None, **kwargs):
  """Returns the dataset object called `name`.

  Args:
    name: a registered name (`dataset_names()`): 'fashion_mnist', 'imagenet2012',
      'places205', 'places365' or 'image_folder:<root>'.
    data_dir: tfds data directory (None: tfds's default); unused by image_folder.
    manual_dir: folder holding the manually obtained source files (None: the
      dataset's default); unused by image_folder.
    **kwargs: dataset-specific options, e.g. `holdout` for the tfds datasets.

  Raises:
    ValueError: unknown name.
  """
  key, args = check_name(name)
  return _DATASETS[key][0](*args, data_dir=data_dir, manual_dir=manual_dir, **kwargs)


def first_present(alternatives, *, data_dir=None, manual_dir=None, required=True,
                  what='Dataset', log=print):
  """The first of alternative dataset names ('places205|places365' split at '|')
  whose data is there, prepared; each one whose data is not is logged as skipped.

  Args:
    alternatives: dataset names, in order of preference.
    data_dir, manual_dir: as for `get_dataset`.
    required: raise the last one's FileNotFoundError when none is there;
      otherwise (transfer datasets, evaluated later) return None.
    what: how the log names a skipped one ('Dataset', 'Transfer dataset').
  """
  for i, name in enumerate(alternatives):
    dataset = get_dataset(name, data_dir=data_dir, manual_dir=manual_dir)
    try:
      dataset.prepare()
      return dataset
    except FileNotFoundError as e:
      if required and i == len(alternatives) - 1:
        raise
      log(f'{what} {name} skipped: its data is not here ({e})')
  return None


def check_name(name):
  """(registry key, constructor args) of `name`; ValueError naming the known ones.

  Cheap (builds nothing): a config's dataset names can be checked before a run
  spends hours training.
  """
  names = dataset_names()
  # A registered name has ':' only at its end, so the first ':' ends the prefix.
  stem, mark, rest = name.partition(_PREFIX_MARK)
  key, args = (stem + mark, (rest,)) if mark else (name, ())
  if key not in _DATASETS or (mark and not rest):
    raise ValueError(f'Unknown dataset {name!r}; use one of '
                     f'{", ".join(_DATASETS[n][1] for n in names)}.')
  return key, args


def _import_package_modules():
  # At lookup time, not at import: every dataset module imports this one.
  global _package_imported
  if _package_imported:
    return
  package = importlib.import_module(__package__)
  for info in pkgutil.iter_modules(package.__path__):
    if not info.name.startswith('_'):
      importlib.import_module(f'{__package__}.{info.name}')
  _package_imported = True
