"""Group, written the way Pachyderm's group example is: each datum holds
every purchase and return of one store (grouped by the store id the glob
captures) and writes /pfs/out/STOREID<n>.txt with the counts, the totals
and the net revenue."""

import decimal
import glob
import os


def total(pattern):
    amounts = []
    for path in glob.glob(pattern):
        with open(path) as f:
            amounts.append(decimal.Decimal(f.read().strip()))
    return len(amounts), sum(amounts, decimal.Decimal("0.00"))


store_id = os.environ["PACH_DATUM_purchases_GROUP_BY"]  # noqa: SIM112 (Pachyderm names it so)
bought, spent = total("/pfs/purchases/*.txt")
returned, refunded = total("/pfs/returns/*.txt")
with open(f"/pfs/out/STOREID{store_id}.txt", "w") as f:
    f.write(f"purchases {bought} {spent}\nreturns {returned} {refunded}\nnet {spent - refunded}\n")
