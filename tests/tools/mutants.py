"""Operator-level mutants of one module, made from its AST (the file is never edited).

`mutants(source, enums, only)` lists every mutant of a module as `Mutant(index, line,
description)`; `mutated_code(source, path, index, enums, only)` compiles the module with
mutant `index` applied. The same walk does both, so an index always names the same change.

Operators (one change per mutant):

* comparisons flipped (`==`/`!=`, `<`/`>=`, `>`/`<=`, `in`/`not in`, `is`/`is not`);
* `and`/`or` swapped, a `not` removed, an `if`/`while`/ternary test on a bare value negated;
* `continue` ↔ `break`;
* constants: `True`/`False` swapped, a number + 1, a string changed (an alert level becomes
  the next level, anything else `XX…XX`);
* set-like operators `&` ↔ `|`, `+` ↔ `-`;
* `return <value>` → `return None` (not `return False`: the same wherever a bool is tested);
* tables: each member removed from a set/frozenset/tuple literal, each missing member of
  the same vocabulary (strings of the sibling sets in one dict, or an enum's members) added
  to a set, each entry removed from a dict literal;
* an enum member (`State.ACTIVE`, `access.Permission.READ`) replaced by the next member.

Not mutated: docstrings, f-strings (messages), the arguments of `raise`d exceptions and of
`log.*` calls (messages), type annotations, imports, `__all__`.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import CodeType

LEVELS = ("hard-stop", "warning", "info")
CMP_SWAP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
BIN_SWAP: dict[type[ast.operator], type[ast.operator]] = {
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
}
SYMBOL = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.GtE: ">=",
    ast.Gt: ">",
    ast.LtE: "<=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.Add: "+",
    ast.Sub: "-",
}


@dataclass(frozen=True)
class Mutant:
    index: int
    line: int
    description: str


Make = Callable[[], ast.AST]


def enums_of(source: str) -> dict[str, list[str]]:
    """`{EnumClass: [MEMBER, …]}` for the Enum/StrEnum classes a module defines."""
    found: dict[str, list[str]] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and any(
            "Enum" in ast.unparse(base) for base in node.bases
        ):
            found[node.name] = [
                t.id
                for stmt in node.body
                if isinstance(stmt, ast.Assign)
                for t in stmt.targets
                if isinstance(t, ast.Name)
            ]
    return found


def _show(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _enum_ref(node: ast.AST, enums: dict[str, list[str]]) -> tuple[str, str] | None:
    """(Enum, MEMBER) when node is `Enum.MEMBER` or `module.Enum.MEMBER`."""
    if not isinstance(node, ast.Attribute):
        return None
    owner = node.value
    name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", None)
    if name in enums and node.attr in enums[name]:
        return name, node.attr
    return None


class _Walker(ast.NodeTransformer):
    """Counts mutation sites in a fixed order; applies the one whose number is `target`."""

    def __init__(self, target: int, enums: dict[str, list[str]]) -> None:
        self.target = target
        self.enums = enums
        self.count = 0
        self.found: list[Mutant] = []
        self.applied: Mutant | None = None
        self.vocabulary: tuple[str, ...] = ()

    # -- bookkeeping
    def _offer(self, node: ast.AST, options: list[tuple[str, Make]]) -> ast.AST | None:
        for description, make in options:
            mutant = Mutant(self.count, getattr(node, "lineno", 0), description)
            self.found.append(mutant)
            if self.count == self.target:
                self.applied = mutant
                new = make()
                self.count += 1
                return ast.copy_location(new, node) if isinstance(new, ast.expr) else new
            self.count += 1
        return None

    def visit(self, node: ast.AST) -> ast.AST:
        options = self._options(node)
        if options:
            replaced = self._offer(node, options)
            if replaced is not None:
                return replaced
        return super().visit(node)

    # -- what not to mutate
    def _body(self, body: list[ast.stmt]) -> list[ast.stmt]:
        start = 1 if body and _is_docstring(body[0]) else 0
        return body[:start] + [self.visit(s) for s in body[start:]]  # type: ignore[misc]

    def visit_Module(self, node: ast.Module) -> ast.AST:
        node.body = self._body(node.body)
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        node.body = self._body(node.body)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.body = self._body(node.body)  # arguments' defaults and annotations are left alone
        return node

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        return node

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        return node if _is_docstring(node) else self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> ast.AST:
        return node

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        return node

    def visit_Raise(self, node: ast.Raise) -> ast.AST:
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is not None:
            node.value = self.visit(node.value)  # type: ignore[assignment]
        return node

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return node
        node.value = self.visit(node.value)  # type: ignore[assignment]
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "log"
        ):
            return node
        return self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> ast.AST:
        # Strings of the sibling sets in one table are each set's vocabulary for additions.
        saved = self.vocabulary
        words: set[str] = set()
        for value in node.values:
            for member in _set_members(value) or ():
                if isinstance(member, ast.Constant) and isinstance(member.value, str):
                    words.add(member.value)
        self.vocabulary = tuple(sorted(words))
        node.keys = [
            k if k is None or isinstance(k, ast.Tuple) else self.visit(k) for k in node.keys
        ]  # type: ignore[misc]
        node.keys = [self._visit_key_tuple(k) for k in node.keys]  # type: ignore[misc]
        node.values = [self.visit(v) for v in node.values]  # type: ignore[misc]
        self.vocabulary = saved
        return node

    def _visit_key_tuple(self, key: ast.expr | None) -> ast.expr | None:
        if isinstance(key, ast.Tuple):
            key.elts = [self.visit(e) for e in key.elts]  # type: ignore[misc]
        return key

    # -- what to mutate
    def _options(self, node: ast.AST) -> list[tuple[str, Make]]:
        options: list[tuple[str, Make]] = []
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                swap = CMP_SWAP.get(type(op))
                if swap is not None:
                    options.append(
                        (
                            f"`{SYMBOL[type(op)]}` -> `{SYMBOL[swap]}` in `{_show(node)}`",
                            _replace_op(node, i, swap),
                        )
                    )
        elif isinstance(node, ast.BoolOp):
            other = ast.Or if isinstance(node.op, ast.And) else ast.And
            word = "and" if isinstance(node.op, ast.And) else "or"
            options.append(
                (
                    f"`{word}` -> `{'or' if word == 'and' else 'and'}` in `{_show(node)}`",
                    lambda: ast.BoolOp(op=other(), values=copy.deepcopy(node.values)),
                )
            )
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            options.append((f"`not` removed from `{_show(node)}`", lambda: node.operand))
        elif isinstance(node, ast.Continue):
            options.append(("`continue` -> `break`", lambda: ast.Break()))
        elif isinstance(node, ast.Break):
            options.append(("`break` -> `continue`", lambda: ast.Continue()))
        elif isinstance(node, ast.If | ast.While | ast.IfExp):
            test = node.test
            if not isinstance(test, ast.Compare | ast.BoolOp | ast.UnaryOp):
                options.append((f"condition negated: `not {_show(test)}`", _negate(node)))
        elif isinstance(node, ast.Constant):
            options.extend(_constant_options(node))
        elif isinstance(node, ast.BinOp):
            swap = BIN_SWAP.get(type(node.op))
            if swap is not None:
                options.append(
                    (
                        f"`{SYMBOL[type(node.op)]}` -> `{SYMBOL[swap]}` in `{_show(node)}`",
                        lambda: ast.BinOp(
                            left=copy.deepcopy(node.left),
                            op=swap(),
                            right=copy.deepcopy(node.right),
                        ),
                    )
                )
        elif isinstance(node, ast.Return):
            value = node.value
            # `return False` -> `return None` is equivalent wherever a bool is tested.
            falsy = isinstance(value, ast.Constant) and (
                value.value is None or value.value is False
            )
            if value is not None and not falsy:
                options.append(
                    (f"`return {_show(value)}` -> `return None`", lambda: ast.Return(value=None))
                )
        elif isinstance(node, ast.Set | ast.Tuple) and isinstance(
            getattr(node, "ctx", ast.Load()), ast.Load
        ):
            options.extend(self._member_options(node))
        elif isinstance(node, ast.Dict) and len(node.keys) > 1:
            for i, key in enumerate(node.keys):
                if key is not None:
                    options.append(
                        (
                            f"table entry removed: `{_show(key)}: {_show(node.values[i])}`",
                            _drop_entry(node, i),
                        )
                    )
        elif isinstance(node, ast.Attribute):
            ref = _enum_ref(node, self.enums)
            if ref is not None:
                members = self.enums[ref[0]]
                nxt = members[(members.index(ref[1]) + 1) % len(members)]
                if nxt != ref[1]:
                    options.append(
                        (
                            f"`{ref[0]}.{ref[1]}` -> `{ref[0]}.{nxt}`",
                            lambda: ast.Attribute(
                                value=copy.deepcopy(node.value), attr=nxt, ctx=ast.Load()
                            ),
                        )
                    )
        return options

    def _member_options(self, node: ast.Set | ast.Tuple) -> list[tuple[str, Make]]:
        elts = node.elts
        if not elts or any(isinstance(e, ast.Starred) for e in elts):
            return []
        simple = all(
            isinstance(e, ast.Constant) or _enum_ref(e, self.enums) is not None for e in elts
        )
        if not simple:
            return []
        options: list[tuple[str, Make]] = []
        if len(elts) > 1 or isinstance(node, ast.Set):
            for i, e in enumerate(elts):
                options.append(
                    (f"member removed: `{_show(e)}` from `{_show(node)}`", _drop_member(node, i))
                )
        if isinstance(node, ast.Set):
            present = {ast.unparse(e) for e in elts}
            extra: list[ast.expr] = []
            first = _enum_ref(elts[0], self.enums)
            if first is not None:
                prefix = ast.unparse(elts[0]).rsplit(".", 1)[0]
                extra = [
                    ast.parse(f"{prefix}.{m}", mode="eval").body
                    for m in self.enums[first[0]]
                    if f"{prefix}.{m}" not in present
                ]
            elif all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in elts):
                extra = [ast.Constant(w) for w in self.vocabulary if repr(w) not in present]
            for e in extra:
                options.append(
                    (f"member added: `{_show(e)}` to `{_show(node)}`", _add_member(node, e))
                )
        return options


def _set_members(node: ast.AST) -> list[ast.expr] | None:
    if isinstance(node, ast.Set):
        return node.elts
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Set):
        return node.args[0].elts
    return None


def _replace_op(node: ast.Compare, i: int, swap: type[ast.cmpop]) -> Make:
    def make() -> ast.AST:
        new = copy.deepcopy(node)
        new.ops[i] = swap()
        return new

    return make


def _negate(node: ast.If | ast.While | ast.IfExp) -> Make:
    def make() -> ast.AST:
        new = copy.deepcopy(node)
        new.test = ast.UnaryOp(op=ast.Not(), operand=new.test)
        return new

    return make


def _drop_entry(node: ast.Dict, i: int) -> Make:
    def make() -> ast.AST:
        new = copy.deepcopy(node)
        del new.keys[i], new.values[i]
        return new

    return make


def _drop_member(node: ast.Set | ast.Tuple, i: int) -> Make:
    def make() -> ast.AST:
        new = copy.deepcopy(node)
        del new.elts[i]
        if isinstance(new, ast.Set) and not new.elts:
            return ast.Call(func=ast.Name("set", ast.Load()), args=[], keywords=[])
        return new

    return make


def _add_member(node: ast.Set, member: ast.expr) -> Make:
    def make() -> ast.AST:
        new = copy.deepcopy(node)
        new.elts.append(member)
        return new

    return make


def _constant_options(node: ast.Constant) -> list[tuple[str, Make]]:
    value = node.value
    if isinstance(value, bool):
        return [(f"`{value}` -> `{not value}`", lambda: ast.Constant(not value))]
    if isinstance(value, int | float):
        return [(f"`{value}` -> `{value + 1}`", lambda: ast.Constant(value + 1))]
    if isinstance(value, str):
        if value in LEVELS:
            nxt = LEVELS[(LEVELS.index(value) + 1) % len(LEVELS)]
            return [(f"level `{value!r}` -> `{nxt!r}`", lambda: ast.Constant(nxt))]
        changed = f"XX{value}XX"
        shown = value if len(value) <= 40 else value[:37] + "..."
        return [(f"string `{shown!r}` -> `'XX…XX'`", lambda: ast.Constant(changed))]
    return []


def _scoped(tree: ast.Module, only: frozenset[str] | None) -> Iterator[ast.stmt]:
    """The top-level statements (or class methods) named in `only`; all when None."""
    for stmt in tree.body:
        if only is None:
            yield stmt
            continue
        names: set[str] = set()
        if isinstance(stmt, ast.FunctionDef | ast.ClassDef):
            names.add(stmt.name)
        elif isinstance(stmt, ast.Assign):
            names |= {t.id for t in stmt.targets if isinstance(t, ast.Name)}
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            names.add(stmt.target.id)
        if names & only:
            yield stmt
        elif isinstance(stmt, ast.ClassDef):
            for inner in stmt.body:
                if isinstance(inner, ast.FunctionDef) and f"{stmt.name}.{inner.name}" in only:
                    yield inner


def _walk(
    source: str, target: int, enums: dict[str, list[str]], only: frozenset[str] | None
) -> tuple[ast.Module, _Walker]:
    tree = ast.parse(source)
    walker = _Walker(target, enums)
    if only is None:
        walker.visit(tree)
        return tree, walker
    for stmt in list(_scoped(tree, only)):
        replaced = walker.visit(stmt)
        if replaced is not stmt:  # a whole statement swapped (continue/break at top level)
            raise AssertionError("scoped statements are replaced in place only")
    return tree, walker


def mutants(
    source: str, enums: dict[str, list[str]], only: frozenset[str] | None = None
) -> list[Mutant]:
    return _walk(source, -1, enums, only)[1].found


def mutated_code(
    source: str,
    path: str,
    index: int,
    enums: dict[str, list[str]],
    only: frozenset[str] | None = None,
) -> tuple[CodeType, Mutant]:
    tree, walker = _walk(source, index, enums, only)
    if walker.applied is None:
        raise IndexError(f"{path} has no mutant {index}")
    ast.fix_missing_locations(tree)
    return compile(tree, path, "exec"), walker.applied
