# Build image for `cross build --target aarch64-unknown-linux-gnu`
# (Raspberry Pi 4/5 with 64-bit Raspberry Pi OS, Jetson with JetPack 5/6).
#
# Base: cross-rs's `main` image for the target, Ubuntu 20.04 (focal), whose
# cross glibc is 2.31: the binary runs on Raspberry Pi OS bullseye (2.31),
# bookworm (2.36) and JetPack 5 (Ubuntu 20.04, 2.31). Pin it by digest for
# reproducible releases: Cross.toml passes the tag as CROSS_BASE_IMAGE.
ARG CROSS_BASE_IMAGE=ghcr.io/cross-rs/aarch64-unknown-linux-gnu:main
FROM $CROSS_BASE_IMAGE

# libclang + clang: bindgen generates the V4L2 bindings (v4l2-sys-mit) at build
# time. pkg-config: for -sys crates that look for system libraries (none today:
# SQLite is bundled, TLS is rustls).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libclang-dev clang pkg-config \
 && rm -rf /var/lib/apt/lists/*

# bindgen must parse <linux/videodev2.h> of the target, not of the build host:
# the cross toolchain's sysroot has the arm64 kernel headers and libc headers.
ENV BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=/usr/aarch64-linux-gnu -I/usr/aarch64-linux-gnu/include" \
    PKG_CONFIG_ALLOW_CROSS=1 \
    PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig
