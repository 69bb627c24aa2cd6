"""The messages the tool prints when something is wrong, read from its source with `ast`.

A message is found where it is made, at one of these sinks in orchestrator/ and hub/:

- `raise SomeError(message)`: each argument that is a message, or each item of a list of messages;
- `problems.append(message)`, `problems.extend(messages)` and the same on the other lists that collect
  problems (`found`, `missing`, `blocked`, `errors`, `refused`), including `(path, message)` pairs;
- `report(path, message)`, the inventory loader's reporter;
- `Observation(False, message)`, a failed gate observation (the evidence a rollout prints);
- `return message` (or a list or tuple of them) in a function whose name says it returns problems
  (`*problem*`, `readiness`, `not_ready`);
- `print(message, file=sys.stderr)`;
- the hub's log events at level `warn` or `error` (`log("event", level="warn", ...)`): the event name.

A message is an f-string, a string, a `+` of them or a conditional between two of them; each
placeholder (`{...}`) stands for text known only at run time. A message that is only a placeholder, or
only placeholders and punctuation, forwards a message made elsewhere and is not a message of its own.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("orchestrator", "hub")
COLLECTORS = frozenset({"problems", "found", "missing", "blocked", "errors", "refused"})
PROBLEM_FUNCTION = re.compile(r"problem|readiness|^not_ready$")
PLACEHOLDER = "\x00"  # stands for a placeholder inside a skeleton
SHORTEST_KEY = 12  # a literal part shorter than this does not identify a message on its own


@dataclass(frozen=True)
class Message:
    file: str  # relative to the repository
    line: int
    sink: str  # raise InputError, problems.append, report, log event, ...
    skeleton: str  # the message with each placeholder as PLACEHOLDER; a log event: its name

    @property
    def parts(self) -> list[str]:
        """The literal parts, whitespace collapsed."""
        return [" ".join(part.split()) for part in self.skeleton.split(PLACEHOLDER)]

    @property
    def key(self) -> str:
        """What identifies the message: its longest literal part, trimmed of punctuation at either end."""
        return max((_trim(part) for part in self.parts), key=len, default="")

    @property
    def forwards(self) -> bool:
        """Only placeholders and punctuation: a message made elsewhere, passed on."""
        return sum(character.isalpha() for character in self.skeleton) < 4

    def shown(self) -> str:
        """The skeleton as people read it, each placeholder as `…`."""
        return " ".join(self.skeleton.replace(PLACEHOLDER, "…").split())

    def found_in(self, text: str) -> bool:
        """Whether `text` (whitespace collapsed) holds this message: its key if the key is long enough to
        identify it, else every literal part in order with anything in between."""
        if len(self.key) >= SHORTEST_KEY:
            return self.key in text
        pattern = r".{1,120}?".join(re.escape(part.strip()) for part in self.parts if part.strip())
        return re.search(pattern, text) is not None


def _trim(text: str) -> str:
    return text.strip(" :;,.(`'\"")


def skeletons(node: ast.expr, constants: Mapping[str, str] | None = None) -> list[str]:
    """Every text `node` can make, placeholders as PLACEHOLDER; [] when it is not a message expression.
    `constants`: the module's string constants, which a name stands for."""
    constants = constants or {}
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Name) and node.id in constants:
        return [constants[node.id]]
    if isinstance(node, ast.JoinedStr):
        texts = [""]
        for value in node.values:
            if isinstance(value, ast.Constant):
                texts = [text + str(value.value) for text in texts]
            else:
                assert isinstance(value, ast.FormattedValue)
                inner = value.value
                choices = skeletons(inner, constants) if isinstance(inner, (ast.IfExp, ast.Name)) else []
                texts = [text + choice for text in texts for choice in (choices or [PLACEHOLDER])]
        return texts
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left = skeletons(node.left, constants) or [PLACEHOLDER]
        right = skeletons(node.right, constants) or [PLACEHOLDER]
        return [a + b for a in left for b in right]
    if isinstance(node, ast.IfExp):
        return skeletons(node.body, constants) + skeletons(node.orelse, constants)
    return []


def _items(node: ast.expr) -> list[ast.expr]:
    """The messages in a list argument: a list, tuple, comprehension or generator of them, or `(path, message)`."""
    if isinstance(node, (ast.List, ast.Tuple)):
        if isinstance(node, ast.Tuple) and len(node.elts) == 2 and not skeletons(node.elts[0], {}):
            return [node.elts[1]]  # (path, message)
        return [item for element in node.elts for item in _items(element)]
    if isinstance(node, (ast.ListComp, ast.GeneratorExp)):
        return _items(node.elt)
    if isinstance(node, ast.BoolOp):
        return [item for value in node.values for item in _items(value)]
    return [node]


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


class _Finder(ast.NodeVisitor):
    def __init__(self, file: str, module: ast.Module) -> None:
        self.file = file
        self.found: list[Message] = []
        self.functions: list[str] = []
        self.constants = {target.id: statement.value.value for statement in module.body
                          if isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Constant)
                          and isinstance(statement.value.value, str)
                          for target in statement.targets if isinstance(target, ast.Name)}

    def add(self, node: ast.AST, sink: str, expressions: list[ast.expr]) -> None:
        for expression in expressions:
            for skeleton in skeletons(expression, self.constants):
                self.found.append(Message(self.file, node.lineno, sink, skeleton))  # type: ignore[attr-defined]

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.functions.append(node.name)
        self.generic_visit(node)
        self.functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Raise(self, node: ast.Raise) -> None:
        if isinstance(node.exc, ast.Call):
            self.add(node, f"raise {_name(node.exc.func)}", [item for argument in node.exc.args for item in _items(argument)])
        self.generic_visit(node)

    def visit_Return(self, node: ast.Return) -> None:
        if node.value is not None and self.functions and PROBLEM_FUNCTION.search(self.functions[-1]):
            self.add(node, f"return in {self.functions[-1]}", _items(node.value))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        function = node.func
        name = _name(function)
        if isinstance(function, ast.Attribute) and _name(function.value) in COLLECTORS and name in ("append", "extend"):
            if node.args:
                self.add(node, f"{_name(function.value)}.{name}", _items(node.args[0]))
        elif name == "report" and len(node.args) == 2:
            self.add(node, "report", [node.args[1]])
        elif name == "Observation" and len(node.args) == 2 and isinstance(node.args[0], ast.Constant) and node.args[0].value is False:
            self.add(node, "Observation(False)", [node.args[1]])
        elif name == "print" and any(k.arg == "file" and _name(k.value) == "stderr" for k in node.keywords) and node.args:
            self.add(node, "print to stderr", [node.args[0]])
        elif name in ("log", "_log") and node.args and isinstance(node.args[0], ast.Constant):
            level = next((k.value for k in node.keywords if k.arg == "level"), None)
            if isinstance(level, ast.Constant) and level.value in ("warn", "error"):
                self.found.append(Message(self.file, node.lineno, f"log {level.value}", str(node.args[0].value)))
        self.generic_visit(node)


def source_files() -> Iterator[Path]:
    for directory in SOURCE_DIRS:
        yield from sorted((REPO / directory).rglob("*.py"))


def messages() -> list[Message]:
    """Every message made in orchestrator/ and hub/, in file and line order."""
    found: list[Message] = []
    for path in source_files():
        module = ast.parse(path.read_text(encoding="utf-8"), str(path))
        finder = _Finder(str(path.relative_to(REPO)), module)
        finder.visit(module)
        found.extend(finder.found)
    return sorted(found, key=lambda message: (message.file, message.line, message.skeleton))


if __name__ == "__main__":
    for message in messages():
        flag = "  (forwards)" if message.forwards else ""
        print(f"{message.file}:{message.line}: [{message.sink}] {message.shown()}  ==> key {message.key!r}{flag}")
