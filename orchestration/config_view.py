"""`gleam config show`: the resolved config printed as params.yaml itself, comments kept.

ruamel.yaml reads params.yaml round-trip (comments, key order, flow style), the resolved values are
written into that document, and each value that differs from the file says why in its comment:
`# --set` for a command-line override, `# default` for a key the file leaves out.
"""
from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

if TYPE_CHECKING:
    from orchestration.config import Project

OVERRIDDEN = "--set"
DEFAULT = "default"


def render_config(project: Project) -> str:
    """params.yaml with every resolved value in place and overridden/default values marked."""
    from orchestration.config import parse_override

    yaml = YAML(typ="rt")
    yaml.width = 4096  # never re-wrap the file's long flow mappings
    yaml.indent(mapping=2, sequence=4, offset=2)  # params.yaml's own list style
    yaml.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    doc = yaml.load(project.params_path.read_text(encoding="utf-8")) or CommentedMap()
    overridden = {tuple(parse_override(text)[0]) for text in project.overrides}
    _merge(doc, project.cfg.to_params(), (), overridden)
    buf = io.StringIO()
    yaml.dump(doc, buf)
    return buf.getvalue()


def _merge(node: Any, resolved: Any, path: tuple[str, ...], overridden: set[tuple[str, ...]]) -> None:
    """Write `resolved` into the round-trip `node` (a CommentedMap or CommentedSeq) in place."""
    if isinstance(node, dict) and isinstance(resolved, dict):  # e.g. --set 'train.presets={}' drops the file's entries
        for gone in [k for k in node if k not in resolved]:
            del node[gone]
    keys = resolved.keys() if isinstance(resolved, dict) else range(len(resolved))
    for key in keys:
        here = (*path, str(key))
        value = resolved[key]
        present = key in node if isinstance(node, dict) else key < len(node)
        if not present:
            if isinstance(node, dict):
                node[key] = value
                _mark(node, key, OVERRIDDEN if path in overridden else DEFAULT)  # a key an override added
            else:
                node.append(value)
            continue
        old = node[key]
        if (isinstance(old, dict) and isinstance(value, dict) and value) or \
                (isinstance(old, list) and isinstance(value, list) and len(old) == len(value)):
            _merge(old, value, here, overridden)
            if here in overridden:
                _mark(node, key, OVERRIDDEN)
            continue
        if old != value:
            node[key] = value
        if here in overridden:
            _mark(node, key, f"{OVERRIDDEN} (params.yaml: {_short(old)})" if old != value else OVERRIDDEN)


def _mark(node: CommentedMap | CommentedSeq, key: Any, note: str) -> None:
    """Put `note` first in the end-of-line comment of `key`, keeping the file's own comment."""
    own = ""
    slot = node.ca.items.get(key)
    if slot:
        token = next((t for t in slot if t is not None and hasattr(t, "value")), None)
        if token is not None:
            own = token.value.strip().lstrip("#").strip().split("\n")[0]
    comment = f"<- {note}" + (f"; {own}" if own else "")
    node.yaml_add_eol_comment(comment, key)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."
