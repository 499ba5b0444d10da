"""Release notes are refused with a sentence the uploader can act on, or rendered to HTML that is safe
to put in any supplier's page as it stands: no script, no event handler, no dangerous link, no image
fetched from a URL of the uploader's choosing."""

from __future__ import annotations

import pickle
from html.parser import HTMLParser

import nh3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfl_graph.images.notes import (
    ALLOWED_ATTRIBUTE_VALUES,
    ALLOWED_ATTRIBUTES,
    ALLOWED_TAGS,
    ALLOWED_URL_SCHEMES,
    LINK_REL,
    MAX_NOTES_CHARACTERS,
    MIN_CHANGE_CHARACTERS,
    URL_RELATIVE,
    ReleaseNotes,
    ReleaseNotesRejected,
    render_release_notes,
)

A_CHANGE = "- Fixed clock drift after the DST change"
NO_CHANGE = (
    "the release notes describe no change: write at least one list item or paragraph of 10 characters "
    "or more, e.g. `- Fixed …`"
)
EMPTY = (
    "the release notes are empty: write at least one list item or paragraph of 10 characters or more, "
    "e.g. `- Fixed …`"
)


def rejection(markdown: str) -> list[str]:
    with pytest.raises(ReleaseNotesRejected) as refused:
        render_release_notes(markdown)
    return refused.value.problems


# Refusals


@pytest.mark.parametrize("markdown", ["", "   ", "\r\n\r\n", " \t\n \r "])
def test_empty_notes_are_refused(markdown: str) -> None:
    assert rejection(markdown) == [EMPTY]


def test_notes_over_the_limit_are_refused_with_their_length() -> None:
    markdown = A_CHANGE + "\n\n" + "x" * (20_431 - len(A_CHANGE) - 2)
    assert rejection(markdown) == ["the release notes are 20,431 characters; the limit is 20,000"]


def test_notes_at_the_limit_are_accepted() -> None:
    markdown = A_CHANGE + "\n\n" + "x" * (MAX_NOTES_CHARACTERS - len(A_CHANGE) - 2)
    assert len(render_release_notes(markdown).markdown) == MAX_NOTES_CHARACTERS


def test_the_limit_counts_characters_after_newlines_are_normalised_and_trailing_space_is_dropped() -> None:
    lines = [A_CHANGE] * (MAX_NOTES_CHARACTERS // (len(A_CHANGE) + 1))
    markdown = "\r\n".join(lines) + " \r\n" * 500
    assert len(markdown) > MAX_NOTES_CHARACTERS
    assert render_release_notes(markdown).markdown == "\n".join(lines)


def test_a_control_character_is_refused_with_its_line_and_column() -> None:
    markdown = "# Firmware 2.4.1\n\n- Fixe\x00d clock drift after the DST change"
    assert rejection(markdown) == [
        "the release notes contain a NUL or other control character at line 3, column 7"
    ]


@pytest.mark.parametrize("character", ["\x01", "\x07", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\x9f"])
def test_every_control_character_but_tab_and_newline_is_refused(character: str) -> None:
    assert rejection(f"{A_CHANGE}{character}") == [
        f"the release notes contain a NUL or other control character at line 1, column {len(A_CHANGE) + 1}"
    ]


def test_lines_and_columns_are_counted_after_crlf_is_normalised() -> None:
    assert rejection(f"# Firmware\r\n\r\n{A_CHANGE}\r\n\x1b[31m") == [
        "the release notes contain a NUL or other control character at line 4, column 1"
    ]


def test_an_unpaired_surrogate_is_refused_with_its_line_and_column() -> None:
    # A GraphQL (JSON) argument can carry one; it cannot be encoded as UTF-8, so cannot be stored.
    assert rejection(f"{A_CHANGE}\n- Fixed the \ud800 tariff switch") == [
        "the release notes contain a character that is not valid Unicode (an unpaired surrogate) at line 2, column 13"
    ]


def test_tabs_are_layout_not_control_characters() -> None:
    assert render_release_notes(f"{A_CHANGE}\tand the tariff\tswitch").text == (
        "Fixed clock drift after the DST change and the tariff switch"
    )


@pytest.mark.parametrize(
    "markdown",
    [
        "# Firmware 2.4.1\n\n## Fixed\n\n### Everything",
        "- Fix\n- Tidy",
        "Fixed.",
        "| Change | Ticket |\n|---|---|\n| Fixed clock drift | CFL-112 |",
        "    fixed clock drift after DST",
        "```\nfixed clock drift after DST\n```",
        "- [link](https://cfl.example/a-long-address-that-is-not-a-description)",
        "---\n\n***",
    ],
    ids=[
        "headings",
        "short-items",
        "short-paragraph",
        "table",
        "indented-code",
        "fence",
        "bare-link",
        "rules",
    ],
)
def test_notes_that_describe_no_change_are_refused(markdown: str) -> None:
    assert rejection(markdown) == [NO_CHANGE]


@pytest.mark.parametrize(
    "markdown",
    [
        "- " + "x" * MIN_CHANGE_CHARACTERS,
        "x" * MIN_CHANGE_CHARACTERS,
        "> Fixed clock drift",
        "# 2.4.1\n\n1. **Fixed** clock drift",
        "- Tariff\n  switch",
    ],
    ids=["item-at-minimum", "paragraph-at-minimum", "quoted-paragraph", "ordered-item", "wrapped-item"],
)
def test_a_list_item_or_paragraph_of_the_minimum_length_describes_a_change(markdown: str) -> None:
    assert render_release_notes(markdown).markdown == markdown


def test_every_problem_is_reported_at_once() -> None:
    markdown = "# Firmware\x00 2.4.1\n\n" + "#" * MAX_NOTES_CHARACTERS
    with pytest.raises(ReleaseNotesRejected) as refused:
        render_release_notes(markdown)
    assert refused.value.problems == [
        "the release notes are 20,019 characters; the limit is 20,000",
        "the release notes contain a NUL or other control character at line 1, column 11",
    ]
    assert str(refused.value) == (
        "the release notes are 20,019 characters; the limit is 20,000; "
        "the release notes contain a NUL or other control character at line 1, column 11"
    )
    assert isinstance(refused.value, ValueError)


def test_a_control_character_and_no_change_are_reported_together() -> None:
    assert rejection("# Firmware\x07") == [
        "the release notes contain a NUL or other control character at line 1, column 11",
        NO_CHANGE,
    ]


def test_a_rejection_survives_pickling_with_its_problems() -> None:
    refused = ReleaseNotesRejected(["one problem", "another problem"])
    assert pickle.loads(pickle.dumps(refused)).problems == ["one problem", "another problem"]


# Rendering

RELEASE_NOTE = (
    "# Firmware 2.4.1\r\n"
    "\r\n"
    "## Fixed\r\n"
    "- Clock drift after the `DST` change\r\n"
    "- Tariff switch, see [CFL-112](https://cfl.example/issues/112)\r\n"
    "\r\n"
    "| Meter | Status |\r\n"
    "|:------|-------:|\r\n"
    "| ESME  | fixed  |\r\n"
    "  \r\n"
)


def test_a_release_note_renders_to_the_expected_html_text_and_normalised_markdown() -> None:
    assert render_release_notes(RELEASE_NOTE) == ReleaseNotes(
        markdown=(
            "# Firmware 2.4.1\n\n## Fixed\n- Clock drift after the `DST` change\n"
            "- Tariff switch, see [CFL-112](https://cfl.example/issues/112)\n\n"
            "| Meter | Status |\n|:------|-------:|\n| ESME  | fixed  |"
        ),
        html=(
            "<h1>Firmware 2.4.1</h1>\n"
            "<h2>Fixed</h2>\n"
            "<ul>\n"
            "<li>Clock drift after the <code>DST</code> change</li>\n"
            '<li>Tariff switch, see <a href="https://cfl.example/issues/112" rel="nofollow noopener noreferrer">CFL-112</a></li>\n'
            "</ul>\n"
            "<table>\n"
            "<thead>\n"
            "<tr>\n"
            '<th align="left">Meter</th>\n'
            '<th align="right">Status</th>\n'
            "</tr>\n"
            "</thead>\n"
            "<tbody>\n"
            "<tr>\n"
            '<td align="left">ESME</td>\n'
            '<td align="right">fixed</td>\n'
            "</tr>\n"
            "</tbody>\n"
            "</table>\n"
        ),
        text=(
            "Firmware 2.4.1\nFixed\nClock drift after the DST change\nTariff switch, see CFL-112\n"
            "Meter | Status\nESME | fixed"
        ),
    )


def test_the_same_notes_always_render_the_same() -> None:
    assert render_release_notes(RELEASE_NOTE) == render_release_notes(RELEASE_NOTE)


@pytest.mark.parametrize("newline", ["\r\n", "\r", "\n"])
def test_crlf_and_cr_newlines_are_normalised_to_lf(newline: str) -> None:
    notes = render_release_notes(newline.join(["## Fixed", "- Clock drift", "- Tariff switch", "", ""]))
    assert notes.markdown == "## Fixed\n- Clock drift\n- Tariff switch"
    assert notes.html == "<h2>Fixed</h2>\n<ul>\n<li>Clock drift</li>\n<li>Tariff switch</li>\n</ul>\n"


def test_text_is_one_line_per_block_with_whitespace_collapsed_and_markup_gone() -> None:
    notes = render_release_notes(
        "#   Firmware   2.4.1\n\n"
        "Fixed **clock   drift**\nafter the `DST` change.\n\n"
        "> Upgrade  *before*  the tariff [switch](https://cfl.example/t).\n\n"
        "```\nlog   level  = 2\n```\n\n"
        "- Fish &amp; chips &lt;b&gt;\n"
    )
    assert notes.text == (
        "Firmware 2.4.1\n"
        "Fixed clock drift after the DST change.\n"
        "Upgrade before the tariff switch.\n"
        "log level = 2\n"
        "Fish & chips <b>"
    )


def test_an_image_becomes_a_link_to_it_never_an_image_the_reader_fetches() -> None:
    notes = render_release_notes(f'{A_CHANGE}\n\n![wiring *diagram*](https://cfl.example/w.png "Wiring")')
    assert notes.html.endswith(
        '<p><a href="https://cfl.example/w.png" title="Wiring" rel="nofollow noopener noreferrer">'
        "wiring <em>diagram</em></a></p>\n"
    )
    assert notes.text.endswith("\nwiring diagram")


def test_an_image_without_a_description_links_by_its_address() -> None:
    notes = render_release_notes(f"{A_CHANGE}\n\n![](https://cfl.example/w.png)")
    assert notes.html.endswith(
        '<p><a href="https://cfl.example/w.png" rel="nofollow noopener noreferrer">'
        "https://cfl.example/w.png</a></p>\n"
    )


def test_an_image_inside_a_link_leaves_only_its_description_so_links_never_nest() -> None:
    notes = render_release_notes(
        f"{A_CHANGE}\n\n[![badge [see](https://c.example)](https://b.example/i.png)](https://a.example)"
    )
    assert notes.html.endswith(
        '<p><a href="https://a.example" rel="nofollow noopener noreferrer">badge see</a></p>\n'
    )


def test_raw_html_is_shown_as_text() -> None:
    notes = render_release_notes(f"{A_CHANGE}\n\n<b>bold</b> & <i>more</i>")
    assert notes.html.endswith("<p>&lt;b&gt;bold&lt;/b&gt; &amp; &lt;i&gt;more&lt;/i&gt;</p>\n")
    assert notes.text.endswith("\n<b>bold</b> & <i>more</i>")


def test_relative_links_lose_their_address_because_they_mean_something_different_everywhere() -> None:
    notes = render_release_notes(f"{A_CHANGE}\n\n[a](/admin) [b](../x) [c](//evil.example/x) [d](#top)")
    assert notes.html.endswith(
        '<p><a rel="nofollow noopener noreferrer">a</a> <a rel="nofollow noopener noreferrer">b</a> '
        '<a rel="nofollow noopener noreferrer">c</a> <a rel="nofollow noopener noreferrer">d</a></p>\n'
    )


def test_http_https_and_mailto_links_keep_their_address() -> None:
    notes = render_release_notes(
        f"{A_CHANGE}\n\n<https://a.example> [b](http://b.example) <support@c.example>"
    )
    assert notes.html.endswith(
        '<p><a href="https://a.example" rel="nofollow noopener noreferrer">https://a.example</a> '
        '<a href="http://b.example" rel="nofollow noopener noreferrer">b</a> '
        '<a href="mailto:support@c.example" rel="nofollow noopener noreferrer">support@c.example</a></p>\n'
    )


def test_ordered_lists_keep_their_start_and_strikethrough_renders() -> None:
    notes = render_release_notes("3. Fixed ~~nothing~~ clock drift\n4. Fixed tariffs")
    assert notes.html == (
        '<ol start="3">\n<li>Fixed <s>nothing</s> clock drift</li>\n<li>Fixed tariffs</li>\n</ol>\n'
    )


# Hostile input

XSS_VECTORS = {
    "script": "<script>alert(1)</script>",
    "img-onerror": "<img src=x onerror=alert(1)>",
    "javascript-link": "[x](javascript:alert(1))",
    "mixed-case-javascript": "[x](JaVaScRiPt:alert(1))",
    "vbscript-link": "[x](vbscript:msgbox(1))",
    "data-html-link": "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "file-link": "[x](file:///etc/passwd)",
    "markdown-image": "![x](https://evil.example/p.png)",
    "data-png-image": "![x](data:image/png;base64,iVBORw0KGgo=)",
    "data-svg-image": "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "image-alt-breakout": '![x" onerror="alert(1)](https://ok.example/p.png)',
    "javascript-autolink": "<javascript:alert(1)>",
    "decimal-entity-javascript": "[x](&#106;avascript:alert(1))",
    "hex-entity-javascript": "[x](&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;&#x3A;alert(1))",
    "named-entity-colon": "[x](javascript&colon;alert(1))",
    "tab-entity-javascript": "[x](java&#09;script:alert(1))",
    "angle-bracket-destination": "[x](<javascript:alert(1)>)",
    "reference-definition": "[x]\n\n[x]: javascript:alert(1)",
    "title-breakout": '[x](https://ok.example "t\\" onmouseover=\\"alert(1)")',
    "quote-in-destination": '[x](https://ok.example/"onmouseover="alert(1))',
    "raw-anchor": '<a href="javascript:alert(1)">x</a>',
    "html-in-link-text": "[<img src=x onerror=alert(1)>](https://ok.example)",
    "svg-onload": "<svg onload=alert(1)>",
    "iframe": '<iframe src="https://evil.example"></iframe>',
    "style-attribute": '<p style="background:url(javascript:alert(1))">x</p>',
    "style-element": "<style>body{display:none}</style>",
    "event-handler-div": '<div onmouseover="alert(1)">hover</div>',
    "object": '<object data="https://evil.example/x.swf"></object>',
    "math-xlink": '<math><mi xlink:href="javascript:alert(1)">x</mi></math>',
    "split-script": "<<script>script>alert(1)<</script>/script>",
    "comment-then-script": "<!-- x --><script>alert(1)</script>",
    "script-in-table": "| a | b |\n|---|---|\n| <script>alert(1)</script> | <img src=x onerror=alert(1)> |",
    "script-in-code": "`<script>alert(1)</script>` and\n\n```html\n<img src=x onerror=alert(1)>\n```",
    "emphasis-around-html": "*<script>*alert(1)*</script>*",
    "link-in-image-in-link": "[![x [y](javascript:alert(1))](https://evil.example/p.png)](https://ok.example)",
}


class _Tags(HTMLParser):
    """Every start tag with its attributes, values entity-decoded as a browser would decode them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def assert_safe(html: str) -> None:
    lowered = html.lower()
    for element in ("<script", "<img", "<iframe", "<svg", "<style", "<object", "<math"):
        assert element not in lowered
    parser = _Tags()
    parser.feed(html)
    parser.close()
    for tag, attrs in parser.tags:
        assert tag in ALLOWED_TAGS
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name)
            assert name != "style"
            if name == "href":
                assert value is not None
                scheme = value.split(":", 1)[0].strip().lower()
                assert scheme in ALLOWED_URL_SCHEMES, value
                assert "javascript:" not in value.lower() and "data:" not in value.lower()


@pytest.mark.parametrize("vector", XSS_VECTORS.values(), ids=XSS_VECTORS.keys())
def test_hostile_markdown_renders_to_nothing_that_runs_or_fetches(vector: str) -> None:
    notes = render_release_notes(f"{A_CHANGE}\n\n{vector}\n\n- {vector}")
    assert_safe(notes.html)


def test_the_safety_check_itself_catches_what_it_is_meant_to() -> None:
    for unsafe in (
        "<script>x</script>",
        '<a href="javascript:alert(1)">x</a>',
        '<a href="&#106;avascript:alert(1)">x</a>',
        '<p onclick="x">x</p>',
        '<img src="https://evil.example/p.png">',
        '<td style="color:red">x</td>',
    ):
        with pytest.raises(AssertionError):
            assert_safe(unsafe)


# Property: whatever is uploaded, the stored HTML is already what the sanitiser would make of it.

MARKDOWN_FRAGMENTS = [
    *(
        "\n",
        "\n\n",
        " ",
        "    ",
        "\t",
        "# ",
        "## ",
        "- ",
        "* ",
        "1. ",
        "> ",
        "---\n",
        "```\n",
        "`",
        "*",
        "**",
        "_",
    ),
    *(
        "~~",
        "[",
        "]",
        "(",
        ")",
        "![",
        "](",
        "<",
        ">",
        "&",
        "&#x6A;",
        "&amp;",
        "&nbsp;",
        '"',
        "'",
        "|",
        "|---|",
    ),
    *(
        "\\",
        "https://cfl.example/",
        "javascript:alert(1)",
        "data:text/html,x",
        "mailto:a@b.example",
        "<script>",
    ),
    *("<img src=x onerror=alert(1)>", '<a href="x">', "</a>", "Fixed clock drift after DST", "é", "\u202e"),
    *("[x](https://cfl.example/a)", "![x](https://cfl.example/p.png)", "<https://cfl.example>", "~~x~~"),
    *("[x](javascript:alert(1))", "\n| a | b |\n|---|:-:|\n| c | d |\n", "\n2. two\n3. three\n"),
]
markdown_texts = st.one_of(
    st.text(max_size=2_000),
    st.lists(
        st.one_of(
            st.sampled_from(MARKDOWN_FRAGMENTS), st.text(st.characters(exclude_categories=["Cc"]), max_size=8)
        ),
        max_size=200,
    ).map(lambda fragments: (A_CHANGE + "\n\n" + "".join(fragments))[:2_000]),
)


@settings(max_examples=200, deadline=None)
@given(markdown_texts)
def test_any_text_is_refused_or_renders_to_html_the_sanitiser_leaves_unchanged(markdown: str) -> None:
    try:
        notes = render_release_notes(markdown)
    except ReleaseNotesRejected as refused:
        assert refused.problems
        return
    resanitised = nh3.clean(
        notes.html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        tag_attribute_values=ALLOWED_ATTRIBUTE_VALUES,
        url_schemes=ALLOWED_URL_SCHEMES,
        link_rel=LINK_REL,
        url_relative=URL_RELATIVE,
    )
    assert resanitised == notes.html
    assert_safe(notes.html)
    assert render_release_notes(markdown) == notes
