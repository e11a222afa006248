"""Fast tier. ``slow`` tests are deselected by default (pyproject addopts ``-m 'not slow'``);
run them with ``pytest -m slow`` or ``make test-slow``."""
