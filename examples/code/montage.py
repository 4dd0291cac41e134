"""A montage of every image and its edge map, as Pachyderm's opencv
example makes with ImageMagick's montage: the files under /pfs/images and
/pfs/edges, sorted by name, as 240x240 tiles in rows of two, written to
/pfs/out/montage.png."""

import os

from PIL import Image

TILE = 240
paths = sorted(os.path.join(d, f) for top in ("/pfs/images", "/pfs/edges") for d, _, fs in os.walk(top) for f in fs)
rows = (len(paths) + 1) // 2
montage = Image.new("RGB", (2 * TILE, max(rows, 1) * TILE), "skyblue")
for i, path in enumerate(paths):
    with Image.open(path) as image:
        tile = image.convert("RGB")
    tile.thumbnail((TILE - 4, TILE - 4))
    x, y = (i % 2) * TILE, (i // 2) * TILE
    montage.paste(tile, (x + (TILE - tile.width) // 2, y + (TILE - tile.height) // 2))
montage.save("/pfs/out/montage.png")
