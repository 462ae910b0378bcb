"""Distribution metadata and dependencies of the framework.

The project runs from its checkout (`python train_and_eval.py ...`, see README).
Its top-level folders are named as in the paper's code (`models`, `datasets`,
...); installing them into site-packages would clobber other distributions of
those names, so this file deliberately installs no packages: `pip install .`
brings the pinned dependencies and records the distribution, nothing more.
"""
import os

from setuptools import setup

_HERE = os.path.dirname(os.path.abspath(__file__))


def _requirements(name):
  with open(os.path.join(_HERE, name)) as f:
    return [line.strip() for line in f
            if line.strip() and not line.startswith("#")]


setup(
    name="revisiting-self-supervised",
    version="0.1.0",
    description="Revisiting Self-Supervised Visual Representation Learning "
                "(CVPR 2019) in TensorFlow 2",
    long_description=open(os.path.join(_HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=[],
    py_modules=[],
    install_requires=_requirements("requirements.txt"),
)
