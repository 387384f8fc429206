"""Differential test: the exporter's tag choice against Flux's own libraries.

``tools/flux-oracle`` (built by ``scripts/build-tools flux-oracle``) links fluxcd/pkg/version
and Masterminds/semver/v3 at the versions source-controller requires and replays
source-controller's ``getTagBySemver`` (OCIRepository, plain or Helm chart layer), Flux 2.6's
``ParseVersion`` for the ``flux-2.6`` flavours, and the HelmChart path (the pinned-version
shortcut, Helm's registry client ``Tags``, ``getLastMatchingVersionOrConstraint``). Every run
sends tens of thousands of seeded random cases through one oracle process: tags as registries
hold them (calver with leading zeros, ``v`` prefixes, one to four parts, prereleases, build
metadata, ``_`` for ``+``, uint64 overflow, junk), ranges of every shape (valid or not) and
``semverFilter`` patterns. The bar is no disagreement at all. Equal versions tie in Flux
(``sort.Sort`` is not stable), so a pick agrees when it is any of the tied tags.

Filters stay within what both regexp engines read alike, plus the refusals Go adds
(``\\C``, non-ASCII group names); Go's lenient ``\\p{...}`` names and its nesting limit
are not generated. ``FOT_ORACLE_SEED`` and ``FOT_ORACLE_CASES`` explore other cases; a
missing oracle binary skips, or fails when ``FOT_REQUIRE_TOOLS=1`` (scripts/test).
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devenv.tools import tool_dir
from exporter.flux.policy import InvalidRule, compile_rule, is_pinned_chart_version
from exporter.model import Flavor, TagRule

SEED = int(os.environ.get("FOT_ORACLE_SEED") or 20250203)
CASES = int(os.environ.get("FOT_ORACLE_CASES") or 24_000)
SHOWN = 12  # disagreements printed in full

NO_MATCH, INVALID = "<no match>", "<invalid rule>"


def oracle_binary() -> Path:
    path = Path(os.environ.get("FOT_FLUX_ORACLE_BIN") or tool_dir("flux-oracle") / "flux-oracle")
    if not (path.is_file() and os.access(path, os.X_OK)):
        message = f"flux-oracle not built ({path}); run scripts/build-tools flux-oracle"
        if os.environ.get("FOT_REQUIRE_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


# --- the generator -------------------------------------------------------------------------

BIG = [
    "18446744073709551615",  # uint64 max
    "18446744073709551616",  # one more: not a number for Go
    "99999999999999999999",
    "0000000000000000000000001",  # 25 digits, small value
]
PRE_IDS = [
    *("rc", "alpha", "beta", "RC", "a1", "1a", "0abc", "rc-1", "x-y", "-", "Z"),
    *("0", "1", "2", "10", "01", "00", "007"),
    *("18446744073709551615", "18446744073709551616"),
]
BUILD_IDS = ["b", "build", "1", "001", "sha-1a2b", "x", "0", "B-2"]
JUNK = [
    *("latest", "main", "stable", "sha-1a2b3c", "", "v", "V", "x", "1", "v1"),
    *("1..2.3", ".1.2.3", "1.2.3.", "1.2.x", "x.y.z", "1.2.*", "\u0663.1.2", "1.2.\u0663"),
    *("1.2.3 ", " 1.2.3", "1.2.3\n", "1.2.3-rc.1.", "-1.2.3", "+1.2.3", "=1.2.3", "1.2.3-+b"),
    *("1.2.3-rc.1+b.2_c", "1.2.3_b_c", "1.2.3__b", "1.2.3_", "1_2_3", "1.2.3-é", "1.2.3+é"),
    *("1.2.3-", "1.2.3+", "1.2.3-a..b", "1.2.3+a..b", "1.2.3--", "1.2.3-a+b+c", "v.1.2"),
    *("2025.02.03.1", "20250203", "2025-02-03", "2025.2", "v2025.02", "2025.02.03-rc.01"),
]


def number(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.62:
        return str(rng.randrange(4))
    if r < 0.8:
        return rng.choice(["00", "01", "02", "03", "010", "007"])
    if r < 0.93:
        return rng.choice(["2024", "2025", "12", "31", "10"])
    return rng.choice(BIG)


def identifiers(rng: random.Random, pool: list[str]) -> str:
    return ".".join(rng.choice(pool) for _ in range(rng.choice((1, 1, 2, 2, 3))))


def version_tag(rng: random.Random, plus: str) -> str:
    """A version-like tag; ``plus`` is the build separator a registry can hold."""
    prefix = rng.choices(["", "v", "V", "vv"], [70, 26, 2, 2])[0]
    parts = rng.choices([1, 2, 3, 4], [8, 14, 70, 8])[0]
    text = prefix + ".".join(number(rng) for _ in range(parts))
    if rng.random() < 0.3:
        text += "-" + identifiers(rng, PRE_IDS)
    if rng.random() < 0.22:
        text += rng.choice(plus) + identifiers(rng, BUILD_IDS)
    return text


def long_tag(rng: random.Random) -> str:
    """Around Masterminds' 256-byte limit on versions."""
    head = rng.choice(["1.2.3-", "v1.2.3-", "2025.02.03+", "1.2-"])
    return head + "a" * (256 - len(head) + rng.randint(-2, 2))


def respell(rng: random.Random, tag: str, plus: str) -> str:
    """Another tag of the same version, where the grammar allows: Flux ties these."""
    choice = rng.randrange(4)
    if choice == 0:
        return tag[1:] if tag.startswith("v") else "v" + tag
    if choice == 1:
        for sep in "+_":
            tag = tag.split(sep, 1)[0]
        return tag + rng.choice(plus) + rng.choice(BUILD_IDS)
    if choice == 2:
        return "0" + tag if tag[:1].isdigit() else tag
    return tag.replace(".", ".0", 1)


def tag_list(rng: random.Random, flavor: Flavor) -> list[str]:
    plus = "+_" if flavor in (Flavor.OCI, Flavor.HELM) else "_"
    size = rng.choices([0, 1, 3, 8, 20, 200], [3, 10, 25, 35, 25, 2])[0]
    tags: list[str] = []
    for _ in range(size):
        r = rng.random()
        if r < 0.08:
            tags.append(rng.choice(JUNK))
        elif r < 0.09:
            tags.append(long_tag(rng))
        else:
            tags.append(version_tag(rng, plus))
    for tag in rng.sample(tags, min(len(tags), rng.choice((0, 1, 3)))):
        tags.append(respell(rng, tag, plus))
    if plus == "_":  # no `+` in tags a HelmChart or a chart layer sees: OCI tags cannot hold it
        tags = [t.replace("+", "_") for t in tags]
    unique = list(dict.fromkeys(tags))  # a registry lists each tag once
    if rng.random() < 0.5:
        unique.sort()  # registries usually list tags sorted
    return unique


OPS = ["", "=", "!=", ">", "<", ">=", "=>", "<=", "=<", "~", "~>", "^"]
RANGE_PRE = ["-0", "-rc.1", "-alpha", "-beta.2", "-01", "-rc", "-0.0", "-x.1"]
BAD_RANGES = [
    *("", " ", "foo", ">= bar", "1.2.3.4", "||", "1 ||", "|| 1", ">=1 <2 ||", "1|2", "1 - ", "-1"),
    *(">=", "=>1", "1.2.3 -1.4", "1.2.3- 1.4", "1,,2", ", 1", "1 ,2", "1.x.3", "1.2.3-01"),
    *("~*", "^*", "!=*", "<0.0.0-0", ">*", "<*", "x", "X", "*.*.*", "1.*.*", "v*", "1.2.3+b"),
    *(">=01.02", "^2025.02", "~2025.2.0", ">=2025.02.03-0", "1|| 2", "1 ||2", "1.2.3 || x"),
    " || ".join(["1"] * 32),  # 32 OR groups: the most Masterminds allows
    " || ".join(["1"] * 33),
    ">=1.0.0 " * 64,  # over 512 bytes
    ">=1.0.0 " * 63,
    "1.2.3-" + "a" * 251,  # a version over 256 bytes inside a range
    "1.2.3-" + "a" * 249,
]


def range_version(rng: random.Random) -> str:
    parts = rng.choices([1, 2, 3], [20, 30, 50])[0]
    fields = []
    for _ in range(parts):
        r = rng.random()
        if r < 0.12:
            fields.append(rng.choice(["x", "X", "*"]))
        elif r < 0.2:
            fields.append(rng.choice(["00", "01", "02", "2025", "18446744073709551616"]))
        else:
            fields.append(str(rng.randrange(4)))
    text = ("v" if rng.random() < 0.1 else "") + ".".join(fields)
    if rng.random() < 0.18:
        text += rng.choice(RANGE_PRE)
    if rng.random() < 0.05:
        text += "+" + rng.choice(BUILD_IDS)
    return text


def comparator(rng: random.Random) -> str:
    space = rng.choices(["", " ", "  "], [80, 17, 3])[0]
    return rng.choice(OPS) + space + range_version(rng)


def and_group(rng: random.Random) -> str:
    if rng.random() < 0.12:
        return f"{range_version(rng)}{rng.choice([' - ', '  -  ', ' -', '-'])}{range_version(rng)}"
    group = comparator(rng)
    for _ in range(rng.choices([0, 1, 2], [55, 35, 10])[0]):
        group += rng.choices([" ", ",", ", ", " ,", "  "], [40, 25, 25, 5, 5])[0] + comparator(rng)
    return group


def version_range(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.08:
        return rng.choice(BAD_RANGES)
    if r < 0.16:
        return rng.choice(["*", ">=0.0.0", ">=0.0.0-0", "*-0", ">0"])
    groups = [and_group(rng) for _ in range(rng.choices([1, 2, 3], [75, 20, 5])[0])]
    joined = groups[0]
    for group in groups[1:]:
        joined += rng.choice([" || ", "||", " ||", "|| "]) + group
    return (" " if rng.random() < 0.03 else "") + joined


FILTERS = [
    *("^v", "rc", r"^\d+\.\d+\.\d+$", r"^2025\.", "[02]$", "(?i)RC", r"\d{4}", "^[0-9.]+$"),
    *("-", r"\+", "_", "beta|rc", r"^(v)?1\.", r"\b1\b", "(?m)^1$", "(?s).", "^$", "x*", "é"),
    *(r"\pN", r"\p{Greek}", r"\pL", "[[:alpha:]]", "[[:word:]]", r"\x{41}", r"\Q1.\E", r"\z"),
    *("(?i:V)", "(?U)a+", "(?P<n>v)", "(?<n>v)", r"[\d-]", r"\A1", "a{2,1000}", "a{1001}"),
    # invalid in Go: the reconcile fails
    *("(unclosed", "(?<=v)1", r"(a)\1", "[z-a]", r"\C", r"\Z", "**", "a++", "a{2}{3}", "[[:foo:]]"),
    *(r"\p{Foo}", "(?x)a", "(?<>a)", "a{,3}", r"\8", "(?i", "x{2}*"),
    # where Go's syntax differs from RE2's
    *(r"a\Cb", r"[\C]", r"\Q\C\E", r"\\C", "(?P<é>a)", "(?<名>a)", "[(?P<é>]", r"\Q(?<é>\E"),
]


def semver_filter(rng: random.Random, tags: list[str]) -> str | None:
    r = rng.random()
    if r < 0.65:
        return None
    if r < 0.9 or not tags:
        return rng.choice(FILTERS)
    tag = rng.choice(tags)
    start = rng.randrange(len(tag) + 1)
    return tag[start : start + rng.randint(1, 4)]  # a piece of a tag, metacharacters and all


def pinned_or_range(rng: random.Random, tags: list[str]) -> str:
    """A HelmChart ``spec.version``: empty, ``*``, a concrete version or a range."""
    r = rng.random()
    if r < 0.15:
        return rng.choice(["", "*"])
    if r < 0.3 and tags:
        return rng.choice(tags).replace("_", "+")
    if r < 0.35:
        return rng.choice(["2025.02.03", "1.2-beta.5", "12.02+build.1", "v1.2.3", "1.2", "v1"])
    return version_range(rng)


@dataclass(frozen=True)
class Case:
    flavor: Flavor
    range: str
    filter: str | None
    tags: list[str]

    def request(self) -> dict[str, Any]:
        return {
            "flavor": self.flavor.value,
            "range": self.range,
            "filter": self.filter or "",
            "tags": self.tags,
        }


FLAVOR_WEIGHTS = {
    Flavor.OCI: 34,
    Flavor.OCI_CHART: 14,
    Flavor.HELM: 28,
    Flavor.OCI_FLUX_2_6: 14,
    Flavor.OCI_CHART_FLUX_2_6: 10,
}


def generate(seed: int, count: int) -> list[Case]:
    rng = random.Random(seed)
    flavors, weights = list(FLAVOR_WEIGHTS), list(FLAVOR_WEIGHTS.values())
    cases = []
    for _ in range(count):
        flavor = rng.choices(flavors, weights)[0]
        tags = tag_list(rng, flavor)
        if flavor is Flavor.HELM:
            cases.append(Case(flavor, pinned_or_range(rng, tags), None, tags))
        else:
            cases.append(Case(flavor, version_range(rng), semver_filter(rng, tags), tags))
    return cases


# --- the two answers -----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """A pick (with every tag Flux ties it with), or NO_MATCH / INVALID."""

    tag: str
    ties: frozenset[str]
    matches: int


def ours(case: Case) -> Outcome:
    if case.flavor is Flavor.HELM and is_pinned_chart_version(case.range):
        return Outcome(case.range, frozenset([case.range]), 1)  # pulled without listing tags
    try:
        rule = compile_rule(TagRule(case.range, case.filter, case.flavor))
    except InvalidRule:
        return Outcome(INVALID, frozenset(), 0)
    found = rule.candidates(case.tags)
    if not found:
        return Outcome(NO_MATCH, frozenset(), 0)
    # Flux pulls a HelmChart by its chart version (`+`), which Helm maps back to `_`.
    best = found[0].chart_version if case.flavor is Flavor.HELM else found[0].tag
    return Outcome(best, frozenset([best]), len(found))


def theirs(answer: dict[str, Any]) -> Outcome:
    if answer["tag"] is not None:
        return Outcome(answer["tag"], frozenset(answer["ties"]), answer["matches"])
    error: str = answer["error"]
    if error.startswith(("no match found for semver", "could not locate a version matching")):
        return Outcome(NO_MATCH, frozenset(), 0)
    if error.startswith("unable to locate any tags"):
        # HelmChart: Flux reports "no tags" before it reads the range, so an invalid range
        # over a repository without chart tags is either answer.
        return Outcome(NO_MATCH, frozenset([INVALID]), 0)
    return Outcome(INVALID, frozenset(), 0)


def agree(mine: Outcome, flux: Outcome) -> bool:
    if flux.tag in (NO_MATCH, INVALID):
        return mine.tag == flux.tag or mine.tag in flux.ties
    return mine.tag in flux.ties and mine.matches == flux.matches


def run_oracle(binary: Path, cases: list[Case]) -> list[dict[str, Any]]:
    payload = "".join(json.dumps(c.request()) + "\n" for c in cases)
    done = subprocess.run(
        [str(binary)], input=payload, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(answers) == len(cases), done.stderr
    return answers


def test_the_generator_covers_the_grammar() -> None:
    cases = generate(SEED, 4000)
    tags = {t for c in cases for t in c.tags}
    ranges = {c.range for c in cases}
    shapes = {
        "calver, leading zeros": r"v?20\d\d\.0\d\.0\d",
        "one part": r"v?\d+",
        "two parts": r"v?\d+\.\d+",
        "four parts": r"v?\d+(\.\d+){3}.*",
        "two parts and a prerelease with a dot": r"\d+\.\d+-\w+\.\w+",
        "prerelease with a leading zero": r".*-0\d.*",
        "underscore for plus": r"[^+]*_.*",
        "uint64 overflow": r".*18446744073709551616.*",
        "over 256 bytes": r".{257,}",
    }
    for name, shape in shapes.items():
        assert any(re.fullmatch(shape, t) for t in tags), name
    for op in ("~", "^", "!=", "||", ",", " - ", "x", "*", "-0", "<=", "=>", "~>"):
        assert any(op in r for r in ranges), op
    assert Counter(c.flavor for c in cases).keys() == set(Flavor)
    assert sum(c.filter is not None for c in cases) > 500


def test_flux_picks_the_same_tag() -> None:
    binary = oracle_binary()
    started = time.monotonic()
    cases = generate(SEED, CASES)
    answers = run_oracle(binary, cases)
    oracle_seconds = time.monotonic() - started
    total: Counter[str] = Counter()
    agreed: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    bad: list[str] = []
    for case, answer in zip(cases, answers, strict=True):
        mine, flux = ours(case), theirs(answer)
        total[case.flavor.value] += 1
        outcomes[flux.tag if flux.tag in (NO_MATCH, INVALID) else "<pick>"] += 1
        if agree(mine, flux):
            agreed[case.flavor.value] += 1
        else:
            bad.append(
                f"  {json.dumps(case.request())}\n"
                f"    flux: {answer}\n"
                f"    ours: {mine.tag!r} ({mine.matches} matching)"
            )
    seconds = time.monotonic() - started
    summary = [
        f"seed {SEED}: {len(cases)} cases in {seconds:.1f}s (oracle and generation "
        f"{oracle_seconds:.1f}s), {len(bad)} disagreements",
        "  flux outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())),
        *(f"  {f}: {agreed[f]}/{n} agree" for f, n in sorted(total.items())),
    ]
    print("\n".join(summary))
    assert not bad, "\n".join([*summary, f"first {min(SHOWN, len(bad))}:", *bad[:SHOWN]])
