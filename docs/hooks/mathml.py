"""Typeset the docs' math as MathML when the site is built.

`pymdownx.arithmatex` (with `generic: true`) leaves each formula as TeX in
`<span class="arithmatex">\\(...\\)</span>` or `<div class="arithmatex">\\[...\\]</div>`, to be
typeset in the reader's browser by a script. This hook converts that TeX to MathML instead,
which current browsers render natively: the built site needs no script and no network access
to show its formulas. The TeX stays on each `<math>` element of a page as its `alttext`. A
formula that cannot be converted stops the build with the page and the formula named, rather
than reaching the site as raw TeX.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET

from latex2mathml.converter import convert

__all__ = ["MathError", "tex_to_mathml", "typeset_html", "typeset_title"]

# arithmatex's generic output: the TeX is HTML-escaped inside the wrapper
_INLINE = re.compile(r'<span class="arithmatex">\s*\\\((.*?)\\\)\s*</span>', re.S)
_BLOCK = re.compile(r'<div class="arithmatex">\s*\\\[(.*?)\\\]\s*</div>', re.S)
# a TOC title keeps the delimiters as plain text (the tags are stripped)
_TITLE_INLINE = re.compile(r"\\\((.+?)\\\)", re.S)
_MATH_TAG = re.compile(r"^<math\b")
# a bar (|, \|, \lvert, ...) is an ordinary symbol in TeX, with no space around it; an <mo> in the
# middle of a row would get a relation's spaces from the browser's operator dictionary
_BAR = re.compile(r"<mo((?:(?!lspace)[^>])*)>(&#x0007C;|&#x02016;)</mo>")
# a wrapper left without MathML in it: arithmatex wrote something the patterns above miss
_UNTYPESET = re.compile(r'class="arithmatex">(?!<math\b).*', re.M)


class MathError(ValueError):
    """A formula the converter cannot turn into MathML."""


def tex_to_mathml(tex: str, *, display: bool = False) -> str:
    """One formula, TeX without its delimiters, as a `<math>` element with the TeX as `alttext`.

    Raises `MathError` where the converter fails, where its output is not well-formed, or where
    a TeX command it does not know would be shown as text (it passes those through as
    `<mi>\\name</mi>`).
    """
    tex = tex.strip()
    try:
        mathml = convert(tex, display="block" if display else "inline")
    except Exception as err:  # the converter raises several types of its own
        raise MathError(f"cannot typeset {tex!r}: {type(err).__name__} {err}") from err
    try:
        root = ET.fromstring(mathml)
    except ET.ParseError as err:
        raise MathError(f"cannot typeset {tex!r}: the MathML is not well-formed ({err})") from err
    if "\\" in "".join(root.itertext()):
        raise MathError(f"cannot typeset {tex!r}: an unknown command would be shown as text")
    mathml = _BAR.sub(r'<mo\1 lspace="0em" rspace="0em">\2</mo>', mathml)
    alt = f'<math alttext="{html.escape(tex)}"'
    return _MATH_TAG.sub(lambda _: alt, mathml, count=1)


def typeset_html(text: str) -> str:
    """Every arithmatex formula in a page's HTML replaced by MathML (the wrappers are kept)."""

    def block(match: re.Match[str]) -> str:
        mathml = tex_to_mathml(html.unescape(match.group(1)), display=True)
        return f'<div class="arithmatex">{mathml}</div>'

    def inline(match: re.Match[str]) -> str:
        mathml = tex_to_mathml(html.unescape(match.group(1)))
        return f'<span class="arithmatex">{mathml}</span>'

    out = _INLINE.sub(inline, _BLOCK.sub(block, text))
    left = _UNTYPESET.search(out)
    if left is not None:
        raise MathError(f"a formula in a form this hook does not read: {left.group(0)[:80]!r}")
    return out


def typeset_title(title: str) -> str:
    """A table-of-contents title, whose formulas arrive as `\\(...\\)` text, with MathML."""
    return _TITLE_INLINE.sub(lambda m: tex_to_mathml(html.unescape(m.group(1))), title)


def _typeset_toc(items) -> None:
    for item in items:
        item.title = typeset_title(item.title)
        _typeset_toc(item.children)


# -- mkdocs events ----------------------------------------------------------------------------
# Run before the other plugins' handlers of the same event, so that any of them that copies the
# headings (as Material's typeset plugin does for the table of contents) gets the MathML.

try:
    from mkdocs.exceptions import PluginError
    from mkdocs.plugins import event_priority
except ImportError:  # pragma: no cover - the functions above need no mkdocs
    pass
else:

    @event_priority(50)
    def on_page_content(html_text, page, config, files):
        try:
            out = typeset_html(html_text)
            _typeset_toc(page.toc.items)
        except MathError as err:
            raise PluginError(f"{page.file.src_uri}: {err}") from err
        return out
