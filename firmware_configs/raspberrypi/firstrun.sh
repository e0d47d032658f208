#!/bin/bash
# firstrun.sh for Raspberry Pi OS images written by older Raspberry Pi Imager versions (Bookworm images
# before the switch to cloud-init). Imager runs /boot/firmware/firstrun.sh (or /boot/firstrun.sh) once,
# from cmdline.txt: systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot
# systemd.unit=kernel-command-line.target
#
# That early in boot there is no network, so this only installs a one-shot unit that runs
# affectlite/raspberrypi/firstboot-install.sh from the boot partition after the network is up.
#
# If Imager's advanced options (user, Wi-Fi, SSH) already wrote a firstrun.sh, paste the block between
# the BEGIN/END markers into it, just before its final `rm -f .../firstrun.sh` cleanup lines.
set +e

# BEGIN affectlite
BOOT=/boot/firmware
[ -d "$BOOT/affectlite" ] || BOOT=/boot
cat > /etc/systemd/system/affectlite-firstboot.service <<UNIT
[Unit]
Description=Install affectlite from the boot partition (first boot)
Wants=network-online.target
After=network-online.target time-sync.target
ConditionPathExists=!/var/lib/affectlite-firstboot.done

[Service]
Type=oneshot
ExecStart=/bin/bash $BOOT/affectlite/raspberrypi/firstboot-install.sh
TimeoutStartSec=45min
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
UNIT
mkdir -p /etc/systemd/system/multi-user.target.wants
ln -sf /etc/systemd/system/affectlite-firstboot.service \
    /etc/systemd/system/multi-user.target.wants/affectlite-firstboot.service
# END affectlite

rm -f /boot/firmware/firstrun.sh /boot/firstrun.sh
sed -i 's| systemd.run.*||g' /boot/firmware/cmdline.txt 2>/dev/null || sed -i 's| systemd.run.*||g' /boot/cmdline.txt
exit 0
