"""The docs site's math: typeset as MathML when the site is built (docs/hooks/mathml.py), so no
page shows raw TeX. Needs the `docs` extra; skipped without it."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("latex2mathml")

ROOT = Path(__file__).resolve().parents[1]


def _load_hook():
    spec = importlib.util.spec_from_file_location("docs_hook_mathml",
                                                  ROOT / "docs" / "hooks" / "mathml.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = _load_hook()

# arithmatex's generic output, as it reaches the hook (the TeX is HTML-escaped)
PAGE = (
    '<p>In <span class="arithmatex">\\(d = 10^4\\)</span> dimensions, with '
    '<span class="arithmatex">\\(0 &lt; k &lt; \\sqrt d\\)</span> and '
    '<span class="arithmatex">\\(|\\hat p - p| \\le 0.01\\)</span>:</p>\n'
    '<div class="arithmatex">\\[ b(t, x) = \\dot\\beta\\,\\eta '
    '+ \\frac{\\alpha\\dot\\alpha}{\\alpha^2}\\,(x - \\beta\\eta). \\]</div>'
)


def _prose(html: str) -> str:
    """The text a reader sees as prose: code, scripts and the formulas themselves removed."""
    html = re.sub(r"<(pre|code|script|style|math)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"<[^>]*>", " ", html)


def test_formulas_become_mathml():
    out = hook.typeset_html(PAGE)
    assert out.count("<math ") == 4
    assert out.count('display="block"') == 1 and out.count('display="inline"') == 3
    assert "\\(" not in out and "\\[" not in out
    assert "<msup><mn>10</mn><mn>4</mn></msup>" in out
    assert "<msqrt><mi>d</mi></msqrt>" in out and "<mfrac>" in out
    # the TeX stays as alttext, escaped for the attribute
    assert 'alttext="0 &lt; k &lt; \\sqrt d"' in out
    # a bar is an ordinary symbol, as in TeX: no space around it
    assert 'lspace="0em" rspace="0em">&#x0007C;</mo>' in out
    assert "\\" not in _prose(out)


def test_toc_titles_are_typeset():
    title = hook.typeset_title("The claim: \\(N^*\\) against \\(d\\)")
    assert title.startswith("The claim: <math ") and title.count("<math ") == 2
    assert "\\(" not in title


@pytest.mark.parametrize(
    "tex", ["\\frac{1}{", "\\notacommand x", "\\begin{aligned} a &= b \\end{aligned}"])
def test_a_formula_that_cannot_be_typeset_is_an_error(tex):
    with pytest.raises(hook.MathError, match="cannot typeset"):
        hook.tex_to_mathml(tex)
    with pytest.raises(hook.MathError):
        hook.typeset_html(f'<span class="arithmatex">\\({tex}\\)</span>')


def test_a_wrapper_the_hook_cannot_read_is_an_error():
    with pytest.raises(hook.MathError, match="does not read"):
        hook.typeset_html('<span class="arithmatex">$x$</span>')


def test_built_site_shows_no_raw_tex(tmp_path):
    """Builds the whole site (a few seconds) and reads every page."""
    for name in ("mkdocs", "material", "mkdocstrings", "pymdownx"):
        pytest.importorskip(name)
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert not (site / "hooks").exists()
    schedules = (site / "concepts" / "schedules" / "index.html").read_text()
    assert schedules.count("<math ") >= 30
    assert (site / "stylesheets" / "math.css").is_file()
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 20
    for page in pages:
        html = page.read_text()
        assert 'class="arithmatex">\\' not in html, page
        prose = _prose(html)
        for raw in ("\\(", "\\)", "\\[", "\\]", "$"):
            assert raw not in prose, (page.relative_to(site), raw)
        assert re.search(r"\\[A-Za-z]+", prose) is None, page.relative_to(site)
