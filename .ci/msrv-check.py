#!/usr/bin/env python3
"""Fails when a locked dependency declares a rust-version newer than the workspace's MSRV."""
import json
import subprocess
import sys

meta = json.loads(subprocess.check_output(
    ["cargo", "metadata", "--format-version", "1", "--all-features", "--locked"]))
def parse(v):
    parts = [int(x) for x in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))
members = set(meta["workspace_members"])
msrv = max(parse(p["rust_version"]) for p in meta["packages"]
           if p["id"] in members and p.get("rust_version"))
too_new = [(p["name"], p["version"], p["rust_version"]) for p in meta["packages"]
           if p.get("rust_version") and parse(p["rust_version"]) > msrv]
if too_new:
    for name, version, rv in too_new:
        print(f"{name} {version} needs Rust {rv}, above the MSRV {'.'.join(map(str, msrv))}",
              file=sys.stderr)
    sys.exit(1)
print(f"MSRV {'.'.join(map(str, msrv))}: every locked dependency declares it or older "
      f"({len(meta['packages'])} packages)")
