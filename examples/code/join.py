"""Joins, written the way Pachyderm's joins example is: each datum holds
one store (/pfs/stores/STOREID<n>.txt) and, in an inner join, one of its
purchases (/pfs/purchases/<purchase>_STOREID<n>.txt); an outer join also
gives a datum to a store with no purchase. Writes
/pfs/out/STOREID<n>/<purchase> (the store's name and the amount), or
/pfs/out/STOREID<n>/none."""

import glob
import os

store_id = os.environ["PACH_DATUM_stores_JOIN_ON"]  # noqa: SIM112 (Pachyderm names it so)
with open(f"/pfs/stores/STOREID{store_id}.txt") as f:
    store = f.read().strip()
out = f"/pfs/out/STOREID{store_id}"
os.makedirs(out, exist_ok=True)
purchases = glob.glob("/pfs/purchases/*.txt")
for path in purchases:
    with open(path) as f, open(os.path.join(out, os.path.basename(path).split("_")[0]), "w") as o:
        o.write(f"{store}: {f.read().strip()}\n")
if not purchases:
    with open(os.path.join(out, "none"), "w") as o:
        o.write(f"{store}: no purchases\n")
