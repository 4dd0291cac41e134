"""Edge detection, written the way Pachyderm's opencv example is: every
image under /pfs/images gets an edge map of the same name (.png) in
/pfs/out. Pillow's FIND_EDGES kernel stands in for OpenCV's Canny."""

import os

from PIL import Image, ImageFilter, ImageOps


def make_edges(path):
    name = os.path.splitext(os.path.basename(path))[0] + ".png"
    with Image.open(path) as image:
        edges = ImageOps.grayscale(image).filter(ImageFilter.FIND_EDGES)
    edges.save(os.path.join("/pfs/out", name))


for dirpath, _dirs, files in os.walk("/pfs/images"):
    for file in files:
        make_edges(os.path.join(dirpath, file))
