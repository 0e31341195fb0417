"""Wall-clock sampling profiler for a Python command, all threads (a stand-in for py-spy).

    python bench/wallprof.py OUT.txt [--interval 0.005] -- -m pytest --mtmcs ...
    python bench/wallprof.py OUT.txt --cprofile -- -m pytest --mtmcs ...
    python bench/wallprof.py OUT.txt --thread-cpu -- -m pytest --mtmcs ...

Runs the command in this interpreter (`-m MODULE args` or `SCRIPT args`) with a daemon thread
that, every `--interval` seconds, takes `sys._current_frames()` and counts, per thread, the
innermost frame of each stack and every function on it. At exit it writes, per thread, the
top functions by samples as self (innermost) and as total (anywhere on the stack), so a
thread that waits (for the GIL, a lock, a socket) shows where it waits. cProfile cannot do
this: it times only the thread it was started in, and only CPU inside Python calls.

The sampler needs the GIL itself, so a thread that holds the GIL for long stretches is
sampled less often than it runs: read the figures as shares, not as exact seconds.

`--cprofile` instead runs one `cProfile.Profile` in every thread (the main thread and each
thread started later, e.g. the engine's), timed by `time.thread_time` (the thread's own CPU
time: waiting for the GIL, a socket or a lock counts nothing), and writes, per thread, the
top functions by own and by cumulative CPU time, plus OUT.THREAD.prof files for `pstats`.
`--thread-cpu` only writes the CPU time of each thread (`time.thread_time`), undistorted.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import os
import runpy
import sys
import threading
import time
from types import FrameType


class Sampler:
    """Counts stack samples per thread name."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.self_counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.total_counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.samples: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._me = 0
        self.started = time.perf_counter()

    @staticmethod
    def _where(f: FrameType) -> str:
        code = f.f_code
        path = code.co_filename
        for marker in ("site-packages/", "pytest_mtmcs/", "lib/python3"):
            if marker in path:
                path = path[path.index(marker):]
                break
        return f"{code.co_name} ({path}:{f.f_lineno})"

    def _run(self) -> None:
        self._me = threading.get_ident()
        while not self._stop.wait(self.interval):
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == self._me:
                    continue
                name = names.get(ident, str(ident))
                self.samples[name] += 1
                self.self_counts[name][self._where(frame)] += 1
                seen: set[str] = set()
                f: FrameType | None = frame
                while f is not None:
                    code = f.f_code
                    key = f"{code.co_name} ({os.path.basename(code.co_filename)}:{code.co_firstlineno})"
                    if key not in seen:
                        seen.add(key)
                        self.total_counts[name][key] += 1
                    f = f.f_back

    def start(self) -> None:
        threading.Thread(target=self._run, name="wallprof", daemon=True).start()

    def report(self, out: str, top: int = 40) -> None:
        self._stop.set()
        wall = time.perf_counter() - self.started
        lines = [f"wall {wall:.2f} s, interval {self.interval * 1000:.1f} ms"]
        for name, n in self.samples.most_common():
            lines.append(f"\n== thread {name}: {n} samples ==\n-- self (innermost frame) --")
            lines += [f"{c:7d} {100 * c / n:5.1f}%  {k}" for k, c in self.self_counts[name].most_common(top)]
            lines.append("-- total (anywhere on the stack) --")
            lines += [f"{c:7d} {100 * c / n:5.1f}%  {k}" for k, c in self.total_counts[name].most_common(top)]
        with open(out, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")


class ThreadProfiles:
    """One cProfile.Profile per thread: the main thread's, and one in each thread started."""

    def __init__(self, profile: bool = True) -> None:
        import cProfile

        self._cprofile = cProfile
        self.profiles: dict[str, cProfile.Profile] = {}
        self.cpu: dict[str, float] = {}
        real_run = threading.Thread.run
        me = self

        def run(thread: threading.Thread) -> None:
            prof = me._cprofile.Profile(time.thread_time)
            if profile:
                me.profiles[f"{thread.name}-{len(me.profiles)}"] = prof
            started = time.thread_time()
            if profile:
                prof.enable()
            try:
                real_run(thread)
            finally:
                prof.disable()
                me.cpu[thread.name] = me.cpu.get(thread.name, 0.0) + time.thread_time() - started

        threading.Thread.run = run  # type: ignore[method-assign]
        self.main = cProfile.Profile(time.thread_time)
        if profile:
            self.profiles["MainThread"] = self.main
            self.main.enable()
        self.started = time.perf_counter()

    def report(self, out: str, top: int = 35) -> None:
        import io
        import pstats

        self.main.disable()
        self.cpu["MainThread"] = time.thread_time()
        lines = [f"wall {time.perf_counter() - self.started:.2f} s; thread CPU (s): "
                 + ", ".join(f"{k} {v:.1f}" for k, v in self.cpu.items())]
        for name, prof in self.profiles.items():
            buf = io.StringIO()
            try:
                stats = pstats.Stats(prof, stream=buf)
            except TypeError:  # a thread that never ran Python code
                continue
            stats.dump_stats(f"{out}.{name}.prof")
            buf.write(f"\n== thread {name} ==\n")
            stats.sort_stats("tottime").print_stats(top)
            stats.sort_stats("cumulative").print_stats(top)
            lines.append(buf.getvalue())
        with open(out, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")


def main() -> None:
    argv = sys.argv[1:]
    if "--" not in argv:
        raise SystemExit(__doc__)
    split = argv.index("--")
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--interval", type=float, default=0.005)
    ap.add_argument("--cprofile", action="store_true")
    ap.add_argument("--thread-cpu", action="store_true",
                    help="only the CPU time of each thread (no profiler, no sampler)")
    a = ap.parse_args(argv[:split])
    cmd = argv[split + 1:]
    if a.cprofile or a.thread_cpu:
        profiles = ThreadProfiles(profile=a.cprofile)
        atexit.register(profiles.report, a.out)
    else:
        sampler = Sampler(a.interval)
        atexit.register(sampler.report, a.out)
        sampler.start()
    if cmd[0] == "-m":
        sys.argv = [cmd[1], *cmd[2:]]
        runpy.run_module(cmd[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = cmd
        runpy.run_path(cmd[0], run_name="__main__")


if __name__ == "__main__":
    main()
