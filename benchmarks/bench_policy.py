"""Tag selection speed: how long Flux's pick takes over 10,000 tags (cold and warm parse cache).

.venv/bin/python benchmarks/bench_policy.py
"""

from __future__ import annotations

import random
import statistics
import time

from exporter.flux.policy import compile_rule, parse_flux_tag
from exporter.model import TagRule


def main() -> None:
    rng = random.Random(7)
    tags = [
        f"{'v' if rng.random() < 0.3 else ''}{rng.randrange(30)}.{rng.randrange(60)}.{i}"
        + (f"-rc.{rng.randrange(9)}" if rng.random() < 0.2 else "")
        for i in range(10_000)
    ] + ["latest", "main"]
    rule = compile_rule(TagRule("^5.0 || >=10.0.0-0", semver_filter=r"^v?\d"))
    cold: list[float] = []
    warm: list[float] = []
    for _ in range(5):
        parse_flux_tag.cache_clear()
        started = time.perf_counter()
        rule.select(tags)
        cold.append(time.perf_counter() - started)
        started = time.perf_counter()
        rule.select(tags)
        warm.append(time.perf_counter() - started)
    print(
        f"select over {len(tags)} tags: cold median {statistics.median(cold) * 1000:.1f} ms, "
        f"warm median {statistics.median(warm) * 1000:.1f} ms (target < 50 ms cold)"
    )


if __name__ == "__main__":
    main()
