# Build image for `cross build --target armv7-unknown-linux-gnueabihf`
# (Raspberry Pi 2/3/4/5 with 32-bit Raspberry Pi OS, armhf).
#
# Base: cross-rs's `main` image for the target, Ubuntu 20.04 (focal), whose
# cross glibc is 2.31: the binary runs on Raspberry Pi OS bullseye (2.31) and
# bookworm (2.36). Pin it by digest for reproducible releases: Cross.toml passes
# the tag as CROSS_BASE_IMAGE.
ARG CROSS_BASE_IMAGE=ghcr.io/cross-rs/armv7-unknown-linux-gnueabihf:main
FROM $CROSS_BASE_IMAGE

# libclang + clang: bindgen generates the V4L2 bindings (v4l2-sys-mit) at build
# time. pkg-config: for -sys crates that look for system libraries (none today:
# SQLite is bundled, TLS is rustls).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libclang-dev clang pkg-config \
 && rm -rf /var/lib/apt/lists/*

# bindgen must parse <linux/videodev2.h> of the target (32-bit ARM: struct
# layouts differ from x86_64), so point clang at the cross sysroot.
ENV BINDGEN_EXTRA_CLANG_ARGS_armv7_unknown_linux_gnueabihf="--sysroot=/usr/arm-linux-gnueabihf -I/usr/arm-linux-gnueabihf/include" \
    PKG_CONFIG_ALLOW_CROSS=1 \
    PKG_CONFIG_LIBDIR=/usr/lib/arm-linux-gnueabihf/pkgconfig
