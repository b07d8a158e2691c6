# hostd %post ($1: 1 on install, 2 on upgrade). Creates the hostd-admin
# group, enables hostd.service and hostd-boot.service and starts neither:
# nothing changes the network during the install.
systemd-sysusers hostd.conf >/dev/null 2>&1 || :
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    systemctl --no-reload enable hostd.service hostd-boot.service >/dev/null 2>&1 || :
fi
