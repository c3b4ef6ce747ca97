"""The units stage: unit galleries and their HTML pages.

``stage.py`` (the `Stage`), ``options.py`` (its settings), ``gallery.py``
(what a unit responds to, for a model in memory), ``figures.py`` (a unit's
figure, a layer's grid and SI histogram), ``selection.py`` (which units are
shown), ``run_galleries.py`` (one run's figures, drawn per run and cached),
``contents.py`` (what the pages show, from the tables) and ``pages.py`` (the
static HTML).
"""
