# symroute's container image. Built with the compiler toolchain (the native netlink addon
# needs g++, make and python3), run on a slim Node.js image that holds only production
# files: package.json, production node_modules, the addon, dist/. Nothing in it needs a
# shell. It runs as root with every capability dropped but NET_ADMIN — the DaemonSet in
# deploy/kubernetes/ says so in its securityContext; by hand:
#   docker run --network=host --cap-drop=ALL --cap-add=NET_ADMIN -v /etc/symroute:/etc/symroute:ro IMAGE
# Build: docker build --build-arg SYMROUTE_COMMIT=$(git rev-parse HEAD) -t symroute .

FROM node:20-bookworm AS build
WORKDIR /src
COPY package.json package-lock.json binding.gyp tsconfig.json ./
COPY native/ native/
COPY scripts/ scripts/
COPY src/ src/
# No .git in the build context: the commit for symroute_build_info comes in as an argument.
ARG SYMROUTE_COMMIT=unknown
RUN SYMROUTE_COMMIT=$SYMROUTE_COMMIT npm ci && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /opt/symroute
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules/ node_modules/
COPY --from=build /src/build/Release/symroute_native.node build/Release/
COPY --from=build /src/dist/ dist/
# Exec form: the daemon is PID 1 and receives SIGTERM itself (it installs its own handlers).
ENTRYPOINT ["/usr/local/bin/node", "/opt/symroute/dist/cli.js", "run"]
CMD ["--config", "/etc/symroute/symroute.yaml", "--watch-config"]
