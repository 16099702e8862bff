#!/bin/sh
# Runs inside the VM (see run.sh): loads vivid, drives `pvtherm cameras` and
# `pvtherm capture`, and prints each step's output between
#   ==== BEGIN <name>   and   ==== END <name> rc=<exit status>
# for run.sh to check. No assertions here: the host has the better tools.

step() {
    name=$1
    shift
    echo "==== BEGIN $name"
    "$@" 2>&1
    rc=$?
    echo "==== END $name rc=$rc"
}

# vivid: one instance, video capture node only, one input in webcam mode
# (discrete sizes 320x180, 640x360, ...), 75% colour bars (the default pattern).
load_modules() {
    for m in $(cat /lib/modules/order); do
        if [ "$m" = vivid ]; then
            insmod /lib/modules/vivid.ko n_devs=1 node_types=0x1 num_inputs=1 input_types=0x0 || return 1
        else
            insmod "/lib/modules/$m.ko" || return 1
        fi
    done
    ls -l /dev/video*
}

VIVID_SYSFS=/sys/bus/platform/drivers/vivid
SPOTS="--spot 20,170 --spot 60,170 --spot 140,170 --spot 300,170"
CAPTURE="pvtherm capture --device /dev/video0 --width 320 --height 180 --fps 10"

# The camera is unplugged (driver unbound: the node vanishes, the open file
# gets ENODEV) and plugged in again (bound: a new /dev/video* appears) while a
# capture runs; the capture must report both and keep delivering frames.
reconnect() {
    pvtherm capture --device auto --format GREY --width 320 --height 180 --fps 10 \
        --duration 24 --stall-timeout 2 --reopen-interval 0.5 --expect-reconnect \
        >/tmp/reconnect.log 2>&1 &
    pid=$!
    for _ in $(seq 1 40); do
        grep -q '^frame ' /tmp/reconnect.log && break
        sleep 0.5
    done
    echo vivid.0 >"$VIVID_SYSFS/unbind"
    sleep 3
    echo vivid.0 >"$VIVID_SYSFS/bind"
    wait "$pid"
    rc=$?
    cat /tmp/reconnect.log
    ls -l /dev/video*
    return "$rc"
}

step modules load_modules
step cameras-json pvtherm cameras --json
step cameras-text pvtherm cameras
step capture-grey $CAPTURE --format GREY -n 3 $SPOTS --out /tmp/grey
step capture-grey-files ls -l /tmp/grey
step capture-yuyv $CAPTURE --format YUYV -n 3 $SPOTS
step capture-y16 $CAPTURE --format Y16 --radiometric no -n 3 $SPOTS --out /tmp/y16
step capture-y16-files ls -l /tmp/y16
step capture-missing pvtherm capture --device /dev/video0 --format TC001 -n 1
step reconnect reconnect

# One detection pass of the real (built-in) models on a frame the real driver
# delivered: capture -> file -> normalise -> detector -> classifier -> report.
step pipeline sh -c 'pvtherm detect --json /tmp/y16/$(ls /tmp/y16 | grep "\.y16$" | head -n 1)'
