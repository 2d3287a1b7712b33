"""Instructions per request by crate, from callgrind profiles of the same load.

    python3 examples/callgrind_by_crate.py REQUESTS LABEL=FILE [LABEL=FILE ...]

Reads each profile with `callgrind_annotate` (self cost, every function), sums the instructions
by the crate of the source file they come from (a crates.io crate, a standard library crate, a
workspace crate, jemalloc, libc; code inlined from another crate counts for that crate, so std's
iterators inlined into the gateway count under "std: core"), divides by REQUESTS, and prints one
column per profile, largest first; the workspace's crates are always shown, the other crates
under 1 % of every profile are summed into "other".
"""
import collections, os, re, subprocess, sys


def crate(path):
    m = re.search(r"index\.crates\.io-[0-9a-f]+/([^/]+)/", path)
    if m:
        return re.sub(r"-\d+\.\d+\.\d+.*$", "", m.group(1))
    m = re.search(r"/library/([a-z_]+)/", path)
    if m:
        return "std: " + m.group(1)
    if "jemalloc" in path:
        return "jemalloc"
    if "sysdeps" in path or path.startswith("./"):
        return "libc"
    root = os.getcwd() + "/"
    path = path[len(root):] if path.startswith(root) else path
    if path.startswith("target/"):
        return "generated (target/)"
    m = re.match(r"((?:actors/)?[a-z_-]+)/(?:src/)?", path)
    if m and os.path.isdir(m.group(1)):
        return "workspace: " + (m.group(1) if m.group(1) != "examples" else path)
    return "(no source file)"


def load(path):
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no", path],
        capture_output=True, text=True, check=True).stdout
    by = collections.Counter()
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*)$", line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        by[crate(m.group(2).split(":")[0])] += int(m.group(1).replace(",", ""))
    return by


n = float(sys.argv[1])
profiles = [(a.split("=", 1)[0], load(a.split("=", 1)[1])) for a in sys.argv[2:]]
keys = set().union(*(p for _, p in profiles))
big = {k for k in keys if k.startswith("workspace: ")
       or any(p[k] >= 0.01 * sum(p.values()) for _, p in profiles)}
rows = sorted(big, key=lambda k: -max(p[k] for _, p in profiles))
print(f"{'instructions per request':36}" + "".join(f"{label:>14}" for label, _ in profiles))
for k in rows + ["other", "total"]:
    vals = []
    for _, p in profiles:
        if k == "total":
            v = sum(p.values())
        elif k == "other":
            v = sum(x for c, x in p.items() if c not in big)
        else:
            v = p[k]
        vals.append(v / n)
    print(f"{k:36}" + "".join(f"{v:14,.0f}" for v in vals))
