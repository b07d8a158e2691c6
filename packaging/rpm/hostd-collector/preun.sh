# hostd-collector %preun ($1: 0 on erase, 1 on upgrade).
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable hostd-collector.service >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ]; then
        systemctl stop hostd-collector.service >/dev/null 2>&1 || :
    fi
fi
