"""A report as plain data (sections of paragraphs, tables and figures), rendered twice.

Building the content once and rendering it to HTML and to Markdown keeps the two reports
saying the same thing; renderers know markup, not medicine.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Paragraph:
    text: str
    kind: str = "text"  # text | note | warning


@dataclass
class Table:
    table_id: str
    header: list[str]
    rows: list[list[str]]
    caption: str = ""
    label_columns: int = 1  # leading columns that name the row (left-aligned even if numeric-looking)


@dataclass
class Figure:
    figure_id: str
    png: bytes
    caption: str
    alt: str


@dataclass
class LinkList:
    links: list[tuple[str, str]]  # (text, relative href)


@dataclass
class Section:
    section_id: str
    title: str
    blocks: list[Paragraph | Table | Figure | LinkList] = field(default_factory=list)
    nav: str | None = None   # the link text in a page's navigation; default: the title up to its first ':'


@dataclass
class Document:
    title: str
    subtitle: str
    banner: str | None
    summary: str
    sections: list[Section]
