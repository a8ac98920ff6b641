#!/usr/bin/env python3
"""The house rules that code review alone lets slip (docs/architecture.md, "Crates"):

1. no non-test source file is over 600 lines (the lines before a file's
   `#[cfg(test)]` block);
2. no two source files import each other in a circle: every `use crate::…`,
   `use super::…` and `use self::…` is resolved to the file that defines
   the module it names, and the import graph must have no cycle.

Usage: scripts/check-structure.py [--max-lines N]. Exits 1 naming what broke.
"""

import argparse
import os
import re
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
CRATES = ["actors", "store", "api", "node", "chaos"]
USE = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+([^;]+);", re.M)
INLINE = re.compile(r"\b(?:crate|super)(?:::\w+)+")


def source_files(crate):
    src = os.path.join(ROOT, crate, "src")
    for directory, _, files in os.walk(src):
        for name in files:
            if name.endswith(".rs"):
                yield os.path.join(directory, name)


def non_test_lines(path):
    count = 0
    with open(path, encoding="utf-8") as file:
        for line in file:
            if line.startswith("#[cfg(test)]"):
                break
            count += 1
    return count


def module_of(path, src):
    """The module path of a file: src/a/b.rs and src/a/b/mod.rs are [a, b]."""
    parts = os.path.relpath(path, src)[: -len(".rs")].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    if parts and parts[0] == "bin":
        return None  # binaries are crate roots of their own
    return parts


def file_of(module, files):
    """The file defining the longest prefix of `module` (an item's path ends in a name)."""
    for length in range(len(module), -1, -1):
        found = files.get(tuple(module[:length]))
        if found:
            return found
    return None


def import_paths(text):
    """Every path a file names outside its tests: its `use` lines, braces
    expanded, and paths written in place (`crate::a::B` in a type)."""
    text = re.sub(r"#\[cfg\(test\)\][\s\S]*", "", text)
    text = re.sub(r"//[^\n]*", "", text)
    for match in USE.finditer(text):
        yield from expand(re.sub(r"\s+", "", match.group(1)))
    for match in INLINE.finditer(USE.sub("", text)):
        yield match.group(0)


def expand(tree):
    brace = tree.find("{")
    if brace < 0:
        yield tree.split(" as ")[0]
        return
    prefix, inner = tree[:brace], tree[brace + 1 : tree.rindex("}")]
    depth, start = 0, 0
    for index, char in enumerate(inner + ","):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == "," and depth == 0:
            part = inner[start:index]
            start = index + 1
            if part:
                yield from expand(prefix + part)


def edges(crate):
    src = os.path.join(ROOT, crate, "src")
    files = {}
    for path in source_files(crate):
        module = module_of(path, src)
        if module is not None:
            files[tuple(module)] = path
    graph = {path: set() for path in files.values()}
    for module, path in files.items():
        with open(path, encoding="utf-8") as file:
            text = file.read()
        for imported in import_paths(text):
            parts = imported.split("::")
            if parts[0] == "crate":
                target = list(parts[1:])
            elif parts[0] == "self":
                target = list(module) + parts[1:]
            elif parts[0] == "super":
                base = list(module)
                while parts and parts[0] == "super":
                    base = base[:-1]
                    parts = parts[1:]
                target = base + parts
            else:
                continue
            found = file_of(target, files)
            if found and found != path:
                graph[path].add(found)
    return graph


def cycles(graph):
    """Strongly connected components of more than one file (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in graph:
        if node not in index:
            visit(node)
    return found


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-lines", type=int, default=600)
    args = parser.parse_args()
    failures = []
    for crate in CRATES:
        for path in sorted(source_files(crate)):
            lines = non_test_lines(path)
            if lines > args.max_lines:
                failures.append(
                    f"{os.path.relpath(path, ROOT)}: {lines} lines of non-test code (at most {args.max_lines})"
                )
        graph = edges(crate)
        for component in cycles(graph):
            names = ", ".join(os.path.relpath(path, ROOT) for path in component)
            failures.append(f"files that import each other in a circle: {names}")
    for failure in failures:
        print(f"check-structure: {failure}", file=sys.stderr)
    if failures:
        sys.exit(1)
    print("check-structure: every source file under the line limit; no import circles")


if __name__ == "__main__":
    main()
