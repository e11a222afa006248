"""hwflow: the flow layer on top of the others, the Python API and the `hwgen` command.

It may import every package below it (quantflow, hwgen, boards, rtl_tests, formal); none of
them imports it (tests/test_layering.py).
"""

__all__ = []
