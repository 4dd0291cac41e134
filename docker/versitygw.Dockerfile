# pipectl/versitygw: versitygw (an S3 server storing plain files; built by
# `make versitygw`, a static Go binary) on the project's root filesystem, for
# the test cluster's S3 store. The build context holds only the binary.
# FROM the debootstrap root rather than pipectl/base: the base's ONBUILD steps
# install a stage's requirements, which this image has none of.
FROM pipectl/rootfs:bookworm
COPY versitygw /usr/local/bin/versitygw
USER 65534:65534
EXPOSE 7070
ENTRYPOINT ["/usr/local/bin/versitygw"]
