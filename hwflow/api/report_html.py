"""The build report's blocks (:func:`hwflow.api.report.blocks`) as one self-contained HTML
page: plain string templating with :func:`html.escape`, the plot as a PNG data URI, no
dependency beyond the standard library."""

import base64
import html
import re

__all__ = ["html_page"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
th { background: #f0f0f0; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; }
"""


def _inline(text):
    """Escaped text with the Markdown ``**bold**`` the blocks use."""
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(str(text)))


def _numeric(value):
    return re.fullmatch(r"[-+]?[\d,.]+(%| us| MHz| uJ)?", str(value)) is not None


def _table(header, rows):
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "\n".join(
        "<tr>" + "".join(f"<td class=\"n\">{_inline(c)}</td>" if _numeric(c)
                         else f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
        for row in rows)
    return f"<table>\n<tr>{head}</tr>\n{body}\n</table>"


def html_page(body, png):
    """``body`` (the report's blocks) as an HTML document; ``png``: the plot's bytes."""
    parts, title = [], "Build report"
    for block in body:
        kind = block[0]
        if kind == "h":
            title = block[1]
            parts.append(f"<h1>{html.escape(block[1])}</h1>")
        elif kind == "h2":
            parts.append(f"<h2>{html.escape(block[1])}</h2>")
        elif kind == "p":
            parts.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "table":
            parts.append(_table(block[1], block[2]))
        elif kind == "img":
            data = base64.b64encode(png).decode()
            parts.append(f"<p><img alt=\"{html.escape(block[2])}\""
                         f" src=\"data:image/png;base64,{data}\"></p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(parts) + "\n</body>\n</html>\n")

