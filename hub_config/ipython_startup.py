"""Figures offline in the users' notebooks: run by IPython when a kernel starts.

The hub's spawner points ``PYTHONSTARTUP`` at this file (hub_config/jupyterhub_config.py)
and sets ``PANEL_INLINE=true`` and ``BOKEH_RESOURCES=inline``; docs/viz.md, "Offline
figures in the hub", says why each piece is needed. Nothing is imported here: a hook on
the import system configures holoviews and panel when (and only if) the notebook imports
them, so kernels that draw nothing start as fast as before.

- ``holoviews.ipython``: ``hv.extension(...)`` (and hvplot's, which calls it) defaults to
  ``inline=True``: BokehJS, Panel and HoloViews' JavaScript go into the notebook's output
  rather than being fetched from cdn.bokeh.org / cdn.holoviz.org.
- ``panel.viewable``: with ``pn.config.inline``, the stylesheets panel attaches to its
  models as CDN links are replaced by the installed package's CSS, inline, when a figure
  is first rendered (panel itself does so only for later updates).

The code runs in the kernel's user namespace, so it lives in one function that deletes
itself.
"""


def _oceandata_offline_figures() -> None:
    import importlib.abc
    import importlib.machinery
    import sys
    import warnings

    def holoviews_inline(module) -> None:
        module.notebook_extension.inline = True

    def panel_inline_css(module) -> None:
        from bokeh.models import UIElement
        from panel.config import config
        from panel.io.notebook import patch_inline_stylesheets

        def inline_stylesheets(viewable, root) -> None:
            if config.inline:
                for model in root.select({"type": UIElement}):
                    patch_inline_stylesheets(model)

        module.Viewable._preprocessing_hooks.append(inline_stylesheets)

    after = {"holoviews.ipython": holoviews_inline, "panel.viewable": panel_inline_css}

    class ConfigureAfterImport(importlib.abc.MetaPathFinder):
        """Find the modules in *after* as usual; configure each once it has run."""

        def find_spec(self, name, path, target=None):
            configure = after.get(name)
            if configure is None:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path, target)
            if spec is None or spec.loader is None:
                return spec
            run = spec.loader.exec_module

            def exec_module(module) -> None:
                run(module)
                try:
                    configure(module)
                except Exception as exc:  # a newer library: figures may need the CDN
                    warnings.warn(f"oceandata: offline figures not configured for {name}: "
                                  f"{exc}", stacklevel=2)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, ConfigureAfterImport())


_oceandata_offline_figures()
del _oceandata_offline_figures
