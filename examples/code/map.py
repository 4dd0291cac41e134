"""Word count, map step, written the way Pachyderm's word_count example is:
counts the words of every page under /pfs/pages (lowercased; anything but
letters separates words) and writes each count to
/pfs/out/<datum id>/<word>, one directory per datum so that datums never
write the same file."""

import collections
import os
import re

counts = collections.Counter()
for dirpath, _dirs, files in os.walk("/pfs/pages"):
    for file in files:
        with open(os.path.join(dirpath, file), encoding="utf-8") as f:
            counts.update(w for w in re.split(r"[^a-z]+", f.read().lower()) if w)

out = os.path.join("/pfs/out", os.environ["PACH_DATUM_ID"])
os.makedirs(out, exist_ok=True)
for word, count in counts.items():
    with open(os.path.join(out, word), "w") as f:
        f.write(f"{count}\n")
