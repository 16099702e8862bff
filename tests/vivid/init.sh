#!/bin/busybox sh
# /init of the test initrd (see run.sh): set up a minimal system, run the
# tests in guest.sh, power off. The host reads the results from the console.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
/bin/guest.sh
echo "==== ALL DONE"
poweroff -f
