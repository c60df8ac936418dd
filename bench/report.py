#!/usr/bin/env python3
"""Turn the bench's JSON into the Markdown report and the PNG plots.

bench.py calls complete(), markdown() and plots().  Run alone, it redraws a
report from a JSON file:

    python3 bench/report.py [bench/results/latest.json] [--out DIR]
"""

import json
import os
import subprocess
import sys
import tempfile

BASELINES = ("native", "passthrough", "passthrough_perm")
SUBJECT = "aspfs"

# The core issue's targets: (metric, baseline, minimal ratio) or an absolute
# ceiling on a figure of ASPFS.
GOALS = (
    [dict(metric="md_%s_t%d" % (op, t), baseline="passthrough", min_ratio=1.0,
          label="metadata %s, %d thread%s >= 1.0x passthrough_ll"
                % (op, t, "s" if t > 1 else ""))
     for op in ("create", "stat", "unlink", "rename") for t in (1, 2)] +
    [dict(metric="seq_write", baseline="passthrough", min_ratio=0.8,
          label="sequential 1 MiB writes >= 0.8x passthrough_ll"),
     dict(metric="seq_read", baseline="passthrough", min_ratio=0.8,
          label="sequential 1 MiB reads >= 0.8x passthrough_ll"),
     dict(metric="rand_write", baseline="passthrough", min_ratio=0.5,
          label="random 4 KiB writes >= 0.5x passthrough_ll"),
     dict(metric="dens_mem_200", max_value=1024.0,
          label="200 mounted volumes, idle RSS < 1 MiB per mount")]
)

COLORS = {"native": "#4c72b0", "passthrough_ll": "#dd8452", "ASPFS": "#55a868",
          "passthrough_ll + default_permissions": "#c44e52",
          "vs native": "#4c72b0", "vs passthrough_ll": "#dd8452",
          "vs passthrough_ll + default_permissions": "#c44e52"}

SECTIONS = [
    ("data", "Data"),
    ("meta", "Metadata"),
    ("tree", "Real work"),
    ("density", "Density"),
]


# --------------------------------------------------------------- numbers


def ratio(metric, base):
    """ASPFS relative to a baseline, > 1 = ASPFS better."""
    vals = metric.get("values", {})
    a = (vals.get(SUBJECT) or {}).get("median")
    b = (vals.get(base) or {}).get("median")
    if a is None or b is None or a <= 0 or b <= 0:
        return None
    return a / b if metric["better"] == "higher" else b / a


def complete(doc):
    """Add the ratios and the goals to a document made by bench.py."""
    by_id = {m["id"]: m for m in doc["metrics"]}
    for m in doc["metrics"]:
        m["ratios"] = {b: ratio(m, b) for b in BASELINES
                       if b in m.get("values", {}) and SUBJECT in m.get("values", {})}
    goals = []
    for g in GOALS:
        m = by_id.get(g["metric"])
        entry = dict(g, value=None, baseline_value=None, ratio=None, met=None)
        if m is not None:
            vals = m.get("values", {})
            entry["value"] = (vals.get(SUBJECT) or {}).get("median")
            entry["unit"] = m["unit"]
            if "baseline" in g:
                entry["baseline_value"] = (vals.get(g["baseline"]) or {}).get("median")
                entry["ratio"] = m.get("ratios", {}).get(g["baseline"])
                if entry["ratio"] is not None:
                    entry["met"] = entry["ratio"] >= g["min_ratio"]
            elif entry["value"] is not None:
                entry["met"] = entry["value"] < g["max_value"]
                pt = (vals.get("passthrough") or {}).get("median")
                entry["baseline_value"] = pt
        goals.append(entry)
    doc["goals"] = goals
    return doc


def fmt(v):
    if v is None:
        return "—"
    a = abs(v)
    if a >= 1000:
        return "{:,.0f}".format(v)
    if a >= 100:
        return "%.0f" % v
    if a >= 10:
        return "%.1f" % v
    if a >= 1:
        return "%.2f" % v
    return "%.3f" % v


def fmt_ratio(r):
    return "—" if r is None else "%.2f×" % r


def human(n):
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return "%.1f %s" % (n / size, unit)
    return "%d B" % n


# --------------------------------------------------------------- Markdown


def markdown(doc):
    labels = doc["labels"]
    targets = doc["targets"]
    bases = [b for b in BASELINES if b in targets]
    has_subject = SUBJECT in targets
    cfg = doc["config"]
    host = doc["host"]
    out = []
    w = out.append

    mins, secs = divmod(int(doc.get("duration_s", 0)), 60)
    w("# ASPFS benchmarks\n")
    runs = doc["runs"]
    w("%s run of %s, commit %s, in %d min %02d s. Each figure is the median "
      "of its runs: %s.\n" % (
          doc["mode"].capitalize(), doc["generated"], doc["commit"], mins, secs,
          ", ".join("%s %d" % (title.lower(), runs[sec])
                    for sec, title in SECTIONS if sec in runs
                    and sec in cfg.get("sections", runs))))
    w("Host: %s, %s cores, %s RAM, Linux %s; disk: %s; %s; libfuse %s.\n" % (
        host.get("cpu"), host.get("cores"), human(host.get("memory_bytes", 0)),
        host.get("kernel"), host.get("disk"), host.get("fio"), host.get("libfuse")))
    w("Compared:\n")
    for t in targets:
        info = doc.get("target_info", {}).get(t, {})
        extra = info.get("command")
        w("- **%s**: %s%s" % (labels[t], info.get("what", ""),
                              " (`%s`)" % extra if extra else ""))
    w("")
    if has_subject:
        w("Ratio columns give ASPFS relative to a baseline so that **> 1× means "
          "ASPFS is better**: throughput ÷ throughput, or the baseline's "
          "time (latency, memory) ÷ ASPFS's.\n")

    # goals
    if has_subject or doc.get("goals"):
        w("## Targets of the core issue\n")
        w("| target | ASPFS | baseline | ratio | status |")
        w("|---|---:|---:|---:|---|")
        for g in doc.get("goals", []):
            unit = g.get("unit", "")
            status = ("**met**" if g["met"] else "**NOT met**") \
                if g["met"] is not None else "not measured"
            if "max_value" in g:
                rtxt = "limit %s KiB" % fmt(g["max_value"])
                base = ("passthrough_ll %s KiB" % fmt(g["baseline_value"])
                        if g.get("baseline_value") is not None else "—")
            else:
                rtxt = fmt_ratio(g["ratio"])
                base = fmt(g["baseline_value"]) + (" " + unit if g["baseline_value"] is not None else "")
            val = fmt(g["value"]) + (" " + unit if g["value"] is not None else "")
            w("| %s | %s | %s | %s | %s |" % (g["label"], val, base, rtxt, status))
        w("")

    # tables
    intro = {
        "data": "%s, one job, psync, buffered I/O, `--fallocate=none`. "
                "Sequential: a %s file written with 1 MiB blocks and an fsync "
                "at the end, then read back after dropping the kernel caches. "
                "Random: %s of 4 KiB writes (fsync at the end) into a %s file, "
                "then %d s of 4 KiB reads after dropping the caches. "
                "Write+fsync: %d s of 4 KiB appends, each followed by fsync; "
                "pairs/s and fio's latency percentiles of the fsync and the "
                "write. Size-based jobs stop after %s s (fio `--runtime`); "
                "the notes list any that did." % (
                    host.get("fio", ""), cfg.get("seq_size"),
                    cfg.get("randwrite_io"), cfg.get("rand_size"),
                    cfg.get("randread_s", 0), cfg.get("fsync_s", 0),
                    cfg.get("fio_cap_s", "?")),
        "meta": "aspfs-mdtest (bench/mdtest.c): each thread in its own "
                "directory with %s files of %d B; phases in order create "
                "(open O_CREAT|O_EXCL, write, close), stat (%d passes), readdir "
                "(as many passes over the directory, entries/s), rename in "
                "place, unlink; "
                "the kernel caches are dropped before each thread count. "
                "Time caps: create %s s, stat and readdir %s s each (the "
                "notes list any that hit)."
                % ("{:,}".format(cfg.get("md_files_per_thread", 0)),
                   cfg.get("md_file_size", 0), cfg.get("md_passes", 0),
                   cfg.get("md_create_cap_s", "?"), cfg.get("md_scan_cap_s", "?")),
        "tree": None,
        "density": "N volumes mounted in one daemon, idle for %s s before "
                   "measuring. ASPFS: (VmRSS of aspfsd with N mounts − VmRSS "
                   "before mounting) / N. passthrough_ll has one process per "
                   "mount: Σ Pss of the N processes / N (Pss shares the "
                   "libraries' pages fairly; their Σ VmRSS is in the JSON). "
                   "Mount time: N sequential `aspfs mount` calls, or N "
                   "passthrough_ll starts, each until its mount is live."
                   % cfg.get("idle_s"),
    }
    tree = cfg.get("tree")
    if tree:
        intro["tree"] = ("A tar of %s entries (%s) from %s of this host, "
                         "unpacked by GNU tar as root; `sync` after it; then "
                         "`du -s`, `find` and `rm -rf` of the tree, each with "
                         "cold kernel caches. Seconds, lower is better."
                         % ("{:,}".format(tree["entries"]), human(tree["bytes"]),
                            ", ".join("/" + r for r in tree["roots"])))
    for sec, title in SECTIONS:
        rows = [m for m in doc["metrics"] if m["section"] == sec]
        if not rows:
            continue
        w("## %s\n" % title)
        if intro.get(sec):
            w(intro[sec] + "\n")
        cols = [t for t in targets if any(t in m["values"] for m in rows)]
        head = ["benchmark", "unit"] + [labels[t] for t in cols]
        if has_subject:
            head += ["ASPFS vs %s" % labels[b] for b in bases if b in cols]
        w("| " + " | ".join(head) + " |")
        w("|---|---|" + "---:|" * (len(head) - 2))
        for m in rows:
            cells = [m["label"], m["unit"]]
            for t in cols:
                cells.append(fmt((m["values"].get(t) or {}).get("median")))
            if has_subject:
                for b in bases:
                    if b in cols:
                        cells.append(fmt_ratio(m.get("ratios", {}).get(b)))
            w("| " + " | ".join(cells) + " |")
        w("")

    if doc.get("notes"):
        w("## Notes\n")
        for n in doc["notes"]:
            w("- " + n)
        w("")
    errors = doc.get("errors") or []
    w("## Errors\n")
    if not errors:
        w("None.\n")
    else:
        for e in errors:
            w("- **%s**, %s, run %s: %s" % (labels.get(e["target"], e["target"]),
                                            e["bench"], e["run"],
                                            e["message"].replace("\n", " ")))
            if e.get("log_tail"):
                w("\n  ```\n" + "\n".join("  " + l for l in e["log_tail"].splitlines())
                  + "\n  ```")
        w("")
    w("Every run's figures are in `latest.json`; the plots are the PNG files "
      "beside it.\n")
    return "\n".join(out)


# --------------------------------------------------------------- plots


def _bar_chart(tmp, out, title, ylabel, rows, series, log=False, hline=None,
               width=900, height=480, yfmt="%.0s%c"):
    """rows: [(label, [value per series])]"""
    if not rows:
        return None
    data = os.path.join(tmp, os.path.basename(out) + ".dat")
    with open(data, "w") as f:
        f.write("\t".join(["label"] + series) + "\n")
        for label, vals in rows:
            cells = []
            for v in vals:
                ok = v is not None and (v > 0 or not log)
                cells.append("%.6g" % v if ok else "?")
            f.write("\t".join([label] + cells) + "\n")
    script = [
        'set terminal pngcairo size %d,%d noenhanced font "sans,10"' % (width, height),
        "set output '%s'" % out,
        'set title "%s"' % title,
        'set ylabel "%s"' % ylabel,
        "set datafile separator '\\t'",
        "set datafile missing '?'",
        "set style data histograms",
        "set style histogram clustered gap 1",
        "set style fill solid 0.85 border -1",
        "set boxwidth 0.9",
        "set grid ytics",
        "set key outside right top",
        "set xtics rotate by -30 scale 0 nomirror",
        "set xrange [-0.6:%f]" % (len(rows) - 0.4),
        "set bmargin 5",
    ]
    script.append("set logscale y\nset format y '%s'" % yfmt if log else "set yrange [0:*]")
    plots = []
    for i, name in enumerate(series):
        spec = "'%s' using %d%s title columnheader(%d) lc rgb '%s'" % (
            data if i == 0 else "", i + 2, ":xtic(1)" if i == 0 else "", i + 2,
            COLORS.get(name, "#8172b3"))
        plots.append(spec)
    if hline is not None:
        plots.append("%g with lines dt 2 lw 2 lc rgb 'black' title '%g×'" % (hline, hline))
    script.append("plot " + ", ".join(plots))
    gp = os.path.join(tmp, os.path.basename(out) + ".gp")
    with open(gp, "w") as f:
        f.write("\n".join(script) + "\n")
    r = subprocess.run(["gnuplot", gp], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("gnuplot: " + r.stderr.strip()[-500:])
    return out


def plots(doc, outdir):
    labels = doc["labels"]
    targets = doc["targets"]
    by_id = {m["id"]: m for m in doc["metrics"]}
    made = []

    def med(m, t):
        return ((m.get("values") or {}).get(t) or {}).get("median")

    def chart(name, title, ylabel, ids, log=False, tlist=None):
        tlist = tlist or [t for t in targets
                          if any(t in by_id[i]["values"] for i in ids if i in by_id)]
        rows = [(by_id[i]["short"], [med(by_id[i], t) for t in tlist])
                for i in ids if i in by_id]
        if not rows or not any(v is not None for _, vs in rows for v in vs):
            return
        path = _bar_chart(tmp, os.path.join(outdir, name), title, ylabel, rows,
                          [labels[t] for t in tlist], log=log)
        if path:
            made.append(path)

    with tempfile.TemporaryDirectory() as tmp:
        chart("throughput.png", "Sequential throughput, 1 MiB blocks (higher is better)",
              "MiB/s", ["seq_write", "seq_read"])
        chart("iops.png", "4 KiB random I/O and write+fsync (higher is better, log scale)",
              "operations/s", ["rand_write", "rand_read", "fsync_rate"], log=True)
        chart("metadata.png", "Metadata operations (higher is better, log scale)",
              "ops/s (readdir: entries/s)",
              [m["id"] for m in doc["metrics"] if m["section"] == "meta"], log=True)
        chart("realwork.png", "Real work on an OS tree (lower is better)", "seconds",
              [m["id"] for m in doc["metrics"] if m["section"] == "tree"])
        chart("density.png", "Memory per idle mount (lower is better)", "KiB",
              [m["id"] for m in doc["metrics"] if m["id"].startswith("dens_mem_")])
        if SUBJECT in targets:
            bases = [b for b in BASELINES if b in targets]
            rows = [(m["short"], [m.get("ratios", {}).get(b) for b in bases])
                    for m in doc["metrics"] if m.get("ratios")]
            rows = [r for r in rows if any(v is not None for v in r[1])]
            if rows:
                path = _bar_chart(tmp, os.path.join(outdir, "ratios.png"),
                                  "ASPFS relative to each baseline (> 1 = ASPFS better, log scale)",
                                  "ratio", rows, ["vs " + labels[b] for b in bases],
                                  log=True, hline=1.0, width=1400, height=640,
                                  yfmt="%g")
                if path:
                    made.append(path)
    return made


def main(argv):
    import argparse
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description="redraw the bench report from its JSON")
    p.add_argument("json", nargs="?", default=os.path.join(here, "results", "latest.json"))
    p.add_argument("--out", help="output directory (default: the JSON's)")
    a = p.parse_args(argv)
    with open(a.json) as f:
        doc = json.load(f)
    complete(doc)
    out = a.out or os.path.dirname(os.path.abspath(a.json))
    os.makedirs(out, exist_ok=True)
    md = markdown(doc)
    with open(os.path.join(out, "latest.md"), "w") as f:
        f.write(md)
    plots(doc, out)
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
