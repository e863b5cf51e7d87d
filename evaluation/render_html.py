"""Render a Document as one self-contained HTML file: inline CSS, figures as base64 PNG.

Self-contained so the report can be mailed, archived or opened offline without a folder of
assets; everything user-visible is escaped.
"""

from __future__ import annotations

import base64
import html

from evaluation.document import Document, Figure, LinkList, Paragraph, Section, Table

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1d2733;
     background:#f4f6f8;line-height:1.45}
main{max-width:1320px;margin:0 auto;padding:24px 32px 48px;background:#fff}
h1{font-size:1.7em;margin:0 0 4px}
h2{font-size:1.25em;margin:32px 0 10px;padding-bottom:4px;border-bottom:2px solid #d6dde4}
.subtitle{color:#566473;margin:0 0 16px}
.banner{background:#fff3cd;border:2px solid #e0a800;color:#5c4400;padding:10px 14px;font-weight:600;
        border-radius:4px;margin:12px 0}
.summary{background:#eef5fb;border-left:5px solid #1f77b4;padding:12px 16px;font-size:1.05em}
.note{color:#455463;font-size:.92em}
.warning{color:#8a1c1c;font-weight:600}
table{border-collapse:collapse;margin:8px 0 4px;font-size:.9em;width:auto;min-width:50%}
caption{caption-side:bottom;text-align:left;color:#566473;font-size:.88em;padding-top:4px}
th,td{border:1px solid #d6dde4;padding:5px 8px;vertical-align:top}
th{background:#e9eef3;text-align:left;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tbody tr:nth-child(even){background:#f8fafb}
td:first-child,td.label{white-space:nowrap}
.table-wrap{overflow-x:auto;max-width:100%}
.links li{margin:4px 0;font-size:1.05em}
figure{margin:12px 0}
figure img{max-width:100%;height:auto;border:1px solid #e3e8ed}
figcaption{color:#566473;font-size:.88em}
nav{font-size:.9em;margin:8px 0 0}
nav a{margin-right:12px;color:#1f5f99}
footer{color:#7a8793;font-size:.8em;margin-top:32px}
"""


def _looks_numeric(text: str) -> bool:
    head = text.lstrip("+-<").replace(",", "")
    return bool(head[:1].isdigit())


def _table(table: Table) -> str:
    head = "".join(f"<th scope=\"col\">{html.escape(h)}</th>" for h in table.header)
    body = []
    for row in table.rows:
        cells = []
        for k, value in enumerate(row):
            numeric = k >= table.label_columns and _looks_numeric(value)
            attribute = ' class="num"' if numeric else ' class="label"' if k < table.label_columns else ""
            cells.append(f"<td{attribute}>{html.escape(value)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return (f"<div class=\"table-wrap\"><table id=\"{html.escape(table.table_id)}\">{caption}"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def _figure(figure: Figure) -> str:
    data = base64.b64encode(figure.png).decode("ascii")
    return (f"<figure id=\"{html.escape(figure.figure_id)}\"><img alt=\"{html.escape(figure.alt)}\" "
            f"src=\"data:image/png;base64,{data}\"><figcaption>{html.escape(figure.caption)}"
            "</figcaption></figure>")


def _links(block: LinkList) -> str:
    items = "".join(f"<li><a href=\"{html.escape(href)}\">{html.escape(text)}</a></li>"
                    for text, href in block.links)
    return f"<ul class=\"links\">{items}</ul>"


def _block(block: Paragraph | Table | Figure | LinkList) -> str:
    if isinstance(block, LinkList):
        return _links(block)
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Figure):
        return _figure(block)
    return f"<p class=\"{block.kind}\">{html.escape(block.text)}</p>"


def _section(section: Section) -> str:
    return (f"<section id=\"{html.escape(section.section_id)}\"><h2>{html.escape(section.title)}</h2>"
            + "".join(_block(b) for b in section.blocks) + "</section>")


def render_html(document: Document, footer: str = "", extra_head: str = "") -> str:
    nav = "".join(f"<a href=\"#{html.escape(s.section_id)}\">{html.escape(s.nav or s.title.split(':')[0])}</a>"
                  for s in document.sections)
    banner = f"<div class=\"banner\" role=\"alert\">{html.escape(document.banner)}</div>" \
        if document.banner else ""
    summary = f"<p class=\"summary\">{html.escape(document.summary)}</p>" if document.summary else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(document.title)}</title><style>{CSS}</style>{extra_head}</head>"
            f"<body><main><h1>{html.escape(document.title)}</h1>"
            f"<p class=\"subtitle\">{html.escape(document.subtitle)}</p>{banner}{summary}"
            f"<nav>{nav}</nav>"
            + "".join(_section(s) for s in document.sections)
            + f"<footer>{html.escape(footer)}</footer></main></body></html>\n")
