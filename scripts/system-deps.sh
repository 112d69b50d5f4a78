#!/bin/sh
# Debian packages some tests drive for real: rsyslog (RFC 5425 audit receiver) and chromium (the ops
# console's browser tests, driven by Playwright at /usr/bin/chromium; Playwright never downloads a browser),
# wrk (the benchmarks' baseline load generator, `python -m bench`; without it that baseline is skipped), and
# Apache WSS4J 1.6 + Santuario with a JDK (an independent WS-Security stack that signs the messages the
# interoperability tests send: tests/support/wss4j.py).
# Installs them when missing and we are root; otherwise says what to install.
set -eu
missing=""
command -v rsyslogd >/dev/null 2>&1 || missing="$missing rsyslog"
[ -e /usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so ] || [ -n "$(ls /usr/lib/*/rsyslog/lmnsd_ossl.so 2>/dev/null)" ] || missing="$missing rsyslog-openssl"
[ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
[ -e /usr/share/java/wss4j.jar ] || missing="$missing libwss4j-java"
[ -e /usr/share/java/xmlsec.jar ] || missing="$missing libxml-security-java"
command -v javac >/dev/null 2>&1 || missing="$missing default-jdk-headless"
if [ -z "$missing" ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages:$missing"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null || {
    apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null; }
else
  echo "note: install the Debian packages$missing for the syslog and browser tests (they skip without them, fail under CI=true)"
fi
