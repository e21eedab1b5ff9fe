#!/usr/bin/env python3
"""Turns every ```cpp block of README.md into a translation unit, so that the build compiles
(and ctest runs) what the README shows: a snippet that does not compile as written fails the
build.

A block is used as written. Its #include lines go to the top of the file. If it defines
functions itself (it has `int main(`), or starts with a declaration at namespace scope
(`template`, `namespace`, `struct`, `class`, `using namespace` followed by definitions), it is
used as a whole file; otherwise the rest of the block becomes the body of main(), which is how
a reader would paste it. Nothing is added but `int main() { ... return 0; }`.

usage: extract_snippets.py README.md OUT_DIR    (writes OUT_DIR/snippet_NN.cpp, prints names)
"""
import pathlib
import re
import sys


def blocks(text):
    out, cur, line_no = [], None, 0
    for i, line in enumerate(text.splitlines(), 1):
        if cur is None and line.strip() == "```cpp":
            cur, line_no = [], i + 1
        elif cur is not None and line.strip() == "```":
            out.append((line_no, cur))
            cur = None
        elif cur is not None:
            cur.append(line)
    if cur is not None:
        sys.exit(f"README.md: ```cpp block at line {line_no} is not closed")
    return out


def translation_unit(src_line, lines):
    includes = [l for l in lines if l.startswith("#include")]
    body = [l for l in lines if not l.startswith("#include")]
    head = f"// README.md line {src_line}, extracted by tests/readme/extract_snippets.py\n"
    code = "\n".join(body)
    whole_file = "int main(" in code or re.match(
        r"\s*(//[^\n]*\n\s*)*(template\b|namespace\b|struct\b|class\b)", code)
    if whole_file:
        return head + "\n".join(includes) + "\n" + code + "\n"
    # `using namespace x;` lines stay at file scope, before main.
    usings = [l for l in body if l.startswith("using namespace")]
    rest = [l for l in body if not l.startswith("using namespace")]
    return (head + "\n".join(includes) + "\n" + "\n".join(usings) + "\nint main() {\n" +
            "\n".join("  " + l for l in rest) + "\n  return 0;\n}\n")


def main():
    readme, out_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    out_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for k, (line, lines) in enumerate(blocks(readme.read_text(encoding="utf-8"))):
        name = f"snippet_{k:02d}"
        path = out_dir / f"{name}.cpp"
        text = translation_unit(line, lines)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        names.append(f"{name}:{line}")
    print(";".join(names), end="")


if __name__ == "__main__":
    main()
