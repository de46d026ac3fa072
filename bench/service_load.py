"""Load test of ``medsight serve``: concurrent clients, mixed valid and invalid uploads.

Starts the service on a free loopback port (a child process), sends ``--requests`` requests
from ``--clients`` concurrent clients, and prints throughput, latency percentiles, answers by
status (and any answer that differs from the expected one), and the server's memory over the
run. Goal: no 5xx except intended 503s, every bad input a 4xx, memory flat.

    python bench/service_load.py runs/demo --clients 16 --requests 512
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

KEY = "bench-key-0123456789"
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_inputs(folder: Path, limit_mb: float) -> list[dict]:
    """Request kinds with their expected status; valid ones several times so they dominate."""
    from medsight.data.synthetic import synthetic_sample
    from medsight.io.dicom_write import write_ct_slice
    from medsight.io.image import spacing_of
    from medsight.io.write import write_nifti, write_png

    image = synthetic_sample(0, "test", 3)["image"]
    write_ct_slice(image[0].numpy(), folder / "s.dcm", spacing_of(image))
    write_nifti(image, folder / "s.nii.gz")
    write_png(image, folder / "s.png", window=(-1350.0, 150.0))
    dicom = (folder / "s.dcm").read_bytes()
    ok = [("dicom", dicom, "", 200), ("nifti", (folder / "s.nii.gz").read_bytes(), "", 200),
          ("png", (folder / "s.png").read_bytes(), "", 200), ("dicom+heatmap", dicom, "?heatmap=true", 200)]
    bad = [("text", b"hello, not an image", "", 415), ("truncated-dicom", dicom[:3000], "", 400),
           ("empty", b"", "", 400), ("oversize", b"\0" * int((limit_mb + 0.5) * MIB), "", 413),
           ("unknown-model", dicom, "?model=nope", 422), ("no-key", dicom, "", 401),
           ("not-multipart", dicom, "", 415)]
    kinds = [{"name": n, "data": d, "query": q, "expect": e} for n, d, q, e in ok * 2 + bad]
    return kinds


async def one_request(client: httpx.AsyncClient, url: str, kind: dict) -> tuple[str, int, float]:
    headers = {} if kind["name"] == "no-key" else {"X-API-Key": KEY}
    start = time.perf_counter()
    try:
        if kind["name"] == "not-multipart":
            response = await client.post(url + kind["query"], content=kind["data"],
                                         headers={**headers, "Content-Type": "application/dicom"})
        else:
            response = await client.post(url + kind["query"], files={"file": ("upload", kind["data"])},
                                         headers=headers)
        status = response.status_code
    except httpx.HTTPError as exc:
        status = f"error:{type(exc).__name__}"
    return kind["name"], status, time.perf_counter() - start


def rss_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MiB, from /proc."""
    values = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                values[key] = int(value.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


async def load(url: str, kinds: list[dict], clients: int, requests: int, pid: int) -> dict:
    queue: asyncio.Queue = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(kinds[i % len(kinds)])
    results: list[tuple[str, int, float]] = []
    memory: list[float] = []
    done = asyncio.Event()

    async def sample_memory() -> None:
        while not done.is_set():
            memory.append(rss_mib(pid)[0])
            await asyncio.sleep(0.2)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            results.append(await one_request(client, url, queue.get_nowait()))

    sampler = asyncio.create_task(sample_memory())
    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))
    wall = time.perf_counter() - start
    done.set()
    await sampler
    return {"results": results, "wall": wall, "memory": memory}


def report(run: dict, kinds: list[dict], peak: float, args) -> dict:
    from medsight.runtime import cpu_description

    expected = {k["name"]: k["expect"] for k in kinds}
    latencies = sorted(r[2] for r in run["results"])
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    by_status = Counter(str(r[1]) for r in run["results"])
    unexpected = Counter(f"{n}->{s}" for n, s, _ in run["results"] if s != expected[n] and s != 503)
    mem = run["memory"]
    tenth = max(1, len(mem) // 10)
    summary = {
        "cpu": cpu_description(), "clients": args.clients, "requests": len(latencies),
        "wall_s": round(run["wall"], 2), "throughput_rps": round(len(latencies) / run["wall"], 1),
        "latency_ms": {"p50": round(q[49] * 1000, 1), "p95": round(q[94] * 1000, 1), "p99": round(q[98] * 1000, 1)},
        "by_status": dict(sorted(by_status.items())), "unexpected": dict(unexpected),
        "server_5xx_other_than_503": sum(v for k, v in by_status.items() if k.startswith("5") and k != "503"),
        "rss_mib": {"first_10pct": round(statistics.mean(mem[:tenth]), 1),
                    "last_10pct": round(statistics.mean(mem[-tenth:]), 1), "peak": round(peak, 1),
                    "by_tenth": [round(statistics.mean(mem[i * tenth:(i + 1) * tenth] or mem[-1:]), 1)
                                 for i in range(10)]},
    }
    print(f"CPU: {summary['cpu']['model']} (native bf16: {summary['cpu']['bf16_native']})")
    print(f"{summary['requests']} requests, {args.clients} clients, {summary['wall_s']} s: "
          f"{summary['throughput_rps']} req/s")
    print("latency ms    p50 {p50:>8}   p95 {p95:>8}   p99 {p99:>8}".format(**summary["latency_ms"]))
    print("status        " + "   ".join(f"{k}: {v}" for k, v in summary["by_status"].items()))
    print(f"unexpected    {summary['unexpected'] or 'none'}   5xx other than 503: {summary['server_5xx_other_than_503']}")
    print("server RSS    first 10% {first_10pct} MiB   last 10% {last_10pct} MiB   peak {peak} MiB".format(
        **summary["rss_mib"]))
    print("RSS by tenth  " + " ".join(f"{v:.0f}" for v in summary["rss_mib"]["by_tenth"]) + " MiB")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run folder to serve")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--max-upload-mb", type=float, default=1.0)
    parser.add_argument("--queue", type=int, default=32, help="the service's --queue")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()
    # A terminated bench still stops its server (the `finally` below runs on SystemExit).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    port = free_port()
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    server_log = tempfile.TemporaryFile()
    server = subprocess.Popen(
        [sys.executable, "-m", "medsight.cli", "serve", str(args.run), "--port", str(port), "--api-key", KEY,
         "--max-upload-mb", str(args.max_upload_mb), "--queue", str(args.queue)],
        env=env, stdout=server_log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                server_log.seek(0)
                sys.exit("the service did not start:\n" + server_log.read().decode(errors="replace")[-3000:])
            time.sleep(0.2)
        with tempfile.TemporaryDirectory(prefix="medsight-bench-") as folder:
            kinds = make_inputs(Path(folder), args.max_upload_mb)
            asyncio.run(load(url + "/v1/predict", kinds, 2, 8, server.pid))  # warm-up
            run = asyncio.run(load(url + "/v1/predict", kinds, args.clients, args.requests, server.pid))
            summary = report(run, kinds, rss_mib(server.pid)[1], args)
    finally:
        server.terminate()
        server.wait(timeout=30)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
