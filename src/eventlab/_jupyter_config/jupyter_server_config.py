"""JupyterLab settings for the course, loaded on every route that opens it.

`make lab`, `eventlab lab`, conda and Binder put this folder on
JUPYTER_CONFIG_PATH; eventlab/_jupyter.py explains each setting.
"""
# ruff: noqa: INP001 - a traitlets config file, not a module of the package

from eventlab import _jupyter

c = get_config()  # type: ignore[name-defined]  # noqa: F821 - traitlets defines it
_jupyter.configure(c)
