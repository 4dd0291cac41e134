"""A scheduled report, the kind of job Pachyderm's cron example runs: on
each tick (/pfs/tick/<time>), the number of purchases and their total
across every store in /pfs/purchases, written to /pfs/out/report.txt."""

import decimal
import glob

amounts = []
for path in sorted(glob.glob("/pfs/purchases/*.txt")):
    with open(path) as f:
        amounts.append(decimal.Decimal(f.read().strip()))
with open("/pfs/out/report.txt", "w") as f:
    f.write(f"purchases {len(amounts)}\ntotal {sum(amounts, decimal.Decimal('0.00'))}\n")
