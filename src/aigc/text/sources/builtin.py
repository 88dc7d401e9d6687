"""The `builtin` source: English technical prose that ships with every CPython.

Two kinds of documents, so the default run needs no network:
- the documentation topics in `pydoc_data.topics` (the language reference behind `help()`),
  split into one record per section;
- the docstrings of the standard library's modules, classes and functions, read with `ast`
  from the source files (never imported, so no module's import-time code runs).

With a `cache_dir`, the records are kept there under a key of what determines them (the
interpreter's version, the source's settings and every file's path, size and mtime), so an
unchanged installation is read back without parsing anything.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from aigc.config import BuiltinSource
from aigc.data.sources.base import SourceRecord

# A reST-style heading: a title line followed by a line of one repeated punctuation mark.
_HEADING = re.compile(r"^(?P<title>\S[^\n]*)\n(?P<rule>([*=\-~^+#])\3{2,})[ \t]*$", re.MULTILINE)


def read_builtin(source: BuiltinSource, cache_dir: Path | None = None) -> Iterator[SourceRecord]:
    if cache_dir is None:
        yield from _read(source)
        return
    cached = cache_dir / f"builtin-{_cache_key(source)}.json"
    if cached.exists():
        for item in json.loads(cached.read_text(encoding="utf-8")):
            yield SourceRecord(text=item["text"], uri=item["uri"], meta=item["meta"])
        return
    records = list(_read(source))
    cache_dir.mkdir(parents=True, exist_ok=True)
    for stale in cache_dir.glob("builtin-*.json"):  # one entry: the installation changed
        stale.unlink()
    temporary = cached.with_suffix(f".tmp-{os.getpid()}")
    items = [{"text": r.text, "uri": r.uri, "meta": r.meta} for r in records]
    temporary.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    temporary.replace(cached)
    yield from records


def _cache_key(source: BuiltinSource) -> str:
    """A hash of everything the records depend on: interpreter, settings, files' stat."""
    from pydoc_data import topics

    digest = hashlib.sha256(f"{sys.version}|{source.include}|{source.exclude_packages}".encode())
    root = stdlib_root()
    for path in [Path(topics.__file__), *sorted(root.rglob("*.py"))]:
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _read(source: BuiltinSource) -> Iterator[SourceRecord]:
    if "topics" in source.include:
        yield from _topic_sections()
    if "docstrings" in source.include:
        yield from _stdlib_docstrings(set(source.exclude_packages))


def _topic_sections() -> Iterator[SourceRecord]:
    from pydoc_data.topics import topics

    for topic in sorted(topics):
        for index, (title, body) in enumerate(split_sections(topics[topic])):
            yield SourceRecord(
                text=body,
                uri=f"pydoc-topic://{topic}#{index}",
                meta={"module": "pydoc_data.topics", "topic": topic, "section": title},
            )


def split_sections(text: str) -> list[tuple[str, str]]:
    """Split a topic at its headings into (title, section text including the heading)."""
    starts = [match.start() for match in _HEADING.finditer(text)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    sections = []
    for begin, end in zip(starts, [*starts[1:], len(text)], strict=True):
        chunk = text[begin:end].strip()
        if chunk:
            match = _HEADING.match(chunk)
            sections.append((match.group("title").strip() if match else "", chunk))
    return sections


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _stdlib_docstrings(excluded: set[str]) -> Iterator[SourceRecord]:
    root = stdlib_root()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if excluded.intersection(relative.parts) or relative.parts[0] in excluded:
            continue
        try:
            tree = ast.parse(path.read_bytes(), filename=str(relative))
        except (SyntaxError, ValueError):
            continue  # a few stdlib files are deliberately invalid (test data, py2 leftovers)
        module = _module_name(relative)
        for qualname, kind, lineno, docstring in _docstrings(tree):
            yield SourceRecord(
                text=docstring,
                uri=f"stdlib://{relative.as_posix()}#L{lineno}",
                meta={"module": module, "qualname": qualname, "kind": kind},
            )


def _module_name(relative: Path) -> str:
    parts = list(relative.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _docstrings(tree: ast.Module) -> Iterator[tuple[str, str, int, str]]:
    """(qualname, kind, line, docstring) for the module and every class and function in it."""
    docstring = ast.get_docstring(tree)
    if docstring:
        yield "", "module", 1, docstring
    stack: list[tuple[str, ast.AST]] = [("", tree)]
    while stack:
        prefix, node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                qualname = f"{prefix}{child.name}"
                docstring = ast.get_docstring(child)
                if docstring:
                    kind = "class" if isinstance(child, ast.ClassDef) else "function"
                    yield qualname, kind, child.lineno, docstring
                stack.append((qualname + ".", child))
            elif not isinstance(child, ast.expr):
                stack.append((prefix, child))
