# hostd %postun ($1: 0 on erase, 1 on upgrade). On upgrade a running daemon
# is restarted with the new binary; hostd-boot.service is never re-run.
# RPM has no purge: /var/lib/hostd is kept on erase.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart hostd.service >/dev/null 2>&1 || :
    fi
fi
