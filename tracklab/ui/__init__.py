"""``tracklab ui``: a live local web dashboard of the store's runs (read-only).

:mod:`tracklab.ui.server` serves one static page and a JSON API; :mod:`tracklab.ui.data` builds
the documents from the readers; :mod:`tracklab.ui.series` downsamples chart series. The charts
are drawn by uPlot, from the ``uplot-python`` package that the ``ui`` extra installs.
"""
