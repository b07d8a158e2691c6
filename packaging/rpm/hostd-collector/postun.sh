# hostd-collector %postun ($1: 0 on erase, 1 on upgrade). RPM has no purge:
# the snapshot under /var/lib/private/hostd-collector is kept on erase.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart hostd-collector.service >/dev/null 2>&1 || :
    fi
fi
