"""A minimal TOML writer for the tests (the subset model and scenario files use)."""

import copy
import json


def value(v):
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
    return repr(v)


def dumps(data: dict) -> str:
    """Scalars and inline values first, then [section.name] tables one level deep,
    then [[arrays]] of tables."""
    lines = []
    for k, v in data.items():
        if not isinstance(v, dict | list) or (
            isinstance(v, list) and v and not isinstance(v[0], dict)
        ):
            lines.append(f"{k} = {value(v)}")
    for k, v in data.items():
        if isinstance(v, dict):
            flat = {a: b for a, b in v.items() if not isinstance(b, dict)}
            if flat:
                lines.append(f"[{k}]")
                lines += [f"{a} = {value(b)}" for a, b in flat.items()]
            for sk, sv in v.items():
                if isinstance(sv, dict):
                    lines.append(f"[{k}.{sk}]")
                    lines += [f"{a} = {value(b)}" for a, b in sv.items()]
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                lines.append(f"[[{k}]]")
                lines += [f"{a} = {value(b)}" for a, b in item.items()]
    return "\n".join(lines)


def mutate(d, path, value=None, delete=False):
    """A deep copy of ``d`` with the key at ``path`` set (or deleted)."""
    d = copy.deepcopy(d)
    node = d
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return d
