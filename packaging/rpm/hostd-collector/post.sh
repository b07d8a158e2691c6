# hostd-collector %post ($1: 1 on install, 2 on upgrade): enables the unit
# and starts it on install (it only listens), as the .deb does.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    systemctl --no-reload enable hostd-collector.service >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ]; then
        systemctl start hostd-collector.service >/dev/null 2>&1 || :
    fi
fi
