"""Every setting's default is written once, in the schema (aigc.config, aigc.models.configs).

A library function that restates a setting as a literal default (`max_new_tokens=64` while
the pipeline passes 96) drifts from the schema without anyone noticing; library code takes the
params section, or the numbers its caller passes. The scanner reads every function signature
under src/aigc and reports a parameter with a literal default whose name is a field of a
schema section, whether the value agrees with the schema or not. Inside the schema, a section
that derives from another must not restate a default it inherits.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

import aigc.config
import aigc.models.configs

SOURCE = Path(aigc.__file__).parent
SCHEMA_MODULES = (aigc.config, aigc.models.configs)

# (module path under src/aigc, function, parameter): why the name is not the setting.
NOT_SETTINGS = {
    ("models/base.py", "generate", "temperature"): (
        "1.0 samples the model's own distribution; the evaluate section's temperature is what "
        "the pipeline passes"
    ),
    ("text/dataset.py", "EpochShuffleSampler.__init__", "seed"): (
        "EpochShuffleSampler's seed, for single-process loops and tests; a training job "
        "shuffles with DistributedSampler seeded from train.seed"
    ),
}


# Settings that library functions take under a shorter name: parameter → schema field.
SHORT_NAMES = {
    "per_class": "grid_per_class",  # image_grid.write_sample_grid
    "scale": "grid_scale",
    "gap": "grid_gap",
    "subsets": "kid_subsets",  # image_metrics.kernel_inception_distance
    "subset_size": "kid_subset_size",
    "samples": "bootstrap_samples",  # image_metrics.frechet_difference
}


def schema_sections() -> list[type[BaseModel]]:
    """Every pydantic model defined in the schema modules (aigc.config's in its submodules)."""
    return [
        value
        for module in SCHEMA_MODULES
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, BaseModel)
        and (
            value.__module__ == module.__name__
            or value.__module__.startswith(f"{module.__name__}.")
        )
    ]


def schema_defaults() -> dict[str, list[str]]:
    """Field name → `Section.field = default` for every section that has the field."""
    fields: dict[str, list[str]] = {}
    for section in schema_sections():
        for name, info in section.model_fields.items():
            if info.is_required():
                continue  # no default to restate
            default = "<factory>" if info.default_factory else repr(info.default)
            fields.setdefault(name, []).append(f"{section.__name__}.{name} = {default}")
    for short, name in SHORT_NAMES.items():
        fields.setdefault(short, []).extend(fields[name])
    return fields


def _literal(node: ast.expr) -> tuple[bool, object]:
    try:
        return True, ast.literal_eval(node)
    except ValueError:
        return False, None


def _parameters_with_defaults(
    function: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda,
) -> Iterator[tuple[str, ast.expr]]:
    arguments = function.args
    positional = [*arguments.posonlyargs, *arguments.args]
    for argument, default in zip(
        positional[len(positional) - len(arguments.defaults) :], arguments.defaults, strict=True
    ):
        yield argument.arg, default
    for argument, default in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True):
        if default is not None:
            yield argument.arg, default


def _functions(node: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.FunctionDef]]:
    """(qualified name, definition) of every function under `node`, methods as Class.name."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            yield prefix + child.name, child
            yield from _functions(child, f"{prefix}{child.name}.")
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, f"{prefix}{child.name}.")
        else:
            yield from _functions(child, prefix)


def restated_defaults(root: Path, fields: dict[str, list[str]]) -> list[str]:
    """One line per signature parameter under `root` that restates a schema field."""
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for function, node in _functions(tree):
            for name, default in _parameters_with_defaults(node):
                is_literal, value = _literal(default)
                if not is_literal or value is None or value is Ellipsis or name not in fields:
                    # None: "not given", the caller's section decides; `...`: a Protocol's
                    # stub saying only that the parameter may be left out.
                    continue
                if (relative, function, name) in NOT_SETTINGS:
                    continue
                found.append(
                    f"{relative}:{default.lineno} {function}({name}={value!r}); "
                    f"the schema has {'; '.join(fields[name])}"
                )
    return found


def test_no_library_signature_restates_a_schema_default():
    found = restated_defaults(SOURCE, schema_defaults())
    assert not found, (
        "library signatures restate settings the schema defines; take the params section "
        "(or make the parameter required and pass the section's value):\n  " + "\n  ".join(found)
    )


def test_the_scanner_finds_a_restated_default(tmp_path: Path):
    (tmp_path / "sample.py").write_text(
        "def sample(prompt, *, max_new_tokens: int = 64, temperature=0.8, top_k=None):\n"
        "    return prompt\n"
        "def grid(samples, per_class=10, scale=3):\n"
        "    return samples\n",
        encoding="utf-8",
    )
    found = restated_defaults(tmp_path, schema_defaults())
    assert [line.split(";")[0] for line in found] == [
        "sample.py:1 sample(max_new_tokens=64)",
        "sample.py:1 sample(temperature=0.8)",
        "sample.py:3 grid(per_class=10)",
        "sample.py:3 grid(scale=3)",
    ]


def test_the_allow_list_names_functions_that_exist():
    for relative, function, parameter in NOT_SETTINGS:
        tree = ast.parse((SOURCE / relative).read_text(encoding="utf-8"))
        names = {
            name
            for qualified, node in _functions(tree)
            if qualified == function
            for name, _ in _parameters_with_defaults(node)
        }
        assert parameter in names, f"{relative}: {function}({parameter}=…) is gone; drop it"


def _inherited_restatements() -> Iterator[str]:
    for section in schema_sections():
        for base in section.__mro__[1:]:
            if not (isinstance(base, type) and issubclass(base, BaseModel)):
                continue
            for name in section.__annotations__:
                if name not in base.model_fields or name not in section.model_fields:
                    continue
                mine, theirs = section.model_fields[name], base.model_fields[name]
                if mine.default_factory is None and mine.default == theirs.default:
                    yield f"{section.__name__}.{name} restates {base.__name__}.{name}"
            break


def test_no_schema_section_restates_an_inherited_default():
    found = list(_inherited_restatements())
    assert not found, "drop the restated fields (they inherit the default):\n  " + "\n  ".join(
        found
    )


def _restated_in_default_sections(value: BaseModel, where: str) -> Iterator[str]:
    fields = type(value).model_fields
    for name in sorted(value.model_fields_set):
        info = fields[name]
        if info.default_factory is None and getattr(value, name) == info.default:
            yield f"{where}.{name} = {info.default!r} restates {type(value).__name__}.{name}"
    for name in fields:
        child = getattr(value, name)
        if isinstance(child, BaseModel):
            yield from _restated_in_default_sections(child, f"{where}.{name}")


def test_a_default_section_sets_only_what_differs_from_its_class():
    # `image.train.loop` is LoopParams with the image loop's own numbers: stating one of
    # LoopParams' defaults there again (checkpoint_every=200) would be a second definition.
    found = list(_restated_in_default_sections(aigc.config.Params(), "params"))
    assert not found, "leave these out of the default section:\n  " + "\n  ".join(found)


@pytest.mark.parametrize(
    ("section", "derived"),
    [
        (aigc.config.SplitParams, aigc.config.ImageSplitParams),
        (aigc.config.PromotionPolicy, aigc.config.ImagePromotionPolicy),
    ],
)
def test_a_derived_section_keeps_its_base_constraints(section, derived):
    # A field redeclared only for another default must still refuse what the base refuses.
    for name, info in derived.model_fields.items():
        if name in section.model_fields:
            assert info.metadata == section.model_fields[name].metadata, name
            assert info.annotation == section.model_fields[name].annotation, name
