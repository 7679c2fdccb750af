"""Compiled templates kept between runs: the same emails from the cache as without it, never
a stale entry after an edit, the sandbox and error locations intact, and a broken or
read-only cache no worse than none."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from clvflow.errors import TemplateError
from clvflow.rendering.render import RenderedEmail, render_email
from clvflow.rendering.templates import TemplateLibrary
from tests.conftest import ROOT
from tests.test_rendering_safety import SSTI_PAYLOADS, _context
from tests.test_shipped_templates_content import LOCALES, NAMES, make_context


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    return tmp_path / "templates"


def _emails(library: TemplateLibrary) -> dict[tuple[str, str], RenderedEmail]:
    return {
        (name, locale): render_email(library.get(name, locale), make_context(locale))
        for name in NAMES
        for locale in LOCALES
    }


def test_the_cache_gives_the_same_emails_and_is_used(templates: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    uncached = _emails(TemplateLibrary(templates, "en"))
    first = TemplateLibrary(templates, "en", cache)
    assert _emails(first) == uncached
    assert first.compile_cache is not None and first.compile_cache.misses > 0
    again = TemplateLibrary(templates, "en", cache)
    assert _emails(again) == uncached
    assert again.compile_cache is not None
    looked_up = first.compile_cache.hits + first.compile_cache.misses
    assert (again.compile_cache.hits, again.compile_cache.misses) == (looked_up, 0)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("file", "old", "new"),
    [
        ("partials/footer.html.j2", "{{ shop.postal_address }}", "{{ shop.postal_address }} ✉"),
        ("layouts/base.html.j2", "font-size: 12px", "font-size: 13px"),
        ("win_back.html.j2", "</p>", " (edited)</p>"),
    ],
)
def test_an_edited_file_is_compiled_anew(
    templates: Path, tmp_path: Path, file: str, old: str, new: str
) -> None:
    cache = tmp_path / "cache"
    before = _emails(TemplateLibrary(templates, "en", cache))[("win_back", "en")]
    path = templates / file
    source = path.read_text()
    assert old in source
    path.write_text(source.replace(old, new))
    fresh = _emails(TemplateLibrary(templates, "en"))[("win_back", "en")]
    cached = _emails(TemplateLibrary(templates, "en", cache))[("win_back", "en")]
    assert cached == fresh != before


def test_a_damaged_cache_is_rebuilt(templates: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = TemplateLibrary(templates, "en", cache)
    expected = _emails(first)
    entries = [p for p in cache.rglob("*") if p.is_file()]
    assert entries
    for number, entry in enumerate(entries):
        entry.write_bytes(b"" if number % 2 else b"\x00garbage{")
    library = TemplateLibrary(templates, "en", cache)
    assert _emails(library) == expected
    assert first.compile_cache is not None and library.compile_cache is not None
    assert library.compile_cache.misses == first.compile_cache.misses == len(entries)


def test_a_cache_that_cannot_be_written_is_skipped(templates: Path, tmp_path: Path) -> None:
    # (a file where the folder should be: as unwritable as a read-only folder, even for root)
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    assert _emails(TemplateLibrary(templates, "en", blocker)) == _emails(
        TemplateLibrary(templates, "en")
    )


def test_errors_from_cached_code_name_the_same_file_and_line(
    templates: Path, tmp_path: Path
) -> None:
    path = templates / "vip_thanks.hu.html.j2"
    lines = path.read_text().splitlines()
    lines.insert(8, "{{ customer.shoe_size }}")
    path.write_text("\n".join(lines) + "\n")
    cache = tmp_path / "cache"
    reports = []
    for _ in range(2):  # compiled, then from the cache
        library = TemplateLibrary(templates, "en", cache)
        with pytest.raises(TemplateError) as info:
            render_email(library.get("vip_thanks", "hu"), make_context("hu"))
        reports.append((info.value.path, info.value.line, info.value.message))
    assert reports[0] == reports[1]
    assert reports[0][:2] == (path, 9) and "shoe_size" in reports[0][2]


@pytest.mark.parametrize("payload", SSTI_PAYLOADS)
def test_cached_templates_stay_in_the_sandbox(tmp_path: Path, payload: str) -> None:
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "t.html.j2").write_text(f"---\nsubject: x\n---\n<p>{payload}</p>\n")
    for _ in range(2):
        library = TemplateLibrary(folder, "en", tmp_path / "cache")
        with pytest.raises(TemplateError):
            render_email(library.get("t", "en"), _context())
