# symroute's container image. Built on the official Node.js image (the native netlink addon
# needs its g++, make and python3); the image that runs holds nothing but Node.js, the shared
# libraries it and the addon load, and symroute's production files: package.json, production
# node_modules, the addon, dist/. No shell, no package manager, no distribution. It runs as
# root with every capability dropped but NET_ADMIN — the DaemonSet in deploy/kubernetes/ says
# so in its securityContext; by hand:
#   docker run --network=host --cap-drop=ALL --cap-add=NET_ADMIN --read-only
#     -v /etc/symroute:/etc/symroute:ro -v /run/symroute:/run/symroute IMAGE
# Build: docker build --build-arg SYMROUTE_COMMIT=$(git rev-parse HEAD) -t symroute .
# BUILD_IMAGE names another image with Node.js >= 20 (its headers in /usr/local/include/node),
# npm, g++, make and python3, e.g. a local mirror; test/integration/podman.test.ts builds with
# a stand-in made from Debian's archive, since no image registry can be reached there.
ARG BUILD_IMAGE=docker.io/library/node:22-bookworm

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
# What .dockerignore lets in: package.json, the lockfile, binding.gyp, tsconfig.json, native/,
# scripts/, src/. One COPY, one layer.
COPY . ./
# No .git in the build context: the commit for symroute_build_info comes in as an argument.
# The headers come with the image's Node.js (<prefix>/include/node): node-gyp needs no download.
ARG SYMROUTE_COMMIT=unknown
RUN SYMROUTE_COMMIT=$SYMROUTE_COMMIT npm_config_nodedir="$(dirname "$(dirname "$(command -v node)")")" npm ci && npm prune --omit=dev
# The running image's whole root, gathered here: the app, Node.js, and every shared library
# the two binaries load (with the dynamic loader), at the paths they are loaded from.
RUN mkdir -p image/opt/symroute/build/Release image/usr/local/bin \
 && cp -r package.json node_modules dist image/opt/symroute/ \
 && cp build/Release/symroute_native.node image/opt/symroute/build/Release/ \
 && cp "$(command -v node)" image/usr/local/bin/node && strip --strip-unneeded image/usr/local/bin/node \
 && for lib in $(ldd "$(command -v node)" build/Release/symroute_native.node | grep -v ':$' | grep -o '/[^ ]*' | sort -u); do cp --parents -L "$lib" image/; done

FROM scratch
COPY --from=build /src/image/ /
# Exec form: the daemon is PID 1 and receives SIGTERM itself (it installs its own handlers).
ENTRYPOINT ["/usr/local/bin/node", "/opt/symroute/dist/cli.js", "run"]
CMD ["--config", "/etc/symroute/symroute.yaml", "--watch-config"]
