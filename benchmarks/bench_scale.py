"""Scale: ten thousand targets, distant and hung registries, all in one table.

A pass over N targets is bounded by registry round trips, not by N: with the tag cache it
needs one tag listing and one digest per repository, spread over the per-host concurrency,
so its floor is ``2 x R x latency / concurrency``. Each row is measured on a real
kube-apiserver (no Flux controllers: statuses stay empty, the exporter runs ``--dry-run``)
and distribution v3, with a loopback proxy adding latency to every request, and printed
beside its goal:

  a  first full pass, N targets on R repositories behind the latency   ≤ 1.3 x floor
  b  the same with one repository per target (2000 of each)            ≤ 1.3 x floor, < 60 s
  c  healthy targets while another registry accepts and never answers  ≤ +1 s; /healthz 200
  d  /metrics at N targets, 200 scrapes back to back, per format      p99 ≤ 50 ms, ≤ 6 MB
  e  first full pass at 0 ms latency while /metrics is scraped nonstop ≤ 1.2 x unscraped
     (once in each format)
  f  resident memory after the pass and after scraping nonstop         ≤ 128 MiB (134.2 MB)
  g  CPU over a steady minute, scraped every 15 s                      ≤ 10 % of one core
  h  registry requests in the first pass                               ≤ 2 x R

Each case's objects live in their own namespaces and each exporter watches only those.
/metrics is asked for in the text format 0.0.4 and in OpenMetrics 1.0.0 (as Prometheus
asks for it).
MB are 10^6 bytes. ``--quick`` runs small numbers (300 targets on 30 repositories) to
try it out.

    .venv/bin/python benchmarks/bench_scale.py [--targets 10000] [--repos 200]
        [--latency 0.05] [--case a,d] [--quick] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kubernetes import config
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from devenv.exporter import ExporterProcess, exporter_process
from devenv.hung import hung_registry
from devenv.kubeapi import start_control_plane
from devenv.latency import latency_proxy
from devenv.ocirepo import create_namespace, create_opted_in
from devenv.push import OCI_MANIFEST, Pusher
from devenv.registry import start_registry
from exporter.settings import Settings

CASES = "abcdefgh"
NAMESPACES = 10
FIRST_PASS = re.compile(r"first full check of (\d+) targets in ([\d.]+)s")
LAST_CHECK = "flux_oci_target_last_check_timestamp_seconds"
MB = 1e6
MEMORY_GOAL = 128 * 2**20 / MB  # f: 128 MiB, in MB
REQUEST = re.compile(r'msg="response completed".*?method=(\w+) .*?uri="?([^" ]+)')
USER_AGENT = "useragent=flux-oci-trigger/"
FORMATS = {"text": {}, "OpenMetrics": {"Accept": "application/openmetrics-text; version=1.0.0"}}


@dataclass(frozen=True)
class Row:
    case: str
    measure: str
    value: str
    goal: str = "-"
    met: bool | None = None


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    kubeconfig: Path
    concurrency: int
    registry_log: Path
    mark: int = 0  # size of the registry's log when the last exporter started

    @contextmanager
    def exporter(self, name: str, namespaces: list[str], wait: str) -> Iterator[ExporterProcess]:
        flags = ["--dry-run", "--interval", "1m", "--tag-ttl", "60s"]
        for namespace in namespaces:
            flags += ["--namespace", namespace]
        env = {"FLUX_OCI_TRIGGER_REGISTRY_CONCURRENCY": str(self.concurrency)}
        self.mark = self.registry_log.stat().st_size
        with exporter_process(
            self.kubeconfig, self.log(name), *flags, env=env, wait_path=wait, timeout=1800
        ) as proc:
            yield proc

    def log(self, name: str) -> Path:
        return self.workdir / "logs" / f"{name}.log"


# -- setting up ------------------------------------------------------------------------


def note(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def seed(base_url: str, repos: list[str]) -> None:
    """One small Flux artifact per repository, tagged 1.0.0 and 1.1.0."""

    def one(pusher: Pusher, repo: str) -> None:
        pushed = pusher.flux_artifact(repo, "1.0.0")
        manifest = httpx.get(
            f"{base_url}/v2/{repo}/manifests/{pushed.digest}",
            headers={"Accept": OCI_MANIFEST},
        ).json()
        pusher.manifest(repo, "1.1.0", manifest)

    with Pusher(base_url) as pusher, ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda repo: one(pusher, repo), repos))


def create_targets(
    api: Any, prefix: str, count: int, url: Callable[[int], str], spread: int = NAMESPACES
) -> list[str]:
    """``count`` opted-in OCIRepositories over ``spread`` namespaces; returns those."""
    namespaces = [f"{prefix}-{k}" for k in range(spread)]
    for namespace in namespaces:
        create_namespace(api, namespace)

    def one(i: int) -> None:
        create_opted_in(api, namespaces[i % spread], f"app-{i}", url(i), ">=1.0.0")

    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(one, range(count)))
    return namespaces


def repo(i: int) -> str:
    return f"bench/app-{i}"


# -- reading the exporter --------------------------------------------------------------


def get(url: str, headers: dict[str, str] | None = None) -> tuple[float, bytes, int]:
    """Seconds, body (as sent: not decompressed) and status of one GET."""
    started = time.perf_counter()
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            body, status = resp.read(), resp.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    return time.perf_counter() - started, body, status


def samples(base: str) -> list[Sample]:
    text = get(f"{base}/metrics")[1].decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def first_pass(log: Path, timeout: float = 1800) -> tuple[int, float]:
    """Targets and seconds of the exporter's first full check, read from its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = FIRST_PASS.search(log.read_text(errors="replace"))
        if found:
            return int(found.group(1)), float(found.group(2))
        time.sleep(0.1)
    raise TimeoutError(f"no first full check logged in {log}")


def registry_requests(log: Path, since: int) -> Counter[str]:
    """The exporter's requests in the registry's log after byte ``since``, by kind."""
    with log.open("rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    kinds: Counter[str] = Counter()
    for line in text.splitlines():
        found = REQUEST.search(line)
        if found is None or USER_AGENT not in line:
            continue
        method, uri = found.groups()
        if "/tags/list" in uri:
            kinds["tag lists"] += 1
        elif "/manifests/sha256:" in uri:
            kinds[f"{method} manifest by digest"] += 1
        elif "/manifests/" in uri:
            kinds[f"{method} manifest by tag"] += 1
        else:
            kinds[f"{method} other"] += 1
    return kinds


def memory(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM in MB."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    kb = {key: int(value.split()[0]) for key, _, value in (ln.partition(":") for ln in lines)
          if key in ("VmRSS", "VmHWM")}  # fmt: skip
    return kb["VmRSS"] * 1024 / MB, kb["VmHWM"] * 1024 / MB


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid``."""
    stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def scraping(base: str, headers: dict[str, str]) -> Iterator[list[float]]:
    """Scrapes /metrics back to back in a thread; yields the growing list of durations."""
    durations: list[float] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            durations.append(get(f"{base}/metrics", headers)[0])

    thread = threading.Thread(target=loop, name="scraper", daemon=True)
    thread.start()
    try:
        yield durations
    finally:
        stop.set()
        thread.join()


# -- the cases ---------------------------------------------------------------------------


def pass_rows(
    bench: Bench, case: str, proc: ExporterProcess, log: Path, targets: int, repos: int
) -> list[Row]:
    readyz = time.monotonic() - proc.started
    checked, seconds = first_pass(log)
    kinds = registry_requests(bench.registry_log, bench.mark)
    floor = 2 * repos * bench.args.latency / bench.concurrency
    ratio = seconds / floor
    goal, met = "<= 1.3 x floor", ratio <= 1.3 and checked == targets
    if case == "b":
        goal, met = "<= 1.3 x floor and < 60 s", met and seconds < 60
    return [
        Row(
            case,
            f"first full pass: {targets} targets on {repos} repositories, "
            f"+{bench.args.latency * 1000:g} ms per request",
            f"{seconds:.2f} s = {ratio:.2f} x floor {floor:.2f} s ({checked} checked)",
            goal,
            met,
        ),
        Row(case, "  process start -> /readyz 200", f"{readyz:.2f} s"),
        Row(
            case,
            f"  registry requests so far (floor counts 2 x R = {2 * repos})",
            f"{sum(kinds.values())}: " + ", ".join(f"{v} {k}" for k, v in sorted(kinds.items())),
        ),
    ]


def case_big(bench: Bench, cases: str, namespaces: list[str]) -> list[Row]:
    """a, then d, f, g and h on the same exporter after its first pass."""
    args = bench.args
    rows: list[Row] = []
    with bench.exporter("a", namespaces, "/readyz") as proc:
        base = proc.url
        pass_rows_a = pass_rows(bench, "a", proc, bench.log("a"), args.targets, args.repos)
        if "a" in cases:
            rows += pass_rows_a
        if "h" in cases:
            codes: Counter[str] = Counter()
            for s in samples(base):
                if s.name == "flux_oci_registry_requests_total":
                    codes[s.labels["code"]] += int(s.value)
            total, floor = sum(codes.values()), 2 * args.repos
            by_code = ", ".join(f"{k}: {v}" for k, v in sorted(codes.items()))
            rows.append(
                Row(
                    "h",
                    f"registry requests in the first pass ({args.repos} repositories)",
                    f"{total} ({by_code})",
                    f"<= 2 x R = {floor}",
                    total <= floor,
                )
            )
        if "f" in cases:
            rss, hwm = memory(proc.pid)
            rows.append(
                Row(
                    "f",
                    f"memory after the first pass, {args.targets} targets",
                    f"VmRSS {rss:.1f} MB, VmHWM {hwm:.1f} MB",
                    f"<= 128 MiB ({MEMORY_GOAL:.1f} MB)",
                    hwm <= MEMORY_GOAL,
                )
            )
        if "g" in cases:
            note(f"g: {args.steady:g} s of steady running, scraped every 15 s")
            before, started, due = cpu_seconds(proc.pid), time.monotonic(), 0.0
            while (elapsed := time.monotonic() - started) < args.steady:
                if elapsed >= due:
                    get(f"{base}/metrics")
                    due += 15
                time.sleep(max(0.0, min(due, args.steady) - (time.monotonic() - started)))
            used = cpu_seconds(proc.pid) - before
            percent = 100 * used / (time.monotonic() - started)
            rows.append(
                Row(
                    "g",
                    f"CPU over {args.steady:g} s steady, {args.targets} targets, "
                    "scraped every 15 s",
                    f"{percent:.1f} % of one core ({used:.2f} s)",
                    "<= 10 %",
                    percent <= 10,
                )
            )
        if "d" in cases or "f" in cases:
            rows += scrape_rows(bench, proc, cases)
    return rows


def scrape_rows(bench: Bench, proc: ExporterProcess, cases: str) -> list[Row]:
    """d: 200 scrapes back to back; f: memory once scraping has gone on for --steady s."""
    args, base, rows = bench.args, proc.url, []
    started = time.monotonic()
    while get(f"{base}/metrics")[1].count(b"flux_oci_target_state{") < args.targets:
        if time.monotonic() - started > 600:
            raise TimeoutError(f"/metrics did not show all {args.targets} targets in 600 s")
        time.sleep(0.1)
    if "d" in cases:
        complete = time.monotonic() - started
        rows.append(
            Row("d", "/metrics shows every target, waited for before d", f"{complete:.1f} s")
        )
    for name, headers in FORMATS.items():
        timed = []
        size = 0
        for _ in range(200):
            seconds, body, _ = get(f"{base}/metrics", headers)
            timed.append(seconds)
            size = len(body)
        if "d" not in cases:
            continue
        _, zipped, _ = get(f"{base}/metrics", {**headers, "Accept-Encoding": "gzip"})
        p50 = statistics.median(timed) * 1000
        p99 = statistics.quantiles(timed, n=100, method="inclusive")[98] * 1000
        rows += [
            Row(
                "d",
                f"/metrics ({name}), 200 scrapes back to back, {args.targets} targets",
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(timed) * 1000:.1f} ms",
                "p99 <= 50 ms",
                p99 <= 50,
            ),
            Row(
                "d",
                f"  /metrics body ({name})",
                f"{size / MB:.2f} MB (gzip {len(zipped) / MB:.3f} MB)",
                "<= 6 MB",
                size <= 6 * MB,
            ),
        ]
    if "f" in cases:
        note(f"f: scraping back to back until {args.steady:g} s have passed")
        while time.monotonic() - started < args.steady:
            get(f"{base}/metrics")
        rss, hwm = memory(proc.pid)
        rows.append(
            Row(
                "f",
                f"memory after {args.steady:g} s of scraping back to back",
                f"VmRSS {rss:.1f} MB, VmHWM {hwm:.1f} MB",
                f"<= 128 MiB ({MEMORY_GOAL:.1f} MB)",
                hwm <= MEMORY_GOAL,
            )
        )
    return rows


def case_wide(bench: Bench, namespaces: list[str]) -> list[Row]:
    with bench.exporter("b", namespaces, "/readyz") as proc:
        return pass_rows(bench, "b", proc, bench.log("b"), bench.args.wide, bench.args.wide)


def last_checks(base: str, namespace: str) -> list[float]:
    """The unix times of the last checks of the targets in ``namespace`` checked so far."""
    return [
        float(s.value)
        for s in samples(base)
        if s.name == LAST_CHECK and s.labels["namespace"] == namespace
    ]


def case_hung(bench: Bench, healthy: str, hung: str) -> list[Row]:
    """Seconds from process start to the last of the healthy targets' first checks (their
    own timestamps, so the exposition's render interval does not count), without and with
    targets on a registry that never answers; /healthz polled meanwhile."""
    count = bench.args.hung_targets
    times: dict[str, float] = {}
    answers: Counter[int] = Counter()
    extra = ""
    for name, namespaces in (("c-plain", [healthy]), ("c-hung", [healthy, hung])):
        with bench.exporter(name, namespaces, "/healthz") as proc:

            def probe(proc: ExporterProcess = proc) -> None:
                while time.monotonic() - proc.started < bench.args.steady:
                    try:
                        answers[get(f"{proc.url}/healthz")[2]] += 1
                    except OSError:
                        answers[0] += 1
                    time.sleep(0.5)

            prober = threading.Thread(target=probe, daemon=True)
            if name == "c-hung":
                prober.start()
            wall_start = time.time() - (time.monotonic() - proc.started)
            while len(checks := last_checks(proc.url, healthy)) < count:
                if time.monotonic() - proc.started > 600:
                    raise TimeoutError(f"{name}: healthy targets not all checked in 600 s")
                time.sleep(0.05)
            times[name] = max(checks) - wall_start
            if name == "c-hung":
                prober.join()
                errors = sum(
                    int(s.value)
                    for s in samples(proc.url)
                    if s.name == "flux_oci_check_errors_total"
                )
                hung_checked = len(last_checks(proc.url, hung))
                extra = f"{hung_checked} of {count} hung targets checked, {errors} check errors"
    added = times["c-hung"] - times["c-plain"]
    polls = sum(answers.values())
    return [
        Row("c", f"{count} healthy targets all checked, alone", f"{times['c-plain']:.2f} s"),
        Row(
            "c",
            f"  the same beside {count} targets on a hung registry",
            f"{times['c-hung']:.2f} s (added {added:+.2f} s)",
            "added <= 1 s",
            added <= 1,
        ),
        Row(
            "c",
            f"  /healthz in the first {bench.args.steady:g} s (every 0.5 s)",
            f"{answers[200]} of {polls} answered 200",
            "all 200",
            polls > 0 and answers[200] == polls,
        ),
        Row("c", f"  after {bench.args.steady:g} s", extra),
    ]


def case_scraped(bench: Bench, namespaces: list[str]) -> list[Row]:
    with bench.exporter("e-quiet", namespaces, "/healthz"):
        quiet = first_pass(bench.log("e-quiet"))[1]
    rows = [
        Row(
            "e",
            f"first full pass, {bench.args.targets} targets, 0 ms: unscraped",
            f"{quiet:.2f} s",
        )
    ]
    for fmt, headers in FORMATS.items():
        name = f"e-scraped-{fmt.lower()}"
        with (
            bench.exporter(name, namespaces, "/healthz") as proc,
            scraping(proc.url, headers) as durations,
        ):
            seconds = first_pass(bench.log(name))[1]
            scrapes = len(durations)
        ratio = seconds / quiet
        rows.append(
            Row(
                "e",
                f"  while /metrics ({fmt}) is scraped back to back",
                f"{seconds:.2f} s = {ratio:.2f} x ({scrapes} scrapes)",
                "<= 1.2 x unscraped",
                ratio <= 1.2,
            )
        )
    return rows


# -- the run -----------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    header = Row("case", "measure", "measured", "goal")
    width = [max(len(getattr(r, f)) for r in [header, *rows]) for f in ("measure", "value")]
    goal_w = max(len(r.goal) for r in [header, *rows])
    lines = []
    for r in [header, *rows]:
        met = "met" if r is header else {True: "yes", False: "NO", None: ""}[r.met]
        lines.append(
            f"{r.case:<4}  {r.measure:<{width[0]}}  {r.value:<{width[1]}}  {r.goal:<{goal_w}}  "
            f"{met}".rstrip()
        )
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--targets", type=int, help="N for a, d-h (default 10000)")
    parser.add_argument("--repos", type=int, help="R for a and h (default 200)")
    parser.add_argument("--wide", type=int, help="b: N = R (default 2000)")
    parser.add_argument("--hung-targets", type=int, default=100, help="c: each side")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--steady", type=float, help="seconds for c, f, g (default 60)")
    parser.add_argument("--concurrency", type=int, default=Settings().registry_concurrency)
    parser.add_argument("--case", action="append", help=f"some of {CASES} (default all)")
    parser.add_argument("--quick", action="store_true", help="300 targets on 30 repositories")
    parser.add_argument("--workdir", type=Path, help="keep logs and data here")
    args = parser.parse_args()
    small = {"targets": 300, "repos": 30, "wide": 200, "steady": 20.0}
    big = {"targets": 10_000, "repos": 200, "wide": 2000, "steady": 60.0}
    for key, value in (small if args.quick else big).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.cases = "".join(sorted(set("".join(args.case or [CASES]).replace(",", ""))))
    if set(args.cases) - set(CASES):
        parser.error(f"--case takes letters from {CASES}")
    return args


def run(args: argparse.Namespace, workdir: Path) -> list[Row]:
    cases = args.cases
    big = bool(set(cases) & set("adfgh"))
    with ExitStack() as stack:
        note("starting etcd, kube-apiserver, distribution v3, the proxies")
        plane = stack.enter_context(start_control_plane(workdir / "plane"))
        reg = stack.enter_context(start_registry(workdir / "registry", implementation="v3"))
        proxy = stack.enter_context(latency_proxy(reg.host, args.latency))
        hung = stack.enter_context(hung_registry())
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))  # type: ignore[no-untyped-call]
        stack.callback(api.close)
        (workdir / "logs").mkdir(exist_ok=True)
        bench = Bench(args, workdir, plane.kubeconfig, args.concurrency, reg.log_path)

        repos = max([args.repos] + ([args.wide] if "b" in cases else []))
        note(f"pushing 1.0.0 and 1.1.0 to {repos} repositories")
        seed(reg.base_url, [repo(j) for j in range(repos)])
        rows: list[Row] = []
        if big:
            note(f"a: creating {args.targets} objects")
            namespaces = create_targets(
                api, "a", args.targets, lambda i: f"oci://{proxy}/{repo(i % args.repos)}"
            )
            note("a: first full pass")
            rows += case_big(bench, cases, namespaces)
        if "b" in cases:
            note(f"b: creating {args.wide} objects, first full pass")
            namespaces = create_targets(api, "b", args.wide, lambda i: f"oci://{proxy}/{repo(i)}")
            rows += case_wide(bench, namespaces)
        if "c" in cases:
            note("c: a hung registry beside a healthy one")
            count = args.hung_targets
            healthy = create_targets(
                api, "c-healthy", count, lambda i: f"oci://{reg.host}/{repo(i % args.repos)}", 1
            )[0]
            stuck = create_targets(api, "c-hung", count, lambda i: f"oci://{hung}/x/app", 1)[0]
            rows += case_hung(bench, healthy, stuck)
        if "e" in cases:
            note(f"e: creating {args.targets} objects on the registry without latency")
            namespaces = create_targets(
                api, "e", args.targets, lambda i: f"oci://{reg.host}/{repo(i % args.repos)}"
            )
            rows += case_scraped(bench, namespaces)
        order = {case: n for n, case in enumerate(CASES)}
        return sorted(rows, key=lambda r: order[r.case])


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    with ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        workdir.mkdir(parents=True, exist_ok=True)
        rows = run(args, workdir)
    print(
        f"N={args.targets} targets on R={args.repos} repositories, latency "
        f"{args.latency * 1000:g} ms per request, {args.concurrency} requests in flight per "
        f"registry, {os.cpu_count()} CPUs; floor = 2 x R x latency / concurrency"
    )
    print(table(rows))
    print(f"whole run: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
