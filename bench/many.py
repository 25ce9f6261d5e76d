"""`python -m bench --many N`: one engine serving N one-function Python services (docker, runc).

What the warm budget (engine/warmth.py) is for, measured on this machine:

1. Start-up under a 1 GiB budget: time from `serve` to /readyz 200, the engine's RSS, and the idle
   containers left warm (the budget's own gauge and the daemon's count).
2. One round of one request to each service (4 clients), cold ones included: p50/p99 and errors.
3. Steady mixed traffic on a second engine whose budget holds a quarter of the services
   (`warm_budget_workers = N / 4`): 10 % of the services get 90 % of the requests, the rest is
   spread evenly over the others. The engine's counters give the cold-start fraction, overall and
   for each group: a request to a tail service finds it warm only if it was called recently enough
   to still hold a place, so the tail's fraction is bounded below by about 1 - (places left) / (tail
   services), whatever the policy.

The services are folders generated under a cache directory with content that does not change
between runs, so their images are built once (the first run of a large N builds N images).
Requests go to 127.0.0.1 only, bounded in count and time.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import random
import sys
import threading
import time
from pathlib import Path

from bench import accounting, servers, steady, warm_sim

CACHE = Path.home() / ".cache" / "functions-engine" / "bench-many"
HANDLER = """def handler(context, event, callback):
    return callback(None, {{"service": "{name}"}})
"""
BUDGET_MB = 1024
MEMORY_MB = 128  # per worker: the budget counts each idle worker at this


def _projects(n: int) -> list[tuple[str, Path]]:
    made = []
    for i in range(n):
        name = f"s{i:04d}"
        root = CACHE / name
        fn = root / "functions" / "hello.py"
        text = HANDLER.format(name=name)
        if not fn.is_file() or fn.read_text() != text:
            fn.parent.mkdir(parents=True, exist_ok=True)
            fn.write_text(text)
        made.append((name, root))
    return made


def _engine(projects: list[tuple[str, Path]], tag: str, config: dict[str, object]) -> servers.Server:
    port, admin = servers.free_port(), servers.free_port()
    CACHE.mkdir(parents=True, exist_ok=True)
    cfg = CACHE / f"{tag}.json"
    cfg.write_text(json.dumps(config))
    command = [
        sys.executable, "-m", "engine", "serve", *[f"{name}={root}" for name, root in projects],
        "--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin), "--domain", "localhost",
        "--backend", "docker", "--runtime", "runc", "--log-level", "warning", "--config", str(cfg),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    proc, log_path, err_path = servers._spawn(f"many-{tag}", command, env, servers.REPO)
    return servers.Server(f"many-{tag}", proc, port, log_path, err_path, admin_port=admin, docker=True)


def _call(port: int, service: str) -> tuple[int, float]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", "/hello", headers={"Host": f"{service}.localhost:{port}"})
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    except OSError:
        return 0, time.perf_counter() - started
    finally:
        conn.close()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


def _counter(admin: int, name: str, services: list[str]) -> float:
    samples = steady.scrape(f"http://127.0.0.1:{admin}")
    return sum(steady.metric_total(samples, name, service=s) for s in services)


def _start_phase(projects: list[tuple[str, Path]]) -> dict[str, object]:
    server = _engine(projects, "start", {"warm_budget_mb": BUDGET_MB, "memory_mb": MEMORY_MB, "max_workers": 2})
    try:
        began = time.monotonic()
        server.wait_ready(timeout_s=3600)
        ready_s = time.monotonic() - began
        admin = f"http://127.0.0.1:{server.admin_port}"
        at_ready = steady.scrape(admin)
        built_at_ready = steady.metric_total(at_ready, "functions_engine_image_builds_total",
                                             kind="service", outcome="built")
        rss_at_ready = accounting.process_rss_bytes(server.pid) / 2**20
        idle_at_ready = (len(accounting.engine_container_ids(server.pid)),
                         steady.metric_total(at_ready, "functions_engine_warm_budget_used_workers"))
        # The other services' images are built (or found) in the background after readiness: wait for
        # them, bounded, so the round below measures serving, not building.
        while steady.metric_total(steady.scrape(admin), "functions_engine_image_builds_waiting") > 0:
            if time.monotonic() - began > 3600:
                raise RuntimeError("images still being built after an hour")
            time.sleep(1)
        all_images_s = time.monotonic() - began
        time.sleep(3)  # let the warm starts finish
        # (Measured again below: after a long first build the pools warmed at start may have gone to
        # zero meanwhile, as scale_to_zero_after_s says.)
        samples = steady.scrape(admin)
        row: dict[str, object] = {
            "load_average_at_start": os.getloadavg()[0],
            "ready_s": round(ready_s, 1),
            "images_built_before_ready": round(built_at_ready),
            "engine_rss_at_ready_mb": round(rss_at_ready, 1),
            "idle_containers_at_ready": idle_at_ready[0], "budget_used_workers_at_ready": idle_at_ready[1],
            "all_images_there_s": round(all_images_s, 1),
            "images_built": round(steady.metric_total(samples, "functions_engine_image_builds_total",
                                                      kind="service", outcome="built")),
            "engine_rss_mb": round(accounting.process_rss_bytes(server.pid) / 2**20, 1),
            "idle_containers": len(accounting.engine_container_ids(server.pid)),
            "budget_used_workers": steady.metric_total(samples, "functions_engine_warm_budget_used_workers"),
        }
        names = [name for name, _ in projects]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda s: _call(server.port, s), names))
        latencies = [t for _, t in results]
        row.update({
            "round_requests": len(results),
            "round_errors": sum(1 for status, _ in results if status != 200),
            "round_p50_ms": round(_pct(latencies, 0.50), 1),
            "round_p99_ms": round(_pct(latencies, 0.99), 1),
            "round_cold": round(_counter(server.admin_port, "functions_engine_cold_starts_total", names)),
            "engine_rss_after_round_mb": round(accounting.process_rss_bytes(server.pid) / 2**20, 1),
        })
        return row
    finally:
        server.stop()


def _steady_phase(projects: list[tuple[str, Path]], duration_s: float, clients: int,
                  tail_shape: str = "even") -> dict[str, object]:
    names = [name for name, _ in projects]
    hot = names[: max(1, len(names) // 10)]
    tail = names[len(hot):] or hot
    tail_weights = warm_sim.mix(len(names), tail_shape)[len(hot):] or [1.0]
    places = max(1, len(names) // 4)
    server = _engine(projects, "steady", {"warm_budget_workers": places, "warm_budget_mb": 1_000_000,
                                          "memory_mb": MEMORY_MB, "max_workers": 2})
    try:
        server.wait_ready(timeout_s=3600)
        rng = random.Random(12)
        for name in hot:  # the hot set is called before the window, as it would be in a running engine
            _call(server.port, name)
        before = {g: (_counter(server.admin_port, "functions_engine_cold_starts_total", ss),
                      _counter(server.admin_port, "functions_engine_invocations_total", ss))
                  for g, ss in (("hot", hot), ("tail", tail))}
        errors = 0
        latencies: list[float] = []
        lock = threading.Lock()
        deadline = time.monotonic() + duration_s

        def client(seed: int) -> None:
            nonlocal errors
            local = random.Random(seed)
            while time.monotonic() < deadline:
                service = local.choice(hot) if local.random() < 0.9 else local.choices(tail, tail_weights)[0]
                status, took = _call(server.port, service)
                with lock:
                    latencies.append(took)
                    errors += status != 200

        threads = [threading.Thread(target=client, args=(rng.random(),)) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after = {g: (_counter(server.admin_port, "functions_engine_cold_starts_total", ss),
                     _counter(server.admin_port, "functions_engine_invocations_total", ss))
                 for g, ss in (("hot", hot), ("tail", tail))}
        cold = {g: after[g][0] - before[g][0] for g in after}
        calls = {g: after[g][1] - before[g][1] for g in after}
        total_calls = sum(calls.values()) or 1
        samples = steady.scrape(f"http://127.0.0.1:{server.admin_port}")
        return {
            "steady_s": duration_s, "tail": tail_shape, "budget_places": places, "hot_services": len(hot),
            "floor_any_policy": round(warm_sim.floor(warm_sim.mix(len(names), tail_shape), places), 4),
            "load_average_at_end": os.getloadavg()[0],
            "requests": len(latencies), "errors": errors,
            "p50_ms": round(_pct(latencies, 0.5), 1), "p99_ms": round(_pct(latencies, 0.99), 1),
            "cold_fraction": round(sum(cold.values()) / total_calls, 4),
            "cold_fraction_hot": round(cold["hot"] / (calls["hot"] or 1), 4),
            "cold_fraction_tail": round(cold["tail"] / (calls["tail"] or 1), 4),
            "evictions": round(steady.metric_total(samples, "functions_engine_warm_budget_evictions_total")),
            "idle_containers_end": len(accounting.engine_container_ids(server.pid)),
        }
    finally:
        server.stop()


def run(n: int, duration_s: float, clients: int = 4, *, tail: str = "even", steady: bool = True) -> int:
    projects = _projects(n)
    print(f"bench --many {n}: docker runc, budget {BUDGET_MB} MB at memory_mb={MEMORY_MB}, then "
          f"{duration_s:g} s of 90/10 traffic ({tail} tail) at a budget of {max(1, n // 4)} idle workers; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    start = _start_phase(projects)
    print(json.dumps(start), flush=True)
    mixed: dict[str, object] = {}
    if steady:
        mixed = _steady_phase(projects, duration_s, clients, tail)
        print(json.dumps(mixed), flush=True)
    print()
    print("| measure | value |")
    print("|---|---|")
    for key, value in {**start, **mixed}.items():
        print(f"| {key} | {value} |")
    ok = start["round_errors"] == 0 and mixed.get("errors", 0) == 0
    return 0 if ok else 1
