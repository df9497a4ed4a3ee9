#!/usr/bin/env python3
"""Lists import cycles between the modules of each crate (issue 23, point 3).

A module is a source file (`a/b.rs` or `a/b/mod.rs` is `a::b`). An edge goes from a module
to every module whose path it names (`crate::…`, `super::…`, and names brought in by `use`
or `mod`); edges between a module and its own ancestors or descendants are left out (a
parent declares its children, a child uses its parent's items). A cycle is a strongly
connected set of two or more modules. Exit code 1 when a crate has one.

Usage: .ci/module-cycles.py CRATE_SRC_DIR...
"""
import os
import re
import sys


def modules(src):
    found = {}
    for root, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, src)[:-3].split(os.sep)
            if rel[-1] in ("mod", "lib", "main"):
                rel = rel[:-1]
            if rel and rel[0] == "bin":
                continue
            found[tuple(rel)] = path
    return found


CODE_PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE = re.compile(r"\buse\s+((?:crate|super|self)::[^;]*);", re.S)


def expand(tree):
    """`a::{b, c::{d, e}}` -> `a::b`, `a::c::d`, `a::c::e`."""
    tree = re.sub(r"\s+", "", tree)
    depth, start = 0, None
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                prefix, inner, suffix = tree[:start], tree[start + 1 : i], tree[i + 1 :]
                items, depth2, last = [], 0, 0
                for j, c in enumerate(inner):
                    if c == "{":
                        depth2 += 1
                    elif c == "}":
                        depth2 -= 1
                    elif c == "," and depth2 == 0:
                        items.append(inner[last:j])
                        last = j + 1
                items.append(inner[last:])
                out = []
                for item in items:
                    if item and item != "self":
                        out.extend(expand(prefix + item + suffix))
                    elif item == "self":
                        out.append(prefix.rstrip(":"))
                return out
    return [re.sub(r"\bas\b.*$", "", tree)]


def strip_comments(text):
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def edges(mods):
    graph = {m: set() for m in mods}
    for module, path in mods.items():
        text = strip_comments(open(path, encoding="utf-8").read())
        named = CODE_PATH.findall(text)
        for tree in USE.findall(text):
            for path_text in expand(tree):
                named.extend(CODE_PATH.findall(path_text))
        for root, rest in named:
            parts = rest.split("::")[1:]
            if root == "crate":
                base = ()
            elif root == "self":
                base = module
            else:
                base = module[:-1]
                while parts and parts[0] == "super":
                    parts = parts[1:]
                    base = base[:-1]
            target = list(base)
            best = None
            for part in parts:
                target.append(part)
                if tuple(target) in mods:
                    best = tuple(target)
            if best is None or best == module:
                continue
            if best[: len(module)] == module or module[: len(best)] == best:
                continue  # ancestor or descendant
            graph[module].add(best)
    return graph


def cycles(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def main():
    failed = False
    for src in sys.argv[1:]:
        graph = edges(modules(src))
        found = cycles(graph)
        for component in found:
            failed = True
            names = ["::".join(m) or "crate" for m in component]
            print(f"{src}: cycle between {', '.join(names)}")
            for m in component:
                inside = sorted("::".join(t) for t in graph[m] if t in component)
                print(f"    {'::'.join(m)} -> {', '.join(inside)}")
        if not found:
            print(f"{src}: no cycle between modules ({len(graph)} modules)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
