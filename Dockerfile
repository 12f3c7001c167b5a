# syntax=docker/dockerfile:1
#
# bastion container image: a static binary on distroless, running as
# nonroot (65532).
#
#   docker build -t bastion \
#     --build-arg VERSION="$(git describe --tags --always --dirty)" \
#     --build-arg VCS_REVISION="$(git rev-parse HEAD)" .
#   docker run --rm -p 2222:2222 -p 9090:9090 \
#     -v "$PWD/config:/etc/bastion:ro" -v bastion-state:/var/lib/bastion bastion
#
# The image runs `bastion serve --config /etc/bastion/config.yaml`; any other
# subcommand works as the container's arguments (`docker run bastion version`,
# `... check-config --config /etc/bastion/config.yaml`).

# ---- build ------------------------------------------------------------------
# The go directive in go.mod asks for 1.26; pin a digest for reproducible
# builds.
FROM golang:1.26 AS build
WORKDIR /src

# Modules first, in a layer of their own that source changes leave cached.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
# .git is not in the build context, so the go command cannot record the
# revision: `bastion version` prints what these build arguments say.
ARG VERSION=unknown
ARG VCS_REVISION=unknown
# Pure Go: no cgo, so the binary runs on an image without a libc.
# -trimpath keeps the build machine's paths out of the binary, -s -w its
# symbol tables.
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.buildVersion=${VERSION} -X main.buildRevision=${VCS_REVISION}" \
      -o /out/bastion ./cmd/bastion

# The state folder, owned by nonroot, to copy into the image: distroless has
# no shell to mkdir/chown at run time.
RUN install -d -m 0700 -o 65532 -g 65532 /out/state

# ---- run --------------------------------------------------------------------
# No shell, no package manager, no libc; /etc/passwd has "nonroot" (65532).
FROM gcr.io/distroless/static-debian12:nonroot

COPY --from=build /out/bastion /usr/local/bin/bastion
COPY --from=build --chown=65532:65532 /out/state /var/lib/bastion

USER 65532:65532

# 2222: SSH (listen). 9090: admin HTTP, /metrics /healthz /readyz
# (admin_listen; set it to ":9090", not 127.0.0.1, for probes from outside
# the container).
EXPOSE 2222 9090

# /etc/bastion: config.yaml (and keys files), mounted read-only.
# /var/lib/bastion: host keys (created on first start if missing; in a fleet
# mount the same ones into every replica), the EC2 known_hosts store,
# recordings.
VOLUME ["/etc/bastion", "/var/lib/bastion"]

# No HEALTHCHECK: its CMD form needs a shell and an HTTP client, and this
# image has neither (the bastion binary has no probe subcommand). Health is
# the orchestrator's job, over HTTP on the admin port: Kubernetes probes
# /healthz (liveness) and /readyz (readiness), the NLB checks /readyz, and
# with plain Docker an outside check can curl :9090/readyz.
HEALTHCHECK NONE

# The config is checked before serving by the orchestrator, not here (there
# is no shell to chain two commands): an initContainer running
# `bastion check-config` in Kubernetes, ExecStartPre in systemd. serve runs
# the same check at start and exits with the same messages on failure.
ENTRYPOINT ["/usr/local/bin/bastion"]
CMD ["serve", "--config", "/etc/bastion/config.yaml"]
