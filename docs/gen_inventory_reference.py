"""Write docs/inventory-reference.md, the inventory's key reference, from the inventory's JSON Schema.

    .venv/bin/python docs/gen_inventory_reference.py           # write the page
    .venv/bin/python docs/gen_inventory_reference.py --check   # exit 1 if the page is out of date

Every key of schema/inventory.schema.json gets a row: its type (from the schema's constraints), whether it
is required, its default, its description (the schema's `description`) and an example value. The default
is the schema's `default` where it has one; otherwise it is read from orchestrator/inventory.py, where the
loader fills in what the inventory leaves out: each `.get("key", default)` on a value whose place in the
schema is known, each default of a dataclass built with `**value` (orchestrator/model.py), and the default
memory budgets (DEFAULT_MEMORY_BUDGETS_MB). The example is the key's value in inventories/showcase.yml,
else the schema's `examples`. tests/docs/test_inventory_reference.py fails when the committed page differs
from what this script writes.
"""

from __future__ import annotations

import ast
import json
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SCHEMA_FILE = REPO / "schema" / "inventory.schema.json"
LOADER_FILE = REPO / "orchestrator" / "inventory.py"
MODEL_FILE = REPO / "orchestrator" / "model.py"
EXAMPLE_FILE = REPO / "inventories" / "showcase.yml"
PAGE = REPO / "docs" / "inventory-reference.md"
EXAMPLE_WIDTH = 60  # an example longer than this is cut, with …

Location = str  # a JSON pointer into the schema: "#" (the top), "#/$defs/broker", "#/properties/app", ...
Default = str  # as shown in the page


# --- the schema -------------------------------------------------------------------------------------------


class Schema:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.definitions: dict[str, Any] = document.get("$defs", {})
        self.uses = self._count_uses()

    def node(self, location: Location) -> dict[str, Any]:
        node: Any = self.document
        for part in location.split("/")[1:]:
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def resolved(self, node: dict[str, Any]) -> dict[str, Any]:
        """`node` with a `$ref` replaced by the definition it names, the node's own keywords over it."""
        if "$ref" not in node:
            return node
        definition = self.resolved(self.definitions[node["$ref"].removeprefix("#/$defs/")])
        return {**definition, **{key: value for key, value in node.items() if key != "$ref"}}

    def child(self, location: Location, kind: str, key: str = "") -> Location | None:
        """Where a property (`kind` "property"), a mapping's values ("values") or a list's items ("items") of the
        object at `location` are described: the definition a `$ref` names, else the place itself."""
        node = self.resolved(self.node(location))
        if kind == "property":
            if key not in node.get("properties", {}):
                return None
            place = f"{location}/properties/{key}"
        elif kind == "values":
            shared = _shared_reference(node.get("properties", {}))
            if shared is not None:
                return shared
            if not isinstance(node.get("additionalProperties"), dict):
                return None
            place = f"{location}/additionalProperties"
        else:
            if not isinstance(node.get("items"), dict):
                return None
            place = f"{location}/items"
        reference = self.node(place).get("$ref")
        return reference if reference is not None else place

    def shared(self, location: Location) -> bool:
        """A definition with keys of its own, used in more than one place: its keys get a section of their own."""
        return location.startswith("#/$defs/") and self.uses.get(location, 0) > 1 and "properties" in self.node(location)

    def _count_uses(self) -> dict[str, int]:
        uses: dict[str, int] = {}

        def visit(node: Any) -> None:
            if isinstance(node, dict):
                if "$ref" in node:
                    uses[node["$ref"]] = uses.get(node["$ref"], 0) + 1
                for value in node.values():
                    visit(value)
            elif isinstance(node, list):
                for value in node:
                    visit(value)

        visit(self.document)
        return uses


def _shared_reference(properties: Mapping[str, Any]) -> Location | None:
    """The one definition every property names, as in `environments: {staging: $ref, production: $ref}`."""
    references = {value.get("$ref") for value in properties.values()}
    return references.pop() if len(references) == 1 and None not in references else None


def type_text(schema: Schema, raw: dict[str, Any]) -> str:
    node = schema.resolved(raw)
    if "enum" in node:
        return "one of " + ", ".join(f"`{json.dumps(choice)}`" if not isinstance(choice, str) else f"`{choice}`"
                                     for choice in node["enum"])
    kind = node.get("type")
    if kind == "array":
        items = node.get("items", {})
        text = f"list of {_plural_type(type_text(schema, items))}"
        if node.get("minItems"):
            text += f" (at least {node['minItems']})"
        return text
    if kind == "object" or "properties" in node or "additionalProperties" in node:
        values = node.get("additionalProperties")
        if "properties" in node:
            return "mapping (keys below)" if not raw.get("$ref") or not schema.shared(raw["$ref"]) else "mapping"
        if isinstance(values, dict):
            names = node.get("propertyNames", {})
            name_text = _pattern_text(schema.resolved(names)) if names else "names"
            return f"mapping of {name_text} to {_plural_type(type_text(schema, values))}"
        return "mapping"
    text = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}.get(kind, str(kind))
    limits = []
    if node.get("minLength"):
        text = "non-empty string"
    if "pattern" in node:
        text += f" matching `{node['pattern']}`"
    if "minimum" in node and "maximum" in node:
        limits.append(f"{node['minimum']} to {node['maximum']}")
    elif "minimum" in node:
        limits.append(f"at least {node['minimum']}")
    elif "maximum" in node:
        limits.append(f"at most {node['maximum']}")
    if "exclusiveMinimum" in node:
        limits.append(f"more than {node['exclusiveMinimum']}")
    return text + (f", {', '.join(limits)}" if limits else "")


def _pattern_text(node: dict[str, Any]) -> str:
    return f"names matching `{node['pattern']}`" if "pattern" in node else "names"


def _plural_type(text: str) -> str:
    for word in ("string", "integer", "number", "boolean", "mapping"):
        if text.startswith(word) or text.startswith(f"non-empty {word}"):
            return text.replace(word, word + "s", 1)
    return text


# --- the defaults the loader fills in ---------------------------------------------------------------------


@dataclass
class Defaults:
    """What orchestrator/inventory.py uses when a key is absent, by (the schema location of its object, key)."""

    found: dict[tuple[Location, str], set[Default]] = field(default_factory=dict)
    unplaced: list[str] = field(default_factory=list)  # `.get("key", default)` calls on values of no known place

    def add(self, location: Location, key: str, shown: Default) -> None:
        self.found.setdefault((location, key), set()).add(shown)

    def of(self, location: Location, key: str) -> Default | None:
        shown = self.found.get((location, key))
        return " or ".join(sorted(shown)) if shown else None


# Where the loader reads the inventory, and the names that hold a known part of it when a function starts.
# A file's functions are all followed, or only those named (tenants.py also reads Showcase's own tenant file).
LOADERS: tuple[tuple[Path, dict[str, dict[str, str]], frozenset[str] | None], ...] = (
    (LOADER_FILE, {"load_inventory": {"data": "#"}, "_build": {"data": "#"}}, None),
    (REPO / "orchestrator" / "tenants.py", {"inline_tenants": {"entries": "#/properties/tenants/properties/events"}},
     frozenset({"inline_tenants"})),
)


def loader_defaults(schema: Schema) -> Defaults:
    """Follow the inventory's data through the loader's functions (which schema location each name holds),
    then collect each default given where a key is read."""
    dataclass_defaults = _dataclass_defaults(ast.parse(MODEL_FILE.read_text(encoding="utf-8")))
    defaults = Defaults()
    for path, seeds, only in LOADERS:
        _file_defaults(schema, path, seeds, only, dataclass_defaults, defaults)
    _add_memory_budgets(schema, defaults)
    return defaults


def _file_defaults(schema: Schema, path: Path, seeds: Mapping[str, Mapping[str, str]], only: frozenset[str] | None,
                   dataclass_defaults: Mapping[str, Mapping[str, Default]], defaults: Defaults) -> None:
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    functions = {node.name: node for node in tree.body
                 if isinstance(node, ast.FunctionDef) and (only is None or node.name in only)}
    bound: dict[str, dict[str, set[Location]]] = {name: {} for name in functions}
    for function, names in seeds.items():
        for name, location in names.items():
            bound[function][name] = {location}
    for _ in range(len(functions) + 1):  # parameters are bound from call sites: go until nothing new is learnt
        before = _snapshot(bound)
        for function in functions.values():
            _Flow(schema, function, bound, functions).run()
        if _snapshot(bound) == before:
            break
    for name, function in functions.items():
        flow = _Flow(schema, function, bound, functions)
        for call in ast.walk(function):
            if not isinstance(call, ast.Call):
                continue
            if _is_get(call) and len(call.args) == 2:
                key = call.args[0].value  # type: ignore[attr-defined]
                owners = flow.locations(call.func.value)  # type: ignore[attr-defined]
                shown = _shown_default(call.args[1], source)
                if not owners:
                    defaults.unplaced.append(f"{path.name}:{call.lineno}: .get({key!r}, ...) in {name}")
                for owner in owners:
                    if shown is not None and schema.child(owner, "property", key) is not None:
                        defaults.add(owner, key, shown)
            if isinstance(call.func, ast.Name) and call.func.id in dataclass_defaults:
                for owner in (location for keyword in call.keywords if keyword.arg is None
                              for location in flow.unpacked(keyword.value)):
                    for key, shown in dataclass_defaults[call.func.id].items():
                        if schema.child(owner, "property", key) is not None:
                            defaults.add(owner, key, shown)
        for value in ast.walk(function):
            # `spec.get("url") or <default>`
            if isinstance(value, ast.BoolOp) and isinstance(value.op, ast.Or) and len(value.values) == 2:
                first = value.values[0]
                if isinstance(first, ast.Call) and _is_get(first) and len(first.args) == 1:
                    shown = _shown_default(value.values[1], source)
                    for owner in flow.locations(first.func.value):  # type: ignore[attr-defined]
                        if shown is not None:
                            defaults.add(owner, first.args[0].value, shown)  # type: ignore[attr-defined]


def _snapshot(bound: Mapping[str, Mapping[str, set[Location]]]) -> str:
    return json.dumps({name: {key: sorted(value) for key, value in names.items()} for name, names in bound.items()},
                      sort_keys=True)


def _is_get(call: ast.Call) -> bool:
    return (isinstance(call.func, ast.Attribute) and call.func.attr == "get" and bool(call.args)
            and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str))


class _Flow:
    """The schema locations the names of one function hold, from its assignments, loops and parameters."""

    def __init__(self, schema: Schema, function: ast.FunctionDef, bound: dict[str, dict[str, set[Location]]],
                 functions: Mapping[str, ast.FunctionDef]) -> None:
        self.schema = schema
        self.function = function
        self.names = bound[function.name]
        self.bound = bound
        self.functions = functions

    def run(self) -> None:
        for node in ast.walk(self.function):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                self._bind(node.targets[0].id, self.locations(node.value))
            elif isinstance(node, ast.NamedExpr):
                self._bind(node.target.id, self.locations(node.value))
            elif isinstance(node, (ast.comprehension, ast.For)):
                self._bind_loop(node.target, node.iter)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in self.functions:
                callee = self.functions[node.func.id]
                parameters = [argument.arg for argument in callee.args.args]
                for parameter, argument in zip(parameters, node.args):
                    found = self.locations(argument)
                    if found:
                        self.bound[callee.name].setdefault(parameter, set()).update(found)

    def _bind(self, name: str, locations: set[Location]) -> None:
        if locations:
            self.names.setdefault(name, set()).update(locations)

    def _bind_loop(self, target: ast.expr, iterable: ast.expr) -> None:
        """`for x in data["regions"]`: the list's items; `for name, value in mapping.items()`: its values."""
        call = iterable.args[0] if isinstance(iterable, ast.Call) and isinstance(iterable.func, ast.Name) and iterable.args else iterable
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "items":
            if isinstance(target, ast.Tuple) and len(target.elts) == 2 and isinstance(target.elts[1], ast.Name):
                self._bind(target.elts[1].id, self._step(self.locations(call.func.value), "values"))
            return
        if isinstance(target, ast.Name):
            self._bind(target.id, self._step(self.locations(call), "items"))

    def _step(self, locations: set[Location], kind: str, key: str = "") -> set[Location]:
        found = set()
        for location in locations:
            child = self.schema.child(location, kind, key)
            if child is not None:
                found.add(child)
        return found

    def locations(self, node: ast.expr) -> set[Location]:
        """The schema locations the value of `node` can be."""
        if isinstance(node, ast.Name):
            return set(self.names.get(node.id, ()))
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
            return self._step(self.locations(node.value), "property", node.slice.value)
        if isinstance(node, ast.Call) and _is_get(node):
            return self._step(self.locations(node.func.value), "property", node.args[0].value)  # type: ignore[attr-defined]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args and node.func.id in ("_mapping", "_list", "dict", "list", "tuple", "sorted"):
            return self.locations(node.args[0])
        if isinstance(node, ast.BoolOp):
            return set().union(*(self.locations(value) for value in node.values))
        if isinstance(node, ast.IfExp):
            return self.locations(node.body) | self.locations(node.orelse)
        return set()

    def unpacked(self, node: ast.expr) -> set[Location]:
        """`**value` or `**{**value, ...}`: the locations of the mapping unpacked."""
        if isinstance(node, ast.Dict):
            return set().union(*(self.locations(value) for key, value in zip(node.keys, node.values) if key is None))
        return self.locations(node)


def _dataclass_defaults(tree: ast.Module) -> dict[str, dict[str, Default]]:
    found: dict[str, dict[str, Default]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            fields = {}
            for statement in node.body:
                if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name) and statement.value is not None:
                    shown = _shown_literal(statement.value)
                    if shown is not None:
                        fields[statement.target.id] = shown
            if fields:
                found[node.name] = fields
    return found


def _shown_default(node: ast.expr, source: str) -> Default | None:
    """A default as the page shows it; None for "no value" (None, or an empty collection: the key is optional)."""
    literal = _shown_literal(node)
    if literal is not None:
        return literal
    if isinstance(node, ast.Constant) and node.value is None:
        return None
    if isinstance(node, (ast.Tuple, ast.List, ast.Dict)) and not (node.elts if not isinstance(node, ast.Dict) else node.keys):
        return None
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
        return f"the value of `{node.slice.value}`"
    if isinstance(node, ast.JoinedStr):
        return "`" + "".join(part.value if isinstance(part, ast.Constant) else f"<{ast.get_source_segment(source, part.value)}>"
                             for part in node.values) + "`"
    return f"`{ast.get_source_segment(source, node)}`"


def _shown_literal(node: ast.expr) -> Default | None:
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return None
    if value is None or (isinstance(value, (tuple, list, dict)) and not value):
        return None
    return f"`{flow_yaml(value)}`"


def _add_memory_budgets(schema: Schema, defaults: Defaults) -> None:
    """Each mode's default budget (DEFAULT_MEMORY_BUDGETS_MB), under each component of the budget shape."""
    sys.path.insert(0, str(REPO))
    try:
        from orchestrator.inventory import DEFAULT_MEMORY_BUDGETS_MB
    finally:
        sys.path.remove(str(REPO))
    budget = "#/$defs/budget"
    for component in schema.node(budget)["properties"]:
        per_mode = [f"{mode} {flow_yaml(values[component])}" for mode, values in DEFAULT_MEMORY_BUDGETS_MB.items()
                    if component in values]
        defaults.add(budget, component, "; ".join(per_mode) if per_mode else "`0`")


# --- the example inventory --------------------------------------------------------------------------------


def example_values() -> Any:
    sys.path.insert(0, str(REPO))
    try:
        from hub.yaml_loader import load_yaml_text
    finally:
        sys.path.remove(str(REPO))
    return load_yaml_text(EXAMPLE_FILE.read_text(encoding="utf-8"), EXAMPLE_FILE.name).data


def flow_yaml(value: Any) -> str:
    """`value` on one line, as YAML's flow style writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        plain = value and not value[0] in "!&*{}[],#|>@`\"'%- ?:" and ": " not in value and " #" not in value \
            and value not in ("true", "false", "null", "yes", "no", "on", "off") and not _looks_numeric(value)
        return value if plain else json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {flow_yaml(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(flow_yaml(item) for item in value) + "]"
    return str(value)


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _short(text: str) -> str:
    return text if len(text) <= EXAMPLE_WIDTH else text[: EXAMPLE_WIDTH - 1].rstrip() + "…"


# --- the page -----------------------------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    type: str
    default: str
    description: str
    example: str


@dataclass
class Section:
    title: str
    intro: str
    rows: list[Row]


SHARED_TITLES = {
    "#/$defs/environment": ("An environment", "environments.staging and environments.production"),
    "#/$defs/budget": ("A memory budget", "memory_budgets_mb.<mode> and regions[].memory_budgets_mb.<mode>"),
    "#/$defs/broker": ("A broker", "regions[].broker, modes.anycable.broker and modes.hub.broker"),
    "#/$defs/fixed_tenant": ("A fixed tenant", "tenants.index and tenants.demo"),
}


class Reference:
    def __init__(self) -> None:
        self.schema = Schema(json.loads(SCHEMA_FILE.read_text(encoding="utf-8")))
        self.defaults = loader_defaults(self.schema)
        self.example = example_values()
        self.missing: list[str] = []  # keys without a description or an example

    def sections(self) -> list[Section]:
        top = self.schema.document
        sections = []
        for key in top["properties"]:
            location = self.schema.child("#", "property", key)
            assert location is not None
            rows = [self._row(key, "#", key, location, [[key]])]
            rows += list(self._rows(location, key, [[key]]))
            sections.append(Section(f"`{key}`", "", rows))
        for location, (title, used) in SHARED_TITLES.items():
            assert self.schema.shared(location), f"{location} is no longer a shared definition"
            uses = self._uses(location)
            rows = list(self._rows(location, "", uses))
            sections.append(Section(title, f"Used at {_code_list(used)}.", rows))
        unshared = [location for location in self.schema.definitions if self.schema.shared(f"#/$defs/{location}")
                    and f"#/$defs/{location}" not in SHARED_TITLES]
        assert not unshared, f"shared definitions without a section: {unshared}"
        return sections

    def _uses(self, location: Location) -> list[list[str]]:
        """Paths in the example inventory to the places that use the shared definition `location`."""
        found: list[list[str]] = []

        def visit(place: Location, path: list[str]) -> None:
            node = self.schema.resolved(self.schema.node(place))
            for key in node.get("properties", {}):
                child = self.schema.child(place, "property", key)
                if child == location:
                    found.append([*path, key])
                elif child is not None and not self.schema.shared(child):
                    visit(child, [*path, key])
            for kind, step in (("values", "*"), ("items", "[]")):
                child = self.schema.child(place, kind)
                if child == location:
                    found.append([*path, step])
                elif child is not None and not self.schema.shared(child):
                    visit(child, [*path, step])

        visit("#", [])
        return found

    def _rows(self, location: Location, prefix: str, paths: list[list[str]]) -> Iterator[Row]:
        node = self.schema.resolved(self.schema.node(location))
        for key in node.get("properties", {}):
            child = self.schema.child(location, "property", key)
            assert child is not None
            name = f"{prefix}.{key}" if prefix else key
            yield self._row(name, location, key, child, [[*path, key] for path in paths])
            if not self.schema.shared(child):
                yield from self._rows(child, name, [[*path, key] for path in paths])
        for kind, suffix, step in (("values", ".<name>", "*"), ("items", "[]", "[]")):
            child = self.schema.child(location, kind)
            if child is None or self.schema.shared(child):
                continue
            name = f"{prefix}{suffix}"
            inner = self.schema.resolved(self.schema.node(child))
            if "properties" in inner or isinstance(inner.get("additionalProperties"), dict) and "properties" in self.schema.resolved(inner["additionalProperties"]):
                yield from self._rows(child, name, [[*path, step] for path in paths])

    def _row(self, name: str, owner: Location, key: str, location: Location, paths: list[list[str]]) -> Row:
        raw = self.schema.resolved(self.schema.node(owner)).get("properties", {}).get(key, {})
        node = self.schema.resolved(raw)
        required = key in self.schema.resolved(self.schema.node(owner)).get("required", ())
        if "default" in node:
            default = f"`{flow_yaml(node['default'])}`"
        else:
            default = "required" if required else (self.defaults.of(owner, key) or "none")
        description = " ".join(str(node.get("description", "")).split())
        if self.schema.shared(location):
            title = SHARED_TITLES[location][0]
            description = (description + " " if description else "") + f"See [{title.lower()}](#{title.lower().replace(' ', '-')})."
        if not node.get("description"):
            self.missing.append(f"{name}: no description")
        example = self._example(node, paths)
        if example is None:
            self.missing.append(f"{name}: no example")
        return Row(f"`{name}`", type_text(self.schema, raw), default, description, example or "")

    def _example(self, node: dict[str, Any], paths: list[list[str]]) -> str | None:
        has_keys = "properties" in node
        for path in paths:
            value = _lookup(self.example, path)
            if value is not _ABSENT:
                if has_keys and isinstance(value, dict):
                    return "(its keys)"
                if isinstance(value, list) and "properties" in self.schema.resolved(node.get("items", {})):
                    return "(its items' keys)"
                return f"`{_short(flow_yaml(value))}`"
        if node.get("examples"):
            return f"`{_short(flow_yaml(node['examples'][0]))}`"
        if has_keys:
            return "(its keys)"
        if "properties" in self.schema.resolved(node.get("items", {})):
            return "(its items' keys)"
        return None

    def page(self) -> str:
        lines = [
            "# Inventory reference",
            "",
            "<!-- Written by docs/gen_inventory_reference.py from schema/inventory.schema.json: edit those, then run",
            "     .venv/bin/python docs/gen_inventory_reference.py -->",
            "",
            f"Every key of the inventory, as `schema/inventory.schema.json` defines it. {self._top_description()}",
            "",
            "**Default** is what applies when the key is left out: *required* keys must be given, *none* means the",
            "feature is off or the value is taken from elsewhere, as the description says. **Example** is the value in",
            "`inventories/showcase.yml` where it sets the key, else a value the schema gives as an example.",
            "`[]` stands for each item of a list and `<name>` for each key of a mapping.",
            "",
            "Required at the top: " + ", ".join(f"`{key}`" for key in self.schema.document.get("required", ())) + ".",
            "",
        ]
        for section in self.sections():
            lines += [f"## {section.title}", ""]
            if section.intro:
                lines += [section.intro, ""]
            rules = self._rules(section)
            if rules:
                lines += [rules, ""]
            lines += ["| Key | Type | Default | Description | Example |", "| --- | --- | --- | --- | --- |"]
            for row in section.rows:
                cells = [row.key, row.type, row.default, row.description, row.example]
                lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
            lines.append("")
        return "\n".join(lines)

    def _top_description(self) -> str:
        return " ".join(str(self.schema.document.get("description", "")).split())

    def _rules(self, section: Section) -> str:
        """The section's conditional rules (`allOf` of `if`/`then`), in words."""
        key = section.title.strip("`")
        location = self.schema.child("#", "property", key) if key in self.schema.document["properties"] else None
        if location is None:
            return ""
        node = self.schema.resolved(self.schema.node(location))
        sentences = []
        for rule in node.get("allOf", ()):
            condition = rule.get("if", {}).get("properties", {})
            then = rule.get("then", {})
            if len(condition) != 1 or "const" not in next(iter(condition.values())):
                raise ValueError(f"{key}: a rule this page cannot put in words: {rule}")
            (name, test), = condition.items()
            parts = []
            if then.get("required"):
                parts.append(", ".join(f"`{each}`" for each in then["required"]) + " required")
            forbidden = then.get("not", {})
            names = forbidden.get("required") or [each for choice in forbidden.get("anyOf", ()) for each in choice.get("required", ())]
            if names:
                parts.append("no " + " or ".join(f"`{each}`" for each in names))
            sentences.append(f"With `{name}: {test['const']}`: {'; '.join(parts)}.")
        return " ".join(sentences)


_ABSENT = object()


def _lookup(data: Any, path: list[str]) -> Any:
    """The value at `path` in the example; `[]` tries each item of a list and `*` each value of a mapping, in
    order, until one holds the rest of the path."""
    if not path:
        return data
    step, rest = path[0], path[1:]
    if step == "[]":
        candidates = data if isinstance(data, list) else []
    elif step == "*":
        candidates = list(data.values()) if isinstance(data, dict) else []
    else:
        candidates = [data[step]] if isinstance(data, dict) and step in data else []
    for candidate in candidates:
        value = _lookup(candidate, rest)
        if value is not _ABSENT:
            return value
    return _ABSENT


def _code_list(text: str) -> str:
    names = [name.strip() for part in text.split(" and ") for name in part.split(", ")]
    shown = [f"`{name}`" for name in names]
    return ", ".join(shown[:-1]) + " and " + shown[-1] if len(shown) > 1 else shown[0]


def _cell(text: str) -> str:
    """A table cell: a `|` outside code spans escaped (inside one, the site's Markdown takes it as it is)."""
    parts = text.replace("\n", " ").split("`")
    return "`".join(part if index % 2 else part.replace("|", "\\|") for index, part in enumerate(parts))


def render() -> tuple[str, list[str], list[str]]:
    """The page, the keys that lack a description or an example, and the loader's defaults placed nowhere."""
    reference = Reference()
    page = reference.page()
    return page, reference.missing, reference.defaults.unplaced


def main(argv: list[str]) -> int:
    page, missing, unplaced = render()
    for problem in missing + unplaced:
        print(f"warning: {problem}", file=sys.stderr)
    if argv[1:] == ["--check"]:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current != page:
            print(f"{PAGE.relative_to(REPO)} is out of date: run .venv/bin/python docs/gen_inventory_reference.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
