"""The packages' layering: imports run one way, private names stay home.

The top-level packages form layers (docs/architecture in the README's
tour): `common` at the bottom; `losses`; `models`, `input_pipeline` and
`evaluation`; `training`; `configs` and `inference`; the command lines;
`benchmarks` and `tests` on top. A package imports only from the packages
`ALLOWED` lists for it, which keeps the graph free of cycles, and no module
uses a private name (one leading underscore) of another top-level package.
A package's own tests (``tests/<package>/``) may test its private helpers.
"""

import ast
import os

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_COMMAND_LINES = ('train', 'embed', 'search')

# Package -> the first-party packages it may import.
ALLOWED = {
  'common': set(),
  'losses': {'common'},
  'models': {'common', 'losses'},
  'input_pipeline': {'common'},
  'evaluation': {'common', 'losses'},
  'training': {'common', 'losses', 'models', 'input_pipeline', 'evaluation'},
  'configs': {'common', 'models', 'input_pipeline', 'training'},
  'inference': {
    'common',
    'losses',
    'models',
    'input_pipeline',
    'evaluation',
    'training',
  },
  'train': {'common', 'input_pipeline', 'training'},
  'embed': {'common', 'inference'},
  'search': {'common', 'inference', 'evaluation'},
}
_FIRST_PARTY = set(ALLOWED) | {'benchmarks', 'tests'}


def _modules():
  """(path relative to the root, its top-level package) of every module."""
  for directory, subdirectories, files in os.walk(_ROOT):
    subdirectories[:] = [
      d for d in subdirectories if not d.startswith('.') and d != 'runs'
    ]
    for name in files:
      if name.endswith('.py'):
        path = os.path.relpath(os.path.join(directory, name), _ROOT)
        top = path.split(os.sep)[0].removesuffix('.py')
        if top in _FIRST_PARTY:
          yield path, top


def _parse(path):
  with open(os.path.join(_ROOT, path)) as file:
    return ast.parse(file.read(), path)


def _imports(tree):
  """(imported module, names imported from it or None) of every import."""
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield alias.name, None, alias
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      for alias in node.names:
        yield node.module, alias.name, alias


def _is_private(name):
  return name.startswith('_') and not name.startswith('__')


_MODULES = sorted(_modules())


def test_every_first_party_package_has_its_layer():
  tops = {top for _, top in _MODULES} - {'benchmarks', 'tests'}
  assert tops == set(ALLOWED)


@pytest.mark.parametrize('path,top', _MODULES, ids=[p for p, _ in _MODULES])
def test_imports_run_one_way_and_private_names_stay_home(path, top):
  tree = _parse(path)
  parts = path.split(os.sep)
  # White-box tests of a package: tests/<package>/..._test.py.
  tested = parts[1] if top == 'tests' and len(parts) > 2 else None
  problems = []
  # Names bound to first-party modules of other top-level packages.
  foreign_aliases = {}
  for module, name, alias in _imports(tree):
    target = module.split('.')[0]
    if target not in _FIRST_PARTY or target == top:
      continue
    if top in ALLOWED and target not in ALLOWED[top]:
      problems.append(f'imports {module} ({top} may not import {target})')
    names = module.split('.') + ([name] if name else [])
    private = [part for part in names if _is_private(part)]
    if private and target != tested:
      problems.append(f'imports the private {".".join(names)}')
    bound = alias.asname or (name if name else module.split('.')[0])
    foreign_aliases[bound] = module if name is None else f'{module}.{name}'
  for node in ast.walk(tree):
    if (
      isinstance(node, ast.Attribute)
      and isinstance(node.value, ast.Name)
      and node.value.id in foreign_aliases
      and _is_private(node.attr)
      and foreign_aliases[node.value.id].split('.')[0] != tested
    ):
      problems.append(
        f'line {node.lineno} uses the private '
        f'{foreign_aliases[node.value.id]}.{node.attr}'
      )
  assert not problems, f'{path}: ' + '; '.join(problems)


def test_the_allowed_imports_have_no_cycle():
  order = []
  remaining = {package: set(allowed) for package, allowed in ALLOWED.items()}
  while remaining:
    ready = sorted(p for p, needs in remaining.items() if needs <= set(order))
    assert ready, f'a cycle among {sorted(remaining)}'
    order += ready
    for package in ready:
      del remaining[package]
