# pipectl/base: Debian bookworm (a debootstrap root filesystem imported as
# pipectl/rootfs:bookworm, see scripts/build_images.sh) with Python and the
# pipectl worker in /opt/pipectl. Built with no registry and no network:
# wheels come from the build context.
FROM pipectl/rootfs:bookworm
ENV PATH=/opt/pipectl/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY wheels/ /wheels/
RUN python3 -m venv /opt/pipectl \
 && pip install --no-cache-dir --no-index --find-links /wheels pipectl \
 && rm -rf /wheels
WORKDIR /app
# Every image built FROM pipectl/base (the stages, serving) gets the same
# offline install: its build context holds app/ (its directory) and wheels/
# (the wheels of app/requirements.txt), as scripts/build_images.sh lays out.
ONBUILD COPY wheels/ /wheels/
ONBUILD COPY app/requirements.txt /app/requirements.txt
ONBUILD RUN pip install --no-cache-dir --no-index --find-links /wheels -r /app/requirements.txt && rm -rf /wheels
ONBUILD COPY app/ /app/
