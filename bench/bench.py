#!/usr/bin/env python3
"""ASPFS benchmark suite: ASPFS side by side with a native directory and
libfuse's passthrough_ll, in the same run.  Start it through bench/run, which
installs what is missing, makes the work directory and cleans up after us
even if we die; see bench/README.md.

Only the standard library is used.  Plots are drawn by gnuplot (report.py).
"""

import argparse
import datetime
import glob
import gzip
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH_DIR)
sys.dont_write_bytecode = True   # no __pycache__ in the repository
sys.path.insert(0, BENCH_DIR)
import report  # noqa: E402  (bench/report.py)

MiB = 1 << 20
GiB = 1 << 30
KNOWN_TARGETS = ("native", "passthrough", "passthrough_perm", "aspfs")
PASSTHROUGH_TARGETS = ("passthrough", "passthrough_perm")
# passthrough_ll with default_permissions is ASPFS's like-for-like metadata
# baseline: the kernel then checks permissions from the attributes, as it does
# for ASPFS, and refreshes a directory's attributes after each change in it
# (one FUSE_GETATTR more per create, unlink and rename).  It is measured in
# the metadata section only.
META_ONLY_TARGETS = ("passthrough_perm",)
KNOWN_SECTIONS = ("data", "meta", "tree", "density")
PT_EXAMPLES = "/usr/share/doc/libfuse3-dev/examples"

# Sizes of both modes.  Where passthrough_ll is a target, the file counts
# are capped by its RLIMIT_NOFILE: it keeps one O_PATH fd per inode the
# kernel knows, and the kernel forgets none while memory is plentiful.
MODES = {
    "full": dict(runs=3, meta_runs=3, seq_size=4 * GiB, rand_size=1 * GiB,
                 randwrite_io=256 * MiB, randread_s=15, fsync_s=10,
                 fio_cap=300, md_files=20000, md_size=1024, md_passes=3,
                 md_create_cap=120, md_scan_cap=30,
                 tree_entries=100000, density=[10, 100, 200], density_runs=3,
                 idle_s=5),
    "quick": dict(runs=1, meta_runs=3, seq_size=1 * GiB, rand_size=256 * MiB,
                  randwrite_io=32 * MiB, randread_s=3, fsync_s=3,
                  fio_cap=10, md_files=3000, md_size=1024, md_passes=5,
                  md_create_cap=1.5, md_scan_cap=1,
                  tree_entries=5000, density=[10, 100, 200], density_runs=1,
                  idle_s=2),
}
TREE_ROOTS = ["usr/share", "usr/include", "usr/lib"]


class BenchError(Exception):
    pass


class Interrupted(BaseException):
    pass


# --------------------------------------------------------------- helpers


def now():
    return time.monotonic()


def human_bytes(n):
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return "%d %s" % (n // size, unit)
    return "%d B" % n


def parse_size(text):
    text = text.strip().upper().rstrip("B").rstrip("I")
    mult = 1
    for suffix, m in (("K", 1 << 10), ("M", MiB), ("G", GiB), ("T", 1 << 40)):
        if text.endswith(suffix):
            mult, text = m, text[:-1]
            break
    return int(float(text) * mult)


def tail(path, lines=15):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 8192))
            data = f.read().decode("utf-8", "replace")
        return "\n".join(data.splitlines()[-lines:])
    except OSError:
        return ""


def unescape_mount(field):
    # /proc/self/mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(field):
        code = field[i + 1:i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mountinfo():
    """[(mount point, 'major:minor', fstype)] without touching any mount."""
    result = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            result.append((unescape_mount(parts[4]), parts[2], parts[sep + 1]))
    return result


def mount_points():
    return {m[0] for m in mountinfo()}


def is_mounted(path):
    return os.path.abspath(path) in mount_points()


def mounts_under(prefix):
    prefix = os.path.abspath(prefix)
    found = [m for m in mount_points()
             if m == prefix or m.startswith(prefix + "/")]
    return sorted(found, key=len, reverse=True)


def abort_fuse(path):
    """Abort the FUSE connection of a hung mount (via fusectl)."""
    conn_dir = "/sys/fs/fuse/connections"
    for mnt, dev, fstype in mountinfo():
        if mnt != os.path.abspath(path) or not fstype.startswith("fuse"):
            continue
        minor = dev.split(":")[1]
        if not os.path.exists(os.path.join(conn_dir, minor)):
            subprocess.run(["mount", "-t", "fusectl", "fusectl", conn_dir],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with open(os.path.join(conn_dir, minor, "abort"), "w") as f:
                f.write("1")
        except OSError:
            pass


def force_unmount(path, timeout=30):
    """fusermount3 -u, then lazily."""
    if not is_mounted(path):
        return True
    for cmd in (["fusermount3", "-u", path], ["umount", path],
                ["fusermount3", "-uz", path], ["umount", "-l", path]):
        try:
            subprocess.run(cmd, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=timeout)
        except (subprocess.TimeoutExpired, FileNotFoundError):
            pass
        if not is_mounted(path):
            return True
    return not is_mounted(path)


def raise_nofile():
    """Raise RLIMIT_NOFILE as far as we may; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for lim in ((1 << 20, 1 << 20), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, lim)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def unlink_if(path):
    if os.path.lexists(path):
        os.unlink(path)


def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pss_kib(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return vm_rss_kib(pid)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# --------------------------------------------------------------- context


class Progress:
    def __init__(self):
        self.total = 1
        self.done = 0
        self.t0 = now()
        self.tty = sys.stderr.isatty()
        self.last = ""

    def _line(self, msg):
        el = int(now() - self.t0)
        return "[%2d:%02d %3d/%d] %s" % (el // 60, el % 60, self.done,
                                         self.total, msg)

    def show(self, msg):
        self.last = msg
        line = self._line(msg)
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            sys.stderr.write("\r\033[K" + line[:width])
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def step(self, msg):
        self.done += 1
        self.show(msg)

    def log(self, msg):
        if self.tty:
            sys.stderr.write("\r\033[K")
        sys.stderr.write("bench: " + msg + "\n")
        if self.tty and self.last:
            sys.stderr.write(self._line(self.last)[:shutil.get_terminal_size((100, 20)).columns - 1])
        sys.stderr.flush()

    def finish(self):
        if self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


class Ctx:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.logs = os.path.join(work, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.progress = Progress()
        self.procs = []            # every process we started and keep
        self.errors = []
        self.notes = []
        self.caps = {}
        self.pidfile = os.path.join(work, "pids")
        self.can_drop = True
        self.current_target = None

    # processes --------------------------------------------------------
    def spawn(self, cmd, log, env=None):
        logf = open(log, "ab")

        def pre():
            os.setsid()
            try:
                soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            except (ValueError, OSError):
                pass

        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, env=env,
                                preexec_fn=pre)
        logf.close()
        proc.log = log
        self.procs.append(proc)
        with open(self.pidfile, "a") as f:
            f.write("%d %s\n" % (proc.pid, os.path.basename(cmd[0])))
        return proc

    def stop(self, proc, timeout=60):
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        if proc in self.procs and proc.poll() is not None:
            self.procs.remove(proc)
        return proc.returncode

    def run(self, cmd, timeout=600, env=None, cwd=None, check=True,
            stdout=subprocess.PIPE):
        """Run a command; on a timeout abort the current target's FUSE
        connection (a process stuck on a hung mount cannot be killed)."""
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=subprocess.PIPE, env=env, cwd=cwd)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            if self.current_target is not None:
                self.current_target.abort()
            proc.kill()
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            raise BenchError("timed out after %ds: %s" % (timeout, " ".join(cmd)))
        except BaseException:   # interrupted: do not leave it running
            proc.kill()
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            raise
        out = out.decode("utf-8", "replace") if out is not None else ""
        err = err.decode("utf-8", "replace")
        if check and proc.returncode != 0:
            msg = (err.strip() or out.strip()).splitlines()
            raise BenchError("%s exited %d: %s" % (
                os.path.basename(cmd[0]), proc.returncode,
                " | ".join(msg[-5:]) if msg else "(no output)"))
        return proc.returncode, out, err

    # caches -----------------------------------------------------------
    def drop_caches(self):
        try:
            self.run(["sync"], timeout=600)
        except BenchError as e:
            self.progress.log("sync: %s" % e)
        if not self.can_drop:
            return
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
        except OSError as e:
            self.can_drop = False
            self.notes.append("Could not drop the kernel caches (%s): reads "
                              "and tree walks may be served from memory." % e)

    def capped(self, what, event):
        """Remember that a time cap cut a measurement short."""
        self.caps.setdefault(what, []).append(event)

    def cap_notes(self):
        return ["Time cap hit in %s; the figures are rates over the work "
                "done: %s." % (what, "; ".join(events))
                for what, events in self.caps.items()]

    def error(self, target, bench, run, msg, log=None):
        entry = {"target": target, "bench": bench, "run": run,
                 "message": str(msg)}
        if log:
            entry["log_tail"] = tail(log)
        self.errors.append(entry)
        self.progress.log("FAILED %s / %s (run %s): %s" % (target, bench, run,
                                                          str(msg)[:300]))


# --------------------------------------------------------------- targets


class Target:
    name = label = ""
    fuse = False

    def __init__(self, ctx):
        self.ctx = ctx
        self.root = None
        self.dead = None

    def setup(self):
        pass

    def teardown(self):
        pass

    def abort(self):
        pass

    def check(self):
        """Raise if the target can no longer be used."""
        if self.dead:
            raise BenchError("target unusable: %s" % self.dead)

    def fresh_dir(self, name):
        d = os.path.join(self.root, name)
        if os.path.lexists(d):
            self.ctx.run(["rm", "-rf", d], timeout=1800)
        os.mkdir(d)
        return d

    def remove(self, d):
        try:
            self.ctx.run(["rm", "-rf", d], timeout=1800)
        except BenchError as e:
            self.ctx.progress.log("cleanup of %s: %s" % (d, e))


class Native(Target):
    name, label = "native", "native"

    def setup(self):
        self.root = os.path.join(self.ctx.work, "native")
        os.makedirs(self.root, exist_ok=True)


class Passthrough(Target):
    name, label = "passthrough", "passthrough_ll"
    fuse = True

    def __init__(self, ctx, binary, opts):
        super().__init__(ctx)
        self.binary = binary
        self.opts = opts
        self.proc = None
        self.log = os.path.join(ctx.logs, self.name + ".log")

    def setup(self):
        self.src = os.path.join(self.ctx.work, self.name + "-src")
        self.root = os.path.join(self.ctx.work, self.name + "-mnt")
        os.makedirs(self.src, exist_ok=True)
        os.makedirs(self.root, exist_ok=True)
        self.proc = start_passthrough(self.ctx, self.binary, self.src,
                                      self.root, self.opts, self.log)

    def check(self):
        super().check()
        if self.proc is None or self.proc.poll() is not None:
            self.dead = "passthrough_ll exited (see its log)"
        elif not is_mounted(self.root):
            self.dead = "passthrough_ll mount is gone"
        if self.dead:
            raise BenchError(self.dead)

    def abort(self):
        abort_fuse(self.root)
        self.dead = "aborted after a timeout"

    def teardown(self):
        if self.root:
            force_unmount(self.root)
        if self.proc is not None:
            self.ctx.stop(self.proc, timeout=20)


class PassthroughPerm(Passthrough):
    name, label = "passthrough_perm", "passthrough_ll + default_permissions"

    def __init__(self, ctx, binary, opts):
        super().__init__(ctx, binary, ",".join(o for o in (opts, "default_permissions") if o))


def start_passthrough(ctx, binary, src, mnt, opts, log, timeout=15):
    o = "source=" + src + ("," + opts if opts else "")
    proc = ctx.spawn([binary, "-f", "-o", o, mnt], log)
    deadline = now() + timeout
    while now() < deadline:
        if is_mounted(mnt):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.005)
    ctx.stop(proc, 5)
    raise BenchError("passthrough_ll did not mount %s: %s" % (mnt, tail(log, 5)))


class AspfsDaemon:
    """One aspfsd with its own store and socket, and its CLI."""

    def __init__(self, ctx, build, tag):
        self.ctx = ctx
        self.aspfsd = os.path.join(build, "aspfsd")
        self.aspfs = os.path.join(build, "aspfs")
        self.store = os.path.join(ctx.work, tag + "-store")
        self.socket = os.path.join(ctx.work, tag + ".sock")
        self.log = os.path.join(ctx.logs, tag + "-aspfsd.log")
        self.env = dict(os.environ, ASPFS_SOCKET=self.socket)
        self.proc = None

    def start(self, timeout=60):
        os.makedirs(self.store, exist_ok=True)
        cmd = [self.aspfsd, "--store", self.store, "--socket", self.socket]
        if "--fuse-io-uring" in daemon_help(self.aspfsd):
            cmd += ["--fuse-io-uring", self.ctx.args.fuse_io_uring]
        if any("--listen" in line and "REQUIRED" in line
               for line in daemon_help(self.aspfsd).splitlines()):
            cmd += ["--listen", "127.0.0.1:%d" % free_port()]
        self.proc = self.ctx.spawn(cmd, self.log)
        deadline = now() + timeout
        while now() < deadline:
            if self.proc.poll() is not None:
                raise BenchError("aspfsd exited with %s before its socket "
                                 "appeared" % self.proc.returncode)
            if os.path.exists(self.socket):
                break
            time.sleep(0.02)
        else:
            raise BenchError("aspfsd socket %s did not appear in %ds"
                             % (self.socket, timeout))
        # ready = the CLI gets an answer
        last = None
        while now() < deadline:
            try:
                self.cli("status", "--json", timeout=10)
                return
            except BenchError as e:
                last = e
                time.sleep(0.1)
        raise BenchError("aspfsd does not answer `aspfs status --json`: %s" % last)

    def cli(self, *argv, timeout=120):
        return self.ctx.run([self.aspfs] + list(argv), timeout=timeout,
                            env=self.env)[1]

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is not None:
            rc = self.ctx.stop(self.proc, timeout=60)
            if rc not in (0, None) and rc != -signal.SIGTERM:
                self.ctx.notes.append("aspfsd (%s) exited with %s on SIGTERM"
                                      % (os.path.basename(self.store), rc))


_help_cache = {}


def daemon_help(binary):
    if binary not in _help_cache:
        try:
            r = subprocess.run([binary, "--help"], capture_output=True,
                               text=True, timeout=10)
            _help_cache[binary] = r.stdout + r.stderr
        except (OSError, subprocess.TimeoutExpired):
            _help_cache[binary] = ""
    return _help_cache[binary]


class Aspfs(Target):
    name, label = "aspfs", "ASPFS"
    fuse = True

    def __init__(self, ctx, build):
        super().__init__(ctx)
        self.build = build
        self.daemon = AspfsDaemon(ctx, build, "aspfs")
        self.mounted = False

    def setup(self):
        self.root = os.path.join(self.ctx.work, "aspfs-mnt")
        os.makedirs(self.root, exist_ok=True)
        self.daemon.start()
        self.daemon.cli("volume", "create", "bench")
        self.daemon.cli("mount", "bench", self.root)
        self.mounted = True
        if not is_mounted(self.root):
            raise BenchError("`aspfs mount` returned but %s is not a mount "
                             "point" % self.root)

    def check(self):
        super().check()
        if not self.daemon.alive():
            self.dead = "aspfsd exited (see its log)"
        elif not is_mounted(self.root):
            self.dead = "the ASPFS mount is gone"
        if self.dead:
            raise BenchError(self.dead)

    def abort(self):
        abort_fuse(self.root)
        self.dead = "aborted after a timeout"

    def teardown(self):
        if self.mounted and self.daemon.alive() and not self.dead:
            try:
                info = json.loads(self.daemon.cli("volume", "info", "bench", "--json"))
                self.ctx.notes.append("ASPFS's mount was served through %s." % info.get(
                    "fuse_transport", "/dev/fuse (this aspfsd predates FUSE over io_uring)"))
            except (BenchError, ValueError) as e:
                self.ctx.error("aspfs", "volume info", "-", e, self.daemon.log)
            try:
                self.daemon.cli("umount", self.root, timeout=300)
            except BenchError as e:
                self.ctx.error("aspfs", "umount", "-", e, self.daemon.log)
        if self.root:
            force_unmount(self.root)
        self.daemon.stop()


def target_info(name, args, work, build):
    if name == "native":
        return {"what": "a directory of the disk's own file system (%s)"
                        % fs_type(work)}
    if name in PASSTHROUGH_TARGETS:
        opts = [o for o in (args.passthrough_opts,
                            "default_permissions" if name == "passthrough_perm" else "") if o]
        what = ("libfuse %s example passthrough_ll over a directory of the "
                "same disk" % pkg_version("fuse3"))
        if name == "passthrough_perm":
            what += (", with the kernel checking permissions as it does for "
                     "ASPFS (metadata only)")
        return {"what": what,
                "command": "passthrough_ll -f -o source=DIR%s MOUNTPOINT"
                           % "".join("," + o for o in opts)}
    return {"what": "one aspfsd (store on the same disk) serving a volume "
                    "mounted with `aspfs mount`",
            "binaries": build}


def fs_type(path):
    try:
        r = subprocess.run(["findmnt", "-no", "FSTYPE,SOURCE", "-T", path],
                           capture_output=True, text=True, timeout=10)
        return " ".join(r.stdout.split())
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def pkg_version(name):
    try:
        r = subprocess.run(["pkg-config", "--modversion", name],
                           capture_output=True, text=True, timeout=10)
        return r.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


# --------------------------------------------------------------- metrics

# id -> (section, label, unit, better)
METRICS = {}
ORDER = []


def metric(mid, section, label, unit, better="higher", short=None):
    METRICS[mid] = dict(id=mid, section=section, label=label, unit=unit,
                        better=better, short=short or label)
    ORDER.append(mid)


metric("seq_write", "data", "sequential write, 1 MiB blocks, end fsync",
       "MiB/s", short="seq write")
metric("seq_read", "data", "sequential read, 1 MiB blocks, cold", "MiB/s",
       short="seq read")
metric("rand_write", "data", "random write, 4 KiB, end fsync", "IOPS",
       short="rand write 4K")
metric("rand_read", "data", "random read, 4 KiB, cold", "IOPS",
       short="rand read 4K")
metric("fsync_rate", "data", "4 KiB write+fsync loop", "pairs/s",
       short="write+fsync")
metric("fsync_p50", "data", "4 KiB write+fsync: fsync latency p50", "µs",
       "lower", short="fsync p50")
metric("fsync_p99", "data", "4 KiB write+fsync: fsync latency p99", "µs",
       "lower", short="fsync p99")
metric("write_p99", "data", "4 KiB write+fsync: write latency p99", "µs",
       "lower", short="write p99")
for _t in (1, 2):
    for _op, _what in (("create", "create + write 1 KiB + close"),
                       ("stat", "stat"),
                       ("readdir", "readdir of the large directory"),
                       ("rename", "rename"), ("unlink", "unlink")):
        metric("md_%s_t%d" % (_op, _t), "meta",
               "%s, %d thread%s" % (_what, _t, "s" if _t > 1 else ""),
               "entries/s" if _op == "readdir" else "ops/s",
               short="%s %dT" % (_op, _t))
metric("tree_extract", "tree", "unpack the tar", "s", "lower", short="untar")
metric("tree_sync", "tree", "sync after unpacking", "s", "lower", short="sync")
metric("tree_du", "tree", "du -s (cold)", "s", "lower", short="du")
metric("tree_find", "tree", "find (cold)", "s", "lower", short="find")
metric("tree_rm", "tree", "rm -rf (cold)", "s", "lower", short="rm -rf")


def density_metrics(ns):
    for n in ns:
        metric("dens_mem_%d" % n, "density",
               "memory per idle mount, %d mounts" % n, "KiB", "lower",
               short="%d mounts" % n)
    for n in ns:
        metric("dens_mount_%d" % n, "density", "time to mount %d volumes" % n,
               "s", "lower", short="mount %d" % n)


class Results:
    def __init__(self):
        self.values = {}   # metric id -> target -> [values per run]
        self.extra = {}    # free-form facts per target

    def add(self, mid, target, value):
        self.values.setdefault(mid, {}).setdefault(target, []).append(value)


# --------------------------------------------------------------- benches


def fio(ctx, target, directory, name, args, timeout):
    cmd = ["fio", "--output-format=json", "--name=" + name,
           "--ioengine=psync", "--fallocate=none", "--numjobs=1",
           "--directory=" + directory] + args
    rc, out, err = ctx.run(cmd, timeout=timeout, check=False)
    start = out.find("{")
    try:
        doc = json.loads(out[start:]) if start >= 0 else None
    except ValueError:
        doc = None
    if rc != 0 or not doc:
        msg = (err.strip() or out.strip()).splitlines()
        raise BenchError("fio %s exited %d: %s" % (name, rc, " | ".join(msg[-5:])))
    job = doc["jobs"][0]
    if job.get("error"):
        raise BenchError("fio %s: error %s" % (name, job["error"]))
    return job


def pct(lat, p):
    percentiles = (lat or {}).get("percentile") or {}
    for k, v in percentiles.items():
        if abs(float(k) - p) < 1e-6:
            return v / 1000.0  # ns -> µs
    return None


def bench_data(ctx, res, target, run, cfg):
    d = target.fresh_dir("data")
    seq, rnd, cap = cfg["seq_size"], cfg["rand_size"], cfg["fio_cap"]
    timeout = cap + 1800   # the fsync after a capped write may still be long
    sizes = {}

    def step(label, fn):
        ctx.progress.show("run %d · %s · data · %s" % (run, target.label, label))
        try:
            target.check()
            fn()
        except BenchError as e:
            ctx.error(target.name, "data: " + label, run, e, getattr(target, "log", None))

    def capped(job, direction, planned, what):
        done = job[direction]["io_bytes"]
        if done < planned:
            ctx.capped("fio jobs (%d s)" % cap, "%s run %d %s: %d of %d MiB"
                       % (target.label, run, what, done // MiB, planned // MiB))

    def file_size(name):
        try:
            return os.path.getsize(os.path.join(d, name)) // (1 << 12) << 12
        except OSError:
            raise BenchError("no %s from the write step" % name)

    def seq_write():
        job = fio(ctx, target, d, "seqwrite",
                  ["--rw=write", "--bs=1M", "--size=%d" % seq, "--end_fsync=1",
                   "--runtime=%d" % cap, "--filename=seq.dat"], timeout)
        capped(job, "write", seq, "sequential write")
        res.add("seq_write", target.name, job["write"]["bw_bytes"] / MiB)

    def seq_read():
        size = file_size("seq.dat")
        ctx.drop_caches()
        job = fio(ctx, target, d, "seqread",
                  ["--rw=read", "--bs=1M", "--size=%d" % size,
                   "--runtime=%d" % cap, "--filename=seq.dat"], timeout)
        capped(job, "read", size, "sequential read")
        res.add("seq_read", target.name, job["read"]["bw_bytes"] / MiB)

    def rand_write():
        unlink_if(os.path.join(d, "seq.dat"))
        # lay the file out first (not measured)
        job = fio(ctx, target, d, "layout",
                  ["--rw=write", "--bs=1M", "--size=%d" % rnd, "--end_fsync=1",
                   "--runtime=%d" % cap, "--filename=rand.dat"], timeout)
        capped(job, "write", rnd, "layout of the random-I/O file")
        size = sizes["rand"] = file_size("rand.dat")
        if size < 4 * MiB:
            raise BenchError("the random-I/O file is only %d bytes" % size)
        ctx.drop_caches()
        io = min(cfg["randwrite_io"], size)
        job = fio(ctx, target, d, "randwrite",
                  ["--rw=randwrite", "--bs=4k", "--size=%d" % size,
                   "--io_size=%d" % io, "--end_fsync=1", "--runtime=%d" % cap,
                   "--randrepeat=1", "--filename=rand.dat"], timeout)
        capped(job, "write", io, "random write")
        res.add("rand_write", target.name, job["write"]["iops"])

    def rand_read():
        size = sizes.get("rand") or file_size("rand.dat")
        ctx.drop_caches()
        job = fio(ctx, target, d, "randread",
                  ["--rw=randread", "--bs=4k", "--size=%d" % size,
                   "--time_based", "--runtime=%d" % cfg["randread_s"],
                   "--randrepeat=1", "--filename=rand.dat"],
                  cfg["randread_s"] + 600)
        res.add("rand_read", target.name, job["read"]["iops"])

    def fsync_loop():
        unlink_if(os.path.join(d, "rand.dat"))
        job = fio(ctx, target, d, "fsyncloop",
                  ["--rw=write", "--bs=4k", "--size=16M", "--fsync=1",
                   "--time_based", "--runtime=%d" % cfg["fsync_s"],
                   "--filename=fsync.dat"], cfg["fsync_s"] + 600)
        res.add("fsync_rate", target.name, job["write"]["iops"])
        res.add("fsync_p50", target.name, pct(job.get("sync", {}).get("lat_ns"), 50))
        res.add("fsync_p99", target.name, pct(job.get("sync", {}).get("lat_ns"), 99))
        res.add("write_p99", target.name, pct(job["write"].get("clat_ns"), 99))

    step("sequential write", seq_write)
    step("sequential read", seq_read)
    step("random write", rand_write)
    step("random read", rand_read)
    step("write+fsync loop", fsync_loop)
    target.remove(d)


def bench_meta(ctx, res, target, run, cfg, mdtest):
    for threads in (1, 2):
        ctx.progress.show("run %d · %s · metadata · %d thread(s), %d files each"
                          % (run, target.label, threads, cfg["md_files"]))
        try:
            target.check()
            d = target.fresh_dir("meta")
            ctx.drop_caches()
            out = ctx.run([mdtest, "-d", d, "-t", str(threads),
                           "-n", str(cfg["md_files"]), "-s", str(cfg["md_size"]),
                           "-p", str(cfg["md_passes"]),
                           "-T", str(cfg["md_create_cap"]),
                           "-S", str(cfg["md_scan_cap"])], timeout=3600)[1]
            doc = json.loads(out)
            if doc.get("capped"):
                ctx.capped("metadata (create %g s, stat/readdir %g s)"
                           % (cfg["md_create_cap"], cfg["md_scan_cap"]),
                           "%s run %d %dT: %d files/thread"
                           % (target.label, run, threads,
                              doc["create"]["ops"] // threads))
            for op in ("create", "stat", "readdir", "rename", "unlink"):
                res.add("md_%s_t%d" % (op, threads), target.name,
                        doc[op]["ops_per_s"])
            target.remove(d)
        except (BenchError, ValueError, KeyError) as e:
            ctx.error(target.name, "metadata, %d thread(s)" % threads, run, e,
                      getattr(target, "log", None))


def make_tree_tar(ctx, entries):
    tarball = os.path.join(ctx.work, "tree.tar")
    listing = os.path.join(ctx.work, "tree.list")
    names, used = [], []
    for root in TREE_ROOTS:
        if len(names) >= entries:
            break
        if not os.path.isdir("/" + root):
            continue
        out = ctx.run(["find", root, "-xdev", "(", "-type", "f", "-o", "-type",
                       "d", "-o", "-type", "l", ")"], cwd="/", timeout=600)[1]
        found = sorted(out.splitlines())
        names.extend(found[:entries - len(names)])
        used.append(root)
    with open(listing, "w") as f:
        f.write("\n".join(names) + "\n")
    ctx.run(["tar", "-cf", tarball, "--no-recursion", "-C", "/", "-T", listing],
            timeout=3600)
    size = os.path.getsize(tarball)
    files = sum(1 for _ in names)
    return tarball, {"entries": files, "bytes": size, "roots": used}


def bench_tree(ctx, res, target, run, tarball, expect):
    def show(label):
        ctx.progress.show("run %d · %s · real work · %s" % (run, target.label, label))

    try:
        target.check()
        d = target.fresh_dir("tree")
        ctx.drop_caches()
        ctx.run(["cat", tarball], stdout=subprocess.DEVNULL, timeout=600)
        show("unpack")
        t0 = now()
        ctx.run(["tar", "-xf", tarball, "-C", d], timeout=7200)
        res.add("tree_extract", target.name, now() - t0)
        show("sync")
        t0 = now()
        ctx.run(["sync"], timeout=3600)
        res.add("tree_sync", target.name, now() - t0)
        ctx.drop_caches()
        show("du")
        t0 = now()
        ctx.run(["du", "-s", d], timeout=3600)
        res.add("tree_du", target.name, now() - t0)
        ctx.drop_caches()
        show("find")
        t0 = now()
        out = ctx.run(["find", d], timeout=3600)[1]
        res.add("tree_find", target.name, now() - t0)
        count = out.count("\n")
        if expect.get("count") is None:
            expect["count"] = count
            expect["by"] = target.label
        elif count != expect["count"]:
            ctx.error(target.name, "real work: find", run,
                      "find saw %d entries, %s saw %d"
                      % (count, expect["by"], expect["count"]))
        ctx.drop_caches()
        show("rm -rf")
        t0 = now()
        ctx.run(["rm", "-rf", d], timeout=7200)
        res.add("tree_rm", target.name, now() - t0)
    except BenchError as e:
        ctx.error(target.name, "real work", run, e, getattr(target, "log", None))


def density_aspfs(ctx, res, build, ns, run, idle_s):
    daemon = AspfsDaemon(ctx, build, "density%d" % run)
    base = os.path.join(ctx.work, "density-mnt")
    mounted = []
    try:
        ctx.progress.show("run %d · ASPFS · density · starting aspfsd" % run)
        daemon.start()
        top = max(ns)
        t0 = now()
        for i in range(top):
            if i % 10 == 0:
                ctx.progress.show("run %d · ASPFS · density · volume create %d/%d"
                                  % (run, i, top))
            daemon.cli("volume", "create", "dens%03d" % i)
        res.extra.setdefault("aspfs", {})["volume_create_%d_s" % top] = now() - t0
        time.sleep(idle_s)
        rss0 = vm_rss_kib(daemon.proc.pid)
        res.extra["aspfs"]["rss_before_mounts_kib"] = rss0
        elapsed = 0.0
        for n in sorted(ns):
            ctx.progress.show("run %d · ASPFS · density · mounting %d volumes"
                              % (run, n))
            t0 = now()
            for i in range(len(mounted), n):
                d = os.path.join(base, "m%03d" % i)
                os.makedirs(d, exist_ok=True)
                daemon.cli("mount", "dens%03d" % i, d)
                mounted.append(d)
            elapsed += now() - t0
            points = mount_points()
            missing = [d for d in mounted if d not in points]
            if missing:
                raise BenchError("%d of %d mounts are not mount points after "
                                 "`aspfs mount`" % (len(missing), n))
            res.add("dens_mount_%d" % n, "aspfs", elapsed)
            ctx.progress.show("run %d · ASPFS · density · %d mounts idle %ds"
                              % (run, n, idle_s))
            time.sleep(idle_s)
            rss = vm_rss_kib(daemon.proc.pid)
            res.add("dens_mem_%d" % n, "aspfs", (rss - rss0) / n)
            res.extra["aspfs"]["rss_with_%d_mounts_kib" % n] = rss
        # every mount answers
        bad = check_mounts_answer(mounted)
        if bad:
            ctx.error("aspfs", "density", run, "%d of %d mounts did not answer "
                      "a stat of their root: %s" % (len(bad), len(mounted), bad[:3]))
    except BenchError as e:
        ctx.error("aspfs", "density", run, e, daemon.log)
    finally:
        ctx.progress.show("run %d · ASPFS · density · unmounting" % run)
        for d in reversed(mounted):
            if daemon.alive():
                try:
                    daemon.cli("umount", d, timeout=60)
                except BenchError as e:
                    ctx.error("aspfs", "density: umount", run, e)
                    break
        for d in mounts_under(base):
            force_unmount(d)
        daemon.stop()


def check_mounts_answer(dirs, timeout=20):
    bad = []

    def probe(d):
        try:
            os.stat(d)
            os.listdir(d)
        except OSError as e:
            bad.append("%s: %s" % (d, e))

    threads = [threading.Thread(target=probe, args=(d,), daemon=True) for d in dirs]
    for t in threads:
        t.start()
    deadline = now() + timeout
    for t, d in zip(threads, dirs):
        t.join(max(0.0, deadline - now()))
        if t.is_alive():
            bad.append("%s: no answer in %ds" % (d, timeout))
    return bad


def density_passthrough(ctx, res, binary, opts, ns, run, idle_s):
    base = os.path.join(ctx.work, "density-pt")
    procs, mounted = [], []
    try:
        elapsed = 0.0
        for n in sorted(ns):
            ctx.progress.show("run %d · passthrough_ll · density · mounting %d"
                              % (run, n))
            t0 = now()
            for i in range(len(mounted), n):
                src = os.path.join(base, "s%03d" % i)
                mnt = os.path.join(base, "m%03d" % i)
                os.makedirs(src, exist_ok=True)
                os.makedirs(mnt, exist_ok=True)
                procs.append(start_passthrough(ctx, binary, src, mnt, opts,
                                               os.path.join(ctx.logs, "density-pt.log")))
                mounted.append(mnt)
            elapsed += now() - t0
            res.add("dens_mount_%d" % n, "passthrough", elapsed)
            ctx.progress.show("run %d · passthrough_ll · density · %d mounts "
                              "idle %ds" % (run, n, idle_s))
            time.sleep(idle_s)
            res.add("dens_mem_%d" % n, "passthrough",
                    sum(pss_kib(p.pid) for p in procs) / n)
            res.extra.setdefault("passthrough", {})["rss_sum_%d_mounts_kib" % n] = \
                sum(vm_rss_kib(p.pid) for p in procs)
    except BenchError as e:
        ctx.error("passthrough", "density", run, e)
    finally:
        ctx.progress.show("run %d · passthrough_ll · density · unmounting" % run)
        for m in reversed(mounted):
            force_unmount(m)
        for p in procs:
            ctx.stop(p, timeout=10)


# --------------------------------------------------------------- building


def build_tools(ctx, want_pt):
    bdir = os.path.join(ctx.work, "build")
    os.makedirs(bdir, exist_ok=True)
    mdtest = os.path.join(bdir, "aspfs-mdtest")
    ctx.run(["cc", "-O2", "-Wall", "-pthread", "-o", mdtest,
             os.path.join(BENCH_DIR, "mdtest.c")], timeout=300)
    pt = None
    if want_pt:
        src = os.path.join(bdir, "pt-src")
        os.makedirs(src, exist_ok=True)
        for f in glob.glob(os.path.join(PT_EXAMPLES, "*")):
            base = os.path.basename(f)
            if base.endswith(".gz"):
                with gzip.open(f, "rb") as i, open(os.path.join(src, base[:-3]), "wb") as o:
                    shutil.copyfileobj(i, o)
            elif os.path.isfile(f):
                shutil.copy(f, src)
        c = os.path.join(src, "passthrough_ll.c")
        if not os.path.exists(c):
            raise BenchError("%s/passthrough_ll.c not found: install "
                             "libfuse3-dev" % PT_EXAMPLES)
        flags = ctx.run(["pkg-config", "--cflags", "--libs", "fuse3"])[1].split()
        pt = os.path.join(bdir, "passthrough_ll")
        ctx.run(["cc", "-O2", "-Wall", "-o", pt, c] + flags, timeout=300)
    return mdtest, pt


def ensure_aspfs(ctx, build, rebuild):
    have = all(is_program(os.path.join(build, b)) for b in ("aspfsd", "aspfs"))
    if have and not rebuild:
        return
    ctx.progress.show("building ASPFS in %s (cmake)" % build)
    log = os.path.join(ctx.logs, "build.log")
    with open(log, "wb") as f:
        for cmd in (["cmake", "-S", REPO, "-B", build],
                    ["cmake", "--build", build, "-j", str(os.cpu_count() or 2)]):
            r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
            if r.returncode != 0:
                raise BenchError("`%s` failed:\n%s" % (" ".join(cmd), tail(log, 25)))
    for b in ("aspfsd", "aspfs"):
        if not is_program(os.path.join(build, b)):
            raise BenchError("the build did not produce %s/%s" % (build, b))


def is_program(path):
    return os.path.isfile(path) and os.access(path, os.X_OK)


def git_describe():
    try:
        rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
        return (rev or "no commit") + (" (modified)" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def host_info(work):
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    fio_v = subprocess.run(["fio", "--version"], capture_output=True,
                           text=True).stdout.strip()
    return {"hostname": platform.node(), "cpu": cpu, "cores": os.cpu_count(),
            "memory_bytes": mem, "kernel": platform.release(),
            "disk": fs_type(work), "fio": fio_v, "libfuse": pkg_version("fuse3")}


# --------------------------------------------------------------- main


def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="small sizes, one run: a routine check in < 3 minutes")
    p.add_argument("--runs", type=int, help="runs per figure (median) of "
                   "every section; default 3, --quick 1 (metadata: 3)")
    p.add_argument("--fuse-io-uring", choices=("auto", "off"), default="auto",
                   help="aspfsd's --fuse-io-uring: auto serves through FUSE over "
                        "io_uring where the kernel offers it (bench/run turns the "
                        "fuse module's enable_uring on for the run); off, through "
                        "/dev/fuse")
    p.add_argument("--targets", default="native,passthrough,passthrough_perm,aspfs",
                   help="comma list of native, passthrough, passthrough_perm "
                   "(passthrough_ll -o default_permissions, metadata only), aspfs")
    p.add_argument("--sections", default="data,meta,tree,density",
                   help="comma list of data, meta, tree, density")
    p.add_argument("--build-dir", default=os.path.join(REPO, "build"),
                   help="where aspfsd and aspfs are (built there if missing); "
                   "default ./build of the repository")
    p.add_argument("--rebuild", action="store_true",
                   help="run cmake --build even if the binaries exist")
    p.add_argument("--out", default=os.path.join(BENCH_DIR, "results"),
                   help="report directory (default bench/results)")
    p.add_argument("--work-dir", required=True, help=argparse.SUPPRESS)
    p.add_argument("--seq-size", help="file size of the sequential test "
                   "(default 4G, --quick 1G); make it larger than the daemon's caches")
    p.add_argument("--rand-size", help="file size of the random tests "
                   "(default 1G, --quick 256M)")
    p.add_argument("--md-files", type=int, help="files per thread in the "
                   "metadata test (default 20000, --quick 3000)")
    p.add_argument("--tree-entries", type=int, help="entries of the OS tree "
                   "tar (default 100000, --quick 5000)")
    p.add_argument("--density", help="comma list of mount counts "
                   "(default 10,100,200)")
    p.add_argument("--passthrough-opts", default="",
                   help="extra -o options of passthrough_ll (default: none, "
                   "i.e. the example's defaults)")
    args = p.parse_args(argv)
    for t in args.targets.split(","):
        if t not in KNOWN_TARGETS:
            p.error("unknown target %r" % t)
    for s in args.sections.split(","):
        if s not in KNOWN_SECTIONS:
            p.error("unknown section %r" % s)
    return args


def main(argv):
    args = parse_args(argv)
    mode = "quick" if args.quick else "full"
    cfg = dict(MODES[mode])
    if args.runs:
        cfg["runs"] = cfg["meta_runs"] = cfg["density_runs"] = args.runs
    if args.seq_size:
        cfg["seq_size"] = parse_size(args.seq_size)
    if args.rand_size:
        cfg["rand_size"] = parse_size(args.rand_size)
        cfg["randwrite_io"] = min(cfg["randwrite_io"], cfg["rand_size"])
    if args.md_files:
        cfg["md_files"] = args.md_files
    if args.tree_entries:
        cfg["tree_entries"] = args.tree_entries
    if args.density:
        cfg["density"] = sorted({int(x) for x in args.density.split(",")})
    density_metrics(cfg["density"])
    build = os.path.abspath(args.build_dir)
    want = [t for t in KNOWN_TARGETS if t in args.targets.split(",")]
    sections = [s for s in KNOWN_SECTIONS if s in args.sections.split(",")]
    work = os.path.abspath(args.work_dir)

    ctx = Ctx(args, work)
    res = Results()
    targets = []
    started = datetime.datetime.now(datetime.timezone.utc)
    t_start = now()

    def on_signal(signum, frame):
        raise Interrupted("signal %d" % signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    nofile = raise_nofile()
    if any(t in want for t in PASSTHROUGH_TARGETS):
        budget = nofile - 1000
        if cfg["md_files"] * 2 > budget:
            ctx.notes.append(
                "Metadata test: %d files per thread instead of %d: passthrough_ll "
                "keeps one fd per known inode and RLIMIT_NOFILE is %d here."
                % (budget // 2, cfg["md_files"], nofile))
            cfg["md_files"] = budget // 2
        if cfg["tree_entries"] > budget:
            ctx.notes.append(
                "Real work: tree of %d entries instead of %d: passthrough_ll keeps "
                "one fd per known inode and RLIMIT_NOFILE is %d here."
                % (budget, cfg["tree_entries"], nofile))
            cfg["tree_entries"] = budget

    tree_info = None
    interrupted = None
    try:
        ctx.progress.show("building helpers")
        mdtest, pt_bin = build_tools(ctx, any(t in want for t in PASSTHROUGH_TARGETS))
        if "aspfs" in want:
            ensure_aspfs(ctx, build, args.rebuild)
        tarball = None
        if "tree" in sections:
            ctx.progress.show("making the OS tree tar (%d entries)" % cfg["tree_entries"])
            tarball, tree_info = make_tree_tar(ctx, cfg["tree_entries"])

        main_sections = [s for s in sections if s != "density"]
        dens_targets = [t for t in ("aspfs", "passthrough") if t in want]
        runs_of = {s: cfg["meta_runs"] if s == "meta" else cfg["runs"]
                   for s in main_sections}
        ctx.progress.total = (sum(runs_of.values()) * len(want) -
                              sum(n for s, n in runs_of.items() if s != "meta") *
                              len([t for t in want if t in META_ONLY_TARGETS]) +
                              ("density" in sections) * cfg["density_runs"] *
                              len(dens_targets))

        if main_sections:
            for name in want:
                t = {"native": lambda: Native(ctx),
                     "passthrough": lambda: Passthrough(ctx, pt_bin, args.passthrough_opts),
                     "passthrough_perm": lambda: PassthroughPerm(ctx, pt_bin, args.passthrough_opts),
                     "aspfs": lambda: Aspfs(ctx, build)}[name]()
                t.log = getattr(t, "log", None) or \
                    getattr(getattr(t, "daemon", None), "log", None)
                ctx.progress.show("setting up %s" % t.label)
                targets.append(t)
                try:
                    t.setup()
                except BenchError as e:
                    t.dead = "setup failed: %s" % e
                    ctx.error(t.name, "setup", "-", e, t.log)

            expect = {}
            for run in range(1, max(runs_of.values()) + 1):
                for section in main_sections:
                    if run > runs_of[section]:
                        continue
                    k = (run - 1) % len(targets)
                    for t in targets[k:] + targets[:k]:   # rotate the order
                        if section != "meta" and t.name in META_ONLY_TARGETS:
                            continue
                        ctx.progress.step("run %d · %s · %s" % (run, t.label, section))
                        if t.dead:
                            continue
                        ctx.current_target = t
                        try:
                            if section == "data":
                                bench_data(ctx, res, t, run, cfg)
                            elif section == "meta":
                                bench_meta(ctx, res, t, run, cfg, mdtest)
                            elif section == "tree":
                                bench_tree(ctx, res, t, run, tarball, expect)
                        except BenchError as e:
                            ctx.error(t.name, section, run, e, t.log)
                        ctx.current_target = None
            for t in targets:
                ctx.progress.show("tearing down %s" % t.label)
                t.teardown()
            targets = []

        if "density" in sections:
            for run in range(1, cfg["density_runs"] + 1):
                for name in dens_targets:
                    ctx.progress.step("run %d · density · %s" % (run, name))
                    if name == "aspfs":
                        density_aspfs(ctx, res, build, cfg["density"], run, cfg["idle_s"])
                    else:
                        density_passthrough(ctx, res, pt_bin, args.passthrough_opts,
                                            cfg["density"], run, cfg["idle_s"])
    except Interrupted as e:
        interrupted = str(e)
        ctx.progress.log("interrupted (%s): cleaning up, writing a partial report" % e)
    except BenchError as e:
        ctx.error("-", "setup", "-", e)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for t in targets:
            try:
                t.teardown()
            except Exception as e:  # keep cleaning
                ctx.progress.log("teardown of %s: %s" % (t.label, e))
        for m in mounts_under(work):
            force_unmount(m)
        for p in list(ctx.procs):
            ctx.stop(p, timeout=20)
        ctx.progress.finish()

    # ------------------------------------------------------- the report
    if interrupted:
        ctx.notes.append("The run was interrupted (%s): figures are partial." % interrupted)
    doc = {
        "schema": 1,
        "generated": started.strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round(now() - t_start, 1),
        "mode": mode,
        "runs": {"data": cfg["runs"], "meta": cfg["meta_runs"],
                 "tree": cfg["runs"], "density": cfg["density_runs"]},
        "commit": git_describe(),
        "host": host_info(work),
        "config": {
            "seq_size": human_bytes(cfg["seq_size"]),
            "rand_size": human_bytes(cfg["rand_size"]),
            "randwrite_io": human_bytes(cfg["randwrite_io"]),
            "randread_s": cfg["randread_s"], "fsync_s": cfg["fsync_s"],
            "fio_cap_s": cfg["fio_cap"], "md_create_cap_s": cfg["md_create_cap"],
            "md_scan_cap_s": cfg["md_scan_cap"],
            "md_files_per_thread": cfg["md_files"], "md_file_size": cfg["md_size"],
            "md_passes": cfg["md_passes"],
            "tree": tree_info, "density": cfg["density"], "idle_s": cfg["idle_s"],
            "sections": sections,
        },
        "targets": want,
        "labels": {"native": "native", "passthrough": "passthrough_ll",
                   "passthrough_perm": PassthroughPerm.label, "aspfs": "ASPFS"},
        "target_info": {},
        "metrics": [],
        "extra": res.extra,
        "notes": ctx.notes + ctx.cap_notes(),
        "errors": ctx.errors,
    }
    for name in want:
        doc["target_info"][name] = target_info(name, args, work, build)
    for mid in ORDER:
        m = dict(METRICS[mid])
        if m["section"] not in sections:
            continue
        if m["section"] == "density" and not any(
                mid == "dens_%s_%d" % (k, n) for k in ("mem", "mount") for n in cfg["density"]):
            continue
        vals = res.values.get(mid, {})
        m["values"] = {t: {"median": median(vals.get(t, [])),
                           "runs": vals.get(t, [])} for t in want
                       if not (m["section"] == "density" and t == "native")}
        doc["metrics"].append(m)
    report.complete(doc)

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "latest.json"), "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    md = report.markdown(doc)
    with open(os.path.join(args.out, "latest.md"), "w") as f:
        f.write(md)
    try:
        pngs = report.plots(doc, args.out)
    except Exception as e:  # a missing plot must not lose the tables
        pngs = []
        sys.stderr.write("bench: plots failed: %s\n" % e)
    sys.stdout.write(md)
    sys.stdout.flush()
    sys.stderr.write("bench: wrote %s/latest.md, latest.json%s (%.0f s)\n" % (
        os.path.relpath(args.out), "".join(", " + os.path.basename(p) for p in pngs),
        now() - t_start))
    if interrupted:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
