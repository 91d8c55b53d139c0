"""State diagrams of a spec: mermaid and DOT as text, SVG/PNG through the `diagrams` extra."""

from .graph import (
    DiagramError,
    Diff,
    diff,
    dot,
    dot_text,
    edge_label,
    edges_of,
    markdown,
    mermaid,
    render,
    role_colours,
    svg_is_current,
)

__all__ = [
    "DiagramError",
    "Diff",
    "diff",
    "dot",
    "dot_text",
    "edge_label",
    "edges_of",
    "markdown",
    "mermaid",
    "render",
    "role_colours",
    "svg_is_current",
]
