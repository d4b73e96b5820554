"""Generate docs/hooks.md from the hookspec modules: ``python -m moorage.core.kernel.hookdoc > docs/hooks.md``.

The docstrings of the hookspec modules are the contract; this renders them, with exact
signatures, so the reference cannot drift from the code (a test compares the two).
"""

from __future__ import annotations

import importlib
import inspect
import sys

from moorage.core.sdk.hookspecs import FAMILY_MODULES, PROJECT

HEADER = """\
# Hook reference

Generated from the hookspec modules by `python -m moorage.core.kernel.hookdoc > docs/hooks.md`; do not
edit by hand. A plugin implements hooks with `@hookimpl` (from `moorage.core.sdk.hookspecs`) and is
named in the `moorage` entry-point group of its distribution; see docs/architecture.md.
"""


def _signature(fn) -> str:
    try:
        return str(inspect.signature(fn, eval_str=True)).replace("'", "")
    except NameError:  # an annotation naming a type only imported for type checking
        return str(inspect.signature(fn)).replace("'", "")


def _doc(obj) -> str:
    return inspect.cleandoc(obj.__doc__ or "").strip()


def _is_hookspec(obj) -> bool:
    return inspect.isfunction(obj) and hasattr(obj, f"{PROJECT}_spec")


def _classes(module):
    for name, obj in vars(module).items():
        if inspect.isclass(obj) and obj.__module__ == module.__name__ and not name.startswith("_"):
            yield name, obj


def _methods(cls):
    for name, obj in vars(cls).items():
        if inspect.isfunction(obj) and (not name.startswith("_") or name == "__init__") and obj.__doc__:
            yield name, obj


def hookspecs(module) -> list:
    return [obj for obj in vars(module).values() if _is_hookspec(obj) and obj.__module__ == module.__name__]


def render() -> str:
    out = [HEADER]
    for module_name in FAMILY_MODULES:
        module = importlib.import_module(module_name)
        family = module_name.rsplit(".", 1)[1]
        out.append(f"\n## `{family}` (`{module_name}`)\n\n{_doc(module)}\n")
        for spec in hookspecs(module):
            out.append(f"\n### hook `{spec.__name__}{_signature(spec)}`\n\n{_doc(spec)}\n")
        for name, cls in _classes(module):
            bases = ", ".join(b.__name__ for b in cls.__bases__ if b is not object)
            out.append(f"\n### class `{name}`" + (f" ({bases})" if bases else "") + f"\n\n{_doc(cls)}\n")
            for method_name, method in _methods(cls):
                out.append(f"\n- `{method_name}{_signature(method)}`: " +
                           _doc(method).replace("\n", "\n  ") + "\n")
    return "".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())
