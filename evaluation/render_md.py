"""Render a Document as Markdown (figures referenced by caption only: the HTML embeds them)."""

from __future__ import annotations

from evaluation.document import Document, Figure, LinkList, Paragraph, Section, Table


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(table: Table) -> str:
    lines = ["| " + " | ".join(_escape(h) for h in table.header) + " |",
             "|" + "|".join("---" for _ in table.header) + "|"]
    lines += ["| " + " | ".join(_escape(v) for v in row) + " |" for row in table.rows]
    if table.caption:
        lines += ["", f"*{table.caption}*"]
    return "\n".join(lines)


def _block(block: Paragraph | Table | Figure | LinkList) -> str:
    if isinstance(block, LinkList):
        return "\n".join(f"- [{text}]({href})" for text, href in block.links)
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Figure):
        return f"*Figure (in report.html): {block.caption}*"
    return f"> {block.text}" if block.kind in ("note", "warning") else block.text


def _section(section: Section) -> str:
    return "\n\n".join([f"## {section.title}"] + [_block(b) for b in section.blocks])


def render_sections(sections: list[Section]) -> str:
    """Sections alone, for a block inside another Markdown file (docs/results.md)."""
    return "\n\n".join(_section(s) for s in sections) + "\n"


def render_markdown(document: Document, footer: str = "") -> str:
    parts = [f"# {document.title}", f"*{document.subtitle}*"]
    if document.banner:
        parts.append(f"> **{document.banner}**")
    if document.summary:
        parts.append(document.summary)
    parts += [_section(s) for s in document.sections]
    if footer:
        parts.append(f"---\n{footer}")
    return "\n\n".join(parts) + "\n"
