"""How a schema is declared: every config key once, with its default, its valid range (a ``Rule``)
and a one-line comment. A job declares its shared keys and, per modality, a sub-section laid over
them (keys only that modality has, or its own default for a shared key); ``Job.compile(modality)``
gives the resolved defaults (the nested dict the code reads) and the flat ``key -> Rule`` table.

A bad value is a one-line ``ConfigError``: ``optim.lr: nan is not valid; expected a finite number > 0``.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable


@dataclass(frozen=True)
class Rule:
    expect: str                        # what a valid value is, said in the error message
    ok: Callable[[Any], bool]
    renamed: dict = field(default_factory=dict)    # old value -> its new name (one-line error naming it)


def _real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def number(lo: float = -math.inf, hi: float = math.inf, lo_open: bool = False, hi_open: bool = False,
           integer: bool = False) -> Rule:
    """A finite number in the interval (open or closed at either end)."""
    left = "(" if lo_open else "["
    right = ")" if hi_open else "]"
    kind = "a whole number" if integer else "a finite number"
    if lo > -math.inf and hi == math.inf:
        expect = f"{kind} {'>' if lo_open else '>='} {lo:g}"
    else:
        expect = f"{kind} in {left}{lo:g}, {hi:g}{right}"

    def ok(v) -> bool:
        return (_real(v) and (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)
                and (not integer or float(v).is_integer()))
    return Rule(expect, ok)


def choice(*names: str) -> Rule:
    return Rule("one of " + ", ".join(repr(n) for n in names), lambda v: v in names)


def optional(rule: Rule) -> Rule:
    """None (= the default behaviour) or a value the rule accepts."""
    return Rule(f"null or {rule.expect}", lambda v: v is None or rule.ok(v))


def sequence(rule: Rule, length: int, ordered: bool = False) -> Rule:
    """A list of ``length`` values each accepted by ``rule`` (``ordered``: non-decreasing)."""
    what = f"a list of {length} values, each {rule.expect}" + (", in increasing order" if ordered else "")
    return Rule(what, lambda v: isinstance(v, list) and len(v) == length and all(map(rule.ok, v))
                and (not ordered or all(a <= b for a, b in zip(v, v[1:]))))


def pattern(expect: str, regex: str) -> Rule:
    """A string matching ``regex`` whole."""
    return Rule(expect, lambda v: isinstance(v, str) and re.fullmatch(regex, v) is not None)


def renamed_values(rule: Rule | None, old: dict[str, str]) -> Rule:
    """``rule`` (None: any value), where each old value is refused with a line naming its new one."""
    return Rule(rule.expect if rule else "a new value name", rule.ok if rule else lambda v: True, dict(old))


DEVICE = pattern("auto, cpu or a device type with an optional index (cuda, cuda:1, xpu, npu, ...)",
                 r"[a-z][a-z0-9_]*(:\d+)?")
MODULES = Rule("a list of module names", lambda v: isinstance(v, list) and all(
    isinstance(m, str) and re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", m) for m in v))
BACKEND = pattern("auto or a process-group backend name (nccl, gloo, hccl, cpu:gloo,cuda:nccl, ...)",
                  r"\w+(:\w+)?(,\w+:\w+)*")

POSITIVE_INT = number(1, integer=True)
COUNT = number(0, integer=True)
POSITIVE = number(0, lo_open=True)
FRACTION = number(0, 1)                              # [0, 1]
OPEN_FRACTION = number(0, 1, lo_open=True, hi_open=True)
RATE = number(0, 1, hi_open=True)                    # [0, 1)
AMP = choice("auto", "bf16", "fp16", "none")

# a folder below data.root ('' = data.root itself): an absolute path would silently leave data.root out
SUB_FOLDER = Rule("a path relative to data.root ('' = data.root itself)",
                  lambda v: isinstance(v, str) and not v.startswith(("/", "\\")))


@dataclass(frozen=True)
class Key:
    """One config key: its default, its range (None: any value of the default's type) and what it means."""
    default: Any
    rule: Rule | None = None
    doc: str = ""


def key(default: Any, rule: Rule | None = None, doc: str = "") -> Key:
    return Key(default, rule, doc)


def overlay(tree: dict, over: dict) -> dict:
    """``tree`` with ``over`` laid on it: a ``Key`` adds or replaces a key, a mapping a section,
    a bare value is a new default for a key ``tree`` declares (its rule and comment kept)."""
    out = dict(tree)
    for name, v in over.items():
        old = out.get(name)
        if isinstance(v, Key):
            out[name] = v
        elif isinstance(v, dict):
            out[name] = overlay(old if isinstance(old, dict) else {}, v)
        elif isinstance(old, Key):
            out[name] = replace(old, default=v)
        else:
            raise TypeError(f"schema: {name!r} gets a default but is not declared")
    return out


def compile_tree(tree: dict, prefix: str = "") -> tuple[dict, dict[str, Rule]]:
    """(nested defaults, flat ``key -> Rule``) of a declaration."""
    defaults, rules = {}, {}
    for name, v in tree.items():
        if isinstance(v, dict):
            defaults[name], sub = compile_tree(v, f"{prefix}{name}.")
            rules.update(sub)
        else:
            defaults[name] = copy.deepcopy(v.default)
            if v.rule is not None:
                rules[prefix + name] = v.rule
    return defaults, rules


@dataclass(frozen=True)
class Job:
    """A job's keys: ``shared`` by its modalities, and each modality's sub-section laid over them."""
    name: str
    shared: dict
    modalities: dict[str, dict]

    def declaration(self, modality: str) -> dict:
        head = {"modality": key(modality, choice(*self.modalities), " | ".join(self.modalities))}
        return overlay({**head, **self.shared}, self.modalities[modality])

    def compile(self, modality: str) -> tuple[dict, dict[str, Rule]]:
        return compile_tree(self.declaration(modality))
