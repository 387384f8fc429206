"""Print a go.mod that requires MODULE@VERSION and can build its commands.

`go install module@version` refuses modules whose go.mod has replace directives. This
module requires it instead and re-states its replaces: a local one (`=> ./staging/...`,
`=> ./api`) becomes the published module of the matching version; a remote one is copied.

    python3 throwaway-gomod.py MODULE VERSION PATH/TO/ITS/go.mod
"""

from __future__ import annotations

import re
import sys


def main() -> None:
    module, version, gomod = sys.argv[1:4]
    with open(gomod, encoding="utf-8") as f:
        text = f.read()
    go = re.search(r"^go\s+(\S+)", text, re.M)
    lines = ["module throwaway", f"go {go.group(1) if go else '1.22'}"]
    lines.append(f"require {module} {version}")
    replaces: list[str] = []
    body = re.findall(r"^replace\s*\((.*?)^\)", text, re.M | re.S)
    singles = re.findall(r"^replace\s+([^(\n].*)$", text, re.M)
    for entry in [ln for block in body for ln in block.splitlines()] + singles:
        entry = entry.split("//")[0].strip()
        if "=>" not in entry:
            continue
        left, right = (part.strip() for part in entry.split("=>"))
        old = left.split()[0]
        target = right.split()
        if target[0].startswith("."):
            published = _published_version(module, version, old)
            if _compatible(old, published):  # a guard such as `=> ./FORBIDDEN` is dropped
                replaces.append(f"\t{old} => {old} {published}")
        else:
            replaces.append(f"\t{left} => {right}")
    if replaces:
        lines += ["replace (", *replaces, ")"]
    print("\n".join(lines))


def _published_version(module: str, version: str, old: str) -> str:
    """k8s.io/kubernetes v1.X.Y ships staging modules as v0.X.Y; others share the version."""
    if module == "k8s.io/kubernetes" and old.startswith("k8s.io/"):
        return "v0" + version[2:]
    return version


def _compatible(path: str, version: str) -> bool:
    """Go's rule: a v2+ version needs the /vN suffix on the module path, v0/v1 none."""
    major = version.split(".")[0]
    suffix = re.search(r"/(v\d+)$", path)
    if major in ("v0", "v1"):
        return suffix is None
    return suffix is not None and suffix.group(1) == major


if __name__ == "__main__":
    main()
