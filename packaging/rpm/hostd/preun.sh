# hostd %preun ($1: 0 on erase, 1 on upgrade). On erase: disables both
# units and stops the daemon (the network stays as it is).
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable hostd.service hostd-boot.service >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ]; then
        systemctl stop hostd.service >/dev/null 2>&1 || :
    fi
fi
