"""Release notes: the Markdown a manufacturer uploads with an image, checked once and rendered once into
the safe HTML and plain text that every supplier reads, on the web pages and through GraphQL.

The HTML leaves this service for suppliers' own pages, where our Content-Security-Policy does not
apply, so it has to be safe on its own: Markdown is rendered with raw HTML switched off, then the
result goes through an allow-list sanitiser as a second, independent wall.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token
from markdown_it.utils import EnvType

MAX_NOTES_CHARACTERS = 20_000
MIN_CHANGE_CHARACTERS = 10

# What the sanitiser lets through: exactly what the Markdown renderer below can emit, and no more.
ALLOWED_TAGS = frozenset(
    {
        *("p", "br", "hr", "blockquote", "pre", "code"),
        *("h1", "h2", "h3", "h4", "h5", "h6"),
        *("ul", "ol", "li"),
        *("strong", "em", "s", "a"),
        *("table", "thead", "tbody", "tr", "th", "td"),
    }
)
# nh3 insists on real dicts, so these are typed read-only rather than wrapped.
ALLOWED_ATTRIBUTES: Mapping[str, frozenset[str]] = {
    "a": frozenset({"href", "title"}),
    "ol": frozenset({"start"}),
}
_ALIGNMENTS = frozenset({"left", "center", "right"})
ALLOWED_ATTRIBUTE_VALUES: Mapping[str, Mapping[str, frozenset[str]]] = {
    "th": {"align": _ALIGNMENTS},
    "td": {"align": _ALIGNMENTS},
}
ALLOWED_URL_SCHEMES = frozenset({"https", "http", "mailto"})
LINK_REL = "nofollow noopener noreferrer"
# The same notes are shown under our pages and inside suppliers' applications, so a relative link
# would point somewhere different in each; only absolute links mean one thing everywhere.
URL_RELATIVE: Final = "deny"

_WRITE_A_CHANGE = (
    f"write at least one list item or paragraph of {MIN_CHANGE_CHARACTERS} characters or more, "
    "e.g. `- Fixed …`"
)
# Tab and newline are layout; every other C0 or C1 control (NUL, escape, bell, DEL…) is refused.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_NEWLINES = re.compile(r"\r\n?")
# A JSON escape such as \ud800 can put half a surrogate pair in a GraphQL argument; it has no UTF-8
# encoding, so it could be neither stored nor shown.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


@dataclass(frozen=True)
class ReleaseNotes:
    """One image's release notes: the normalised Markdown as uploaded, the sanitised HTML to show, and
    plain text (one line per block, whitespace collapsed) for search, feeds and summaries. The text
    is not HTML-escaped: it is text, to be escaped by whatever displays it."""

    markdown: str
    html: str
    text: str


class ReleaseNotesRejected(ValueError):
    """The uploaded notes cannot be published; each problem is a sentence the uploader can act on."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(self.problems)  # args stay the problems, so the exception pickles whole

    def __str__(self) -> str:
        return "; ".join(self.problems)


def render_release_notes(markdown: str) -> ReleaseNotes:
    """Check uploaded Markdown release notes and render them; raise `ReleaseNotesRejected` naming
    every problem found. The same input always gives the same output."""
    # Not str.rstrip(): it would quietly eat trailing controls (form feed, \x1c-\x1f, NEL) that are
    # refused anywhere else in the notes.
    markdown = _NEWLINES.sub("\n", markdown).rstrip(" \t\n")
    if not markdown:
        raise ReleaseNotesRejected([f"the release notes are empty: {_WRITE_A_CHANGE}"])
    problems: list[str] = []
    if len(markdown) > MAX_NOTES_CHARACTERS:
        problems.append(
            f"the release notes are {len(markdown):,} characters; the limit is {MAX_NOTES_CHARACTERS:,}"
        )
    control = _CONTROL_CHARACTER.search(markdown)
    if control is not None:
        line, column = _line_and_column(markdown, control.start())
        problems.append(
            f"the release notes contain a NUL or other control character at line {line}, column {column}"
        )
    surrogate = _SURROGATE.search(markdown)
    if surrogate is not None:
        line, column = _line_and_column(markdown, surrogate.start())
        problems.append(
            "the release notes contain a character that is not valid Unicode (an unpaired surrogate) "
            f"at line {line}, column {column}"
        )
    if len(markdown) > MAX_NOTES_CHARACTERS:
        # Parsing is the expensive step; an oversized upload is refused without paying for it.
        raise ReleaseNotesRejected(problems)

    env: EnvType = {}
    tokens = _MARKDOWN.parse(markdown, env)
    if not _describes_a_change(tokens):
        problems.append(f"the release notes describe no change: {_WRITE_A_CHANGE}")
    if problems:
        raise ReleaseNotesRejected(problems)
    html = _MARKDOWN.renderer.render(tokens, _MARKDOWN.options, env)
    return ReleaseNotes(markdown=markdown, html=_sanitise(html), text=_plain_text(tokens))


def _line_and_column(text: str, index: int) -> tuple[int, int]:
    """1-based line and column, in characters, of `index` in `text`."""
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


def _sanitise(html: str) -> str:
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        tag_attribute_values=ALLOWED_ATTRIBUTE_VALUES,
        url_schemes=ALLOWED_URL_SCHEMES,
        link_rel=LINK_REL,
        url_relative=URL_RELATIVE,
    )


def _describes_a_change(tokens: Sequence[Token]) -> bool:
    """A paragraph, on its own or in a list item or quote, long enough to say what changed; headings,
    tables and code alone describe nothing."""
    return any(
        token.type == "inline"
        and index > 0
        and tokens[index - 1].type == "paragraph_open"
        and len(_inline_text(token.children or [])) >= MIN_CHANGE_CHARACTERS
        for index, token in enumerate(tokens)
    )


def _plain_text(tokens: Sequence[Token]) -> str:
    """One line per block (a table row is one line, cells joined by " | "), whitespace collapsed."""
    lines: list[str] = []
    row: list[str] | None = None
    for token in tokens:
        if token.type == "tr_open":
            row = []
        elif token.type == "tr_close" and row is not None:
            lines.append(" | ".join(row))
            row = None
        elif token.type == "inline":
            text = _inline_text(token.children or [])
            if row is not None:
                row.append(text)
            else:
                lines.append(text)
        elif token.type in ("code_block", "fence"):
            lines.append(_collapse(token.content))
    return "\n".join(line for line in lines if line)


def _inline_text(tokens: Sequence[Token]) -> str:
    parts: list[str] = []
    for token in tokens:
        if token.type in ("text", "code_inline"):
            parts.append(token.content)
        elif token.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return _collapse("".join(parts))


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _images_as_links(tokens: Sequence[Token]) -> None:
    """Every image becomes a link to it (or, already inside a link, just its description): showing it
    inline would make every reader's browser fetch a URL of the uploader's choosing."""
    for token in tokens:
        if token.type == "inline" and token.children:
            token.children = _replace_images(token.children)


def _replace_images(tokens: Sequence[Token]) -> list[Token]:
    replaced: list[Token] = []
    # For each link open at this point, whether it was kept: a link inside an image description
    # inside a link is dropped, since one <a> in another is invalid HTML that parsers repair apart.
    kept_links: list[bool] = []

    def walk(run: Sequence[Token]) -> None:
        for token in run:
            if token.type == "link_open":
                kept_links.append(True not in kept_links)
                if kept_links[-1]:
                    replaced.append(token)
            elif token.type == "link_close":
                if not kept_links or kept_links.pop():
                    replaced.append(token)
            elif token.type == "image":
                source = str(token.attrGet("src") or "")
                description = token.children or [Token("text", "", 0, content=source)]
                if True in kept_links:
                    walk(description)
                    continue
                link_open = Token("link_open", "a", 1, attrs={"href": source})
                if token.attrGet("title"):
                    link_open.attrSet("title", str(token.attrGet("title")))
                replaced.append(link_open)
                kept_links.append(True)
                walk(description)
                kept_links.pop()
                replaced.append(Token("link_close", "a", -1))
            else:
                replaced.append(token)

    walk(tokens)
    return replaced


def _move_alignment_to_attribute(tokens: Sequence[Token]) -> None:
    """Table alignment as `align`, not an inline `style`: our CSP (`style-src 'self'`) would block the
    style, and the sanitiser then has no CSS to judge."""
    for token in tokens:
        if token.type in ("th_open", "td_open"):
            style = str(token.attrGet("style") or "")
            token.attrs.pop("style", None)
            if style.startswith("text-align:"):
                token.attrSet("align", style.removeprefix("text-align:"))


def _markdown_parser() -> MarkdownIt:
    # html=False already shows raw HTML as text; disabling its rules as well keeps that true even if
    # someone later flips the option.
    parser = (
        MarkdownIt("commonmark", {"html": False})
        .enable(["table", "strikethrough"])
        .disable(["html_block", "html_inline"])
    )
    parser.core.ruler.push("images_as_links", lambda state: _images_as_links(state.tokens))
    parser.core.ruler.push("alignment_as_attribute", lambda state: _move_alignment_to_attribute(state.tokens))
    return parser


_MARKDOWN = _markdown_parser()
