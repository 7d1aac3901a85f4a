"""Build the bundled sample corpus from documentation that ships inside installed packages.

The documents are docstrings (module, class, function and method docs) of
sympy, mpmath, networkx, numpy and the Python standard library: real prose about
maths, science/numerics and code, written by those projects and redistributable
under their licences (BSD-3-Clause, PSF-2.0). For each extraction group the
builder imports a fixed list of public modules, collects the docstrings of the
objects they expose, keeps the prose-rich ones, and picks a fixed number by a
hash of their dotted name, so the same package versions always give the same
file. It writes `documents.jsonl`, `SOURCES.md` and the licence files.

Run: python -m corpora.build_sample [--out corpora/sample]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.metadata
import inspect
import json
import platform
import re
import shutil
import sys
import sysconfig
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from corpora import SAMPLE_DIR

STDLIB = "python-stdlib"
MIN_PROSE_CHARS = 400  # prose outside code examples and section rules
MAX_DOC_CHARS = 12_000  # keeps the file small; longer docs are rare reference pages
MAX_SIGNATURE_CHARS = 300


@dataclass(frozen=True)
class Group:
    """A set of public modules of one package whose docstrings share a domain."""

    name: str
    package: str  # distribution name, or STDLIB
    domain: str  # math | science | code
    licence: str  # SPDX identifier
    project_url: str
    modules: tuple[str, ...]
    quota: int  # documents taken from this group
    owner: str = ""  # only objects defined under this module prefix (default: the package)

    @property
    def owner_prefix(self) -> str:
        return self.owner or self.package


GROUPS: tuple[Group, ...] = (
    Group("sympy", "sympy", "math", "BSD-3-Clause", "https://www.sympy.org", (
        "sympy", "sympy.combinatorics", "sympy.ntheory", "sympy.discrete", "sympy.stats",
        "sympy.calculus.util", "sympy.geometry", "sympy.logic", "sympy.sets", "sympy.series",
        "sympy.solvers", "sympy.polys", "sympy.integrals", "sympy.matrices", "sympy.tensor",
    ), 90),
    Group("sympy.physics", "sympy", "science", "BSD-3-Clause", "https://www.sympy.org", (
        "sympy.physics.units", "sympy.physics.mechanics", "sympy.physics.vector",
        "sympy.physics.optics", "sympy.physics.quantum", "sympy.physics.hydrogen",
        "sympy.physics.wigner", "sympy.physics.qho_1d", "sympy.physics.sho",
        "sympy.physics.paulialgebra", "sympy.physics.continuum_mechanics",
        "sympy.physics.control", "sympy.physics.hep.gamma_matrices",
    ), 40, owner="sympy.physics"),
    Group("mpmath", "mpmath", "math", "BSD-3-Clause", "https://mpmath.org", ("mpmath",), 40),
    Group("networkx", "networkx", "math", "BSD-3-Clause", "https://networkx.org",
          ("networkx",), 40),
    Group("numpy", "numpy", "science", "BSD-3-Clause", "https://numpy.org", (
        "numpy", "numpy.linalg", "numpy.fft", "numpy.random", "numpy.polynomial",
        "numpy.polynomial.polynomial", "numpy.polynomial.chebyshev",
        "numpy.polynomial.legendre", "numpy.polynomial.hermite", "numpy.ma", "numpy.lib",
        "numpy.lib.stride_tricks", "numpy.lib.scimath",
    ), 120),
    Group(STDLIB, STDLIB, "code", "PSF-2.0", "https://www.python.org", (
        "abc", "argparse", "array", "ast", "asyncio", "base64", "bisect", "calendar",
        "codecs", "collections", "collections.abc", "concurrent.futures", "configparser",
        "contextlib", "copy", "csv", "dataclasses", "datetime", "difflib", "dis", "doctest",
        "email.message", "enum", "filecmp", "fnmatch", "functools", "gc", "gettext", "glob",
        "graphlib", "gzip", "hashlib", "heapq", "hmac", "html.parser", "http.client",
        "inspect", "io", "ipaddress", "itertools", "json", "logging", "lzma", "mmap",
        "multiprocessing", "operator", "os", "os.path", "pathlib", "pickle", "pkgutil",
        "pprint", "queue", "re", "reprlib", "sched", "secrets", "selectors", "shelve",
        "shlex", "shutil", "signal", "socket", "sqlite3", "string", "struct", "subprocess",
        "tarfile", "tempfile", "textwrap", "threading", "timeit", "tokenize", "traceback",
        "types", "typing", "unittest", "urllib.parse", "urllib.request", "uuid", "warnings",
        "weakref", "xml.etree.ElementTree", "zipfile", "zlib",
    ), 160),
)


@dataclass(frozen=True)
class Candidate:
    """One extracted docstring, ready to become a JSONL record."""

    title: str
    text: str
    group: Group
    package_version: str

    def record(self) -> dict[str, str]:
        return {
            "text": self.text,
            "title": self.title,
            "source": self.group.package,
            "domain": self.group.domain,
            "licence": self.group.licence,
            "package_version": self.package_version,
        }


def package_version(package: str) -> str:
    if package == STDLIB:
        return platform.python_version()
    return importlib.metadata.version(package)


def iter_public_objects(module: ModuleType) -> Iterator[tuple[str, object]]:
    """The module itself, the objects it exports, and the methods of exported classes."""
    yield module.__name__, module
    names = getattr(module, "__all__", None)
    if names is None:
        names = [name for name in dir(module) if not name.startswith("_")]
    exported = [(name, getattr(module, name, None)) for name in sorted(set(names))]
    exported = [(name, obj) for name, obj in exported
                if not name.startswith("_") and not inspect.ismodule(obj) and has_own_doc(obj)]
    yield from ((f"{module.__name__}.{name}", obj) for name, obj in exported)
    # Methods after all module-level objects, so a function exported both ways
    # (mpmath.bell and FPContext.bell) is titled by its module-level name.
    for name, cls in exported:
        if not inspect.isclass(cls):
            continue
        # vars(), not dir(): only methods the class defines, not inherited copies.
        for attr in sorted(vars(cls)):
            method = vars(cls)[attr]
            if isinstance(method, classmethod | staticmethod):
                method = getattr(cls, attr)  # the bound function has a signature
            if not attr.startswith("_") and has_own_doc(method):
                yield f"{module.__name__}.{name}.{attr}", method


def has_own_doc(obj: object) -> bool:
    """Whether obj's docstring describes obj itself, not the type of a plain value.

    A constant such as `codecs.BOM` (bytes) carries its type's docstring; callable
    instances with their own docs (numpy ufuncs, mpmath's bound functions) are kept.
    """
    if inspect.isclass(obj) or inspect.isroutine(obj) or isinstance(obj, property):
        return True
    return callable(obj) and obj.__doc__ is not type(obj).__doc__


def belongs_to(obj: object, group: Group) -> bool:
    """Whether `obj` is defined by the group's package (not re-exported from elsewhere)."""
    target = obj.fget if isinstance(obj, property) else obj  # a property has no __module__
    module_name = (target.__name__ if inspect.ismodule(target)
                   else getattr(target, "__module__", None))
    if not isinstance(module_name, str):
        return True  # ufuncs and bound C methods carry no module; they came from this namespace
    if group.package == STDLIB:
        root = module_name.split(".")[0]
        return root.lstrip("_") in sys.stdlib_module_names or root in sys.stdlib_module_names
    prefix = group.owner_prefix
    return module_name == prefix or module_name.startswith(prefix + ".")


def canonical_title(exported_name: str, obj: object) -> str:
    """The defining module's dotted name when it is public, else the name it was exported as."""
    if inspect.ismodule(obj):
        return obj.__name__
    module_name = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if isinstance(module_name, str) and isinstance(qualname, str):
        dotted = f"{module_name}.{qualname}"
        if not any(part.startswith("_") for part in dotted.split(".")) and "<" not in dotted:
            return dotted
    return exported_name


def signature_line(title: str, obj: object) -> str:
    """'title(params)' for callables whose signature is readable and run-independent."""
    if inspect.ismodule(obj) or isinstance(obj, property):
        return title
    try:
        signature = str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return title
    # Reprs such as '<object object at 0x7f...>' differ per run; keep the file reproducible.
    if " at 0x" in signature or len(signature) > MAX_SIGNATURE_CHARS:
        return title
    return f"{title}{signature}"


def prose_chars(doc: str) -> int:
    """Characters of explanatory prose: lines outside doctest examples and rule lines."""
    total = 0
    in_example = False
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped.startswith((">>>", "...")):
            in_example = True
            continue
        if not stripped:
            in_example = False
            continue
        if in_example or not re.search(r"[A-Za-z]{3}", stripped):
            continue  # doctest output, or '-----' / '=====' section rules
        total += len(stripped)
    return total


def extract_group(group: Group) -> list[Candidate]:
    """Every prose-rich docstring the group's modules expose, deduplicated by text."""
    version = package_version(group.package)
    seen_titles: set[str] = set()
    seen_docs: set[str] = set()
    candidates: list[Candidate] = []
    for module_name in group.modules:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation notices from optional submodules
            module = importlib.import_module(module_name)
        for exported_name, obj in iter_public_objects(module):
            doc = getattr(obj, "__doc__", None)
            if not isinstance(doc, str) or not belongs_to(obj, group):
                continue
            doc = inspect.cleandoc(doc)
            title = canonical_title(exported_name, obj)
            if title in seen_titles or doc in seen_docs:
                continue
            if prose_chars(doc) < MIN_PROSE_CHARS or len(doc) > MAX_DOC_CHARS:
                continue
            seen_titles.add(title)
            seen_docs.add(doc)
            text = f"{signature_line(title, obj)}\n\n{doc}"
            candidates.append(Candidate(title, text, group, version))
    return candidates


def select(candidates: list[Candidate], quota: int) -> list[Candidate]:
    """A spread-out, reproducible subset: the `quota` titles with the lowest SHA-256."""
    ranked = sorted(candidates, key=lambda c: hashlib.sha256(c.title.encode()).hexdigest())
    return sorted(ranked[:quota], key=lambda c: c.title)


def build_records(groups: tuple[Group, ...] = GROUPS) -> list[Candidate]:
    """Selected documents of every group, in group order, texts unique across groups."""
    chosen: list[Candidate] = []
    seen_texts: set[str] = set()
    for group in groups:
        fresh = [c for c in extract_group(group) if c.text not in seen_texts]
        picked = select(fresh, group.quota)
        if len(picked) < group.quota:
            raise RuntimeError(
                f"group {group.name} yielded {len(picked)} documents, quota is {group.quota}: "
                "add modules to the group or lower its quota"
            )
        seen_texts.update(c.text for c in picked)
        chosen.extend(picked)
    return chosen


def licence_files(package: str) -> list[Path]:
    """Licence and author files shipped with the installed package (or the interpreter)."""
    if package == STDLIB:
        return [Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt"]
    files = importlib.metadata.distribution(package).files or []
    return sorted(
        Path(str(f.locate())) for f in files
        if ".dist-info" in str(f) and re.match(r"(LICEN[CS]E|COPYING|AUTHORS)", f.name, re.I)
    )


def write_licences(out_dir: Path, packages: list[str]) -> dict[str, list[str]]:
    """Copy each package's licence files to out_dir/licenses as '<package>-<file name>'."""
    target = out_dir / "licenses"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    copied: dict[str, list[str]] = {}
    for package in packages:
        copied[package] = []
        for path in licence_files(package):
            name = f"{package}-{path.name}"
            shutil.copyfile(path, target / name)
            copied[package].append(name)
        if not copied[package]:
            raise RuntimeError(f"no licence file found for {package}; cannot redistribute it")
    return copied


def write_sources_md(out_dir: Path, groups: tuple[Group, ...], chosen: list[Candidate],
                     licences: dict[str, list[str]], size_bytes: int) -> None:
    per_group = Counter(c.group.name for c in chosen)
    per_domain = Counter(c.group.domain for c in chosen)
    lines = [
        "# Sample corpus: sources and licences",
        "",
        f"`documents.jsonl` holds {len(chosen)} documents ({size_bytes:,} bytes), generated by "
        "`python -m corpora.build_sample`; do not edit it by hand.",
        "",
        "Each document is one docstring (of a module, class, function or method) that ships "
        "inside an installed package, so its text was written by that project, not by us. "
        "The builder imports a fixed list of public modules per group, takes the `__doc__` of "
        "the objects they export (and of the methods their classes define), normalises "
        "indentation with `inspect.cleandoc`, and keeps docstrings with at least "
        f"{MIN_PROSE_CHARS} characters of prose outside code examples and at most "
        f"{MAX_DOC_CHARS:,} characters in total. From those it takes a fixed number per group, "
        "chosen by the SHA-256 of the object's dotted name. The text starts with the object's "
        "dotted name and call signature (from `inspect.signature`), then a blank line, then "
        "the docstring. The `title` is the dotted name.",
        "",
        "Record fields: `text`, `title`, `source` (package), `domain` (math / science / code), "
        "`licence` (SPDX), `package_version`.",
        "",
        "| group | package | version | licence | project | domain | documents | licence files |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for group in groups:
        files = ", ".join(f"`licenses/{name}`" for name in licences[group.package])
        lines.append(
            f"| {group.name} | {group.package} | {package_version(group.package)} | "
            f"{group.licence} | {group.project_url} | {group.domain} | "
            f"{per_group[group.name]} | {files} |"
        )
    lines += ["", "Documents per domain: " + ", ".join(
        f"{domain} {count}" for domain, count in sorted(per_domain.items())) + ".", "",
        "The BSD-3-Clause licences require keeping their copyright notices with "
        "redistributed text: they are copied verbatim from each installed package's "
        "`.dist-info` folder (the standard library's from the interpreter's `LICENSE.txt`).",
        "", "Modules read per group:", ""]
    lines += [f"- {group.name}: " + ", ".join(f"`{m}`" for m in group.modules)
              for group in groups]
    (out_dir / "SOURCES.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_corpus(out_dir: Path, groups: tuple[Group, ...] = GROUPS) -> list[Candidate]:
    """Build the records and write documents.jsonl, SOURCES.md and licenses/ into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = build_records(groups)
    corpus_file = out_dir / "documents.jsonl"
    with corpus_file.open("w", encoding="utf-8", newline="\n") as handle:
        for candidate in chosen:
            handle.write(json.dumps(candidate.record(), ensure_ascii=False) + "\n")
    packages = list(dict.fromkeys(group.package for group in groups))
    licences = write_licences(out_dir, packages)
    write_sources_md(out_dir, groups, chosen, licences, corpus_file.stat().st_size)
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SAMPLE_DIR,
                        help=f"folder to write into (default: {SAMPLE_DIR})")
    args = parser.parse_args(argv)
    chosen = write_corpus(args.out)
    counts = Counter(c.group.domain for c in chosen)
    print(f"wrote {len(chosen)} documents to {args.out / 'documents.jsonl'}: "
          + ", ".join(f"{domain} {count}" for domain, count in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
