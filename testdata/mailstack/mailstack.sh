#!/usr/bin/env bash
# mailstack.sh: a private, throw-away Dovecot + Postfix pair for caseintake's
# end-to-end tests. Everything (config, state, logs, pid files, queue, mail)
# lives under the DIR given on the command line; nothing listens anywhere but
# 127.0.0.1 and no mail can leave the machine.
#
# Usage:
#   mailstack.sh install              install the Debian packages if missing
#   mailstack.sh start DIR            generate config under DIR, start both
#                                     (env: IMAP_PORT IMAPS_PORT SMTP_PORT)
#   mailstack.sh stop DIR             stop both (pid files only); idempotent
#   mailstack.sh status DIR           show what runs; exit 1 if not all up
#   mailstack.sh stop-postfix DIR     outage scenarios: stop Postfix only,
#   mailstack.sh start-postfix DIR    start it again (queued mail is delivered),
#   mailstack.sh flush-postfix DIR    retry every queued message now,
#   mailstack.sh stop-dovecot DIR     stop Dovecot only,
#   mailstack.sh start-dovecot DIR    start it again,
#   mailstack.sh restart-dovecot DIR  or restart it.
#
# Every user (support, customer, agent, team, oncall, infra, stranger, all
# @example.test) has the password "secret"; DIR/passwords lists them.
# DIR/tls/ca.pem is the CA that signed the servers' certificate.
# DIR/stack.env holds the ports and paths in KEY=VALUE form.
#
# The stack needs root: Postfix's master refuses to run as anyone else, and
# Dovecot then runs mail processes as the unprivileged "mail" user.
set -euo pipefail

# libnet-ssleay-perl gives swaks its -tls option.
readonly PACKAGES=(dovecot-imapd dovecot-lmtpd postfix swaks s-nail openssl libnet-ssleay-perl)
readonly USERS=(support customer agent team oncall infra stranger)
readonly DOMAIN=example.test
readonly PASSWORD=secret
# How long start/stop wait for the daemons, in tenths of a second.
readonly DEADLINE_TENTHS=${MAILSTACK_DEADLINE_TENTHS:-300}

log() { printf 'mailstack: %s\n' "$*" >&2; }
die() {
	printf 'mailstack: error: %s\n' "$*" >&2
	exit 1
}

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
	exit 2
}

# ---------------------------------------------------------------- install

missing_packages() {
	local pkg status
	for pkg in "${PACKAGES[@]}"; do
		status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
		if [[ $status != installed ]]; then
			printf '%s\n' "$pkg"
		fi
	done
}

cmd_install() {
	local missing
	mapfile -t missing < <(missing_packages)
	if ((${#missing[@]} == 0)); then
		return 0
	fi
	if ((EUID != 0)); then
		die "missing Debian packages: ${missing[*]}; install them as root with:
  apt-get install --no-install-recommends ${PACKAGES[*]}"
	fi
	log "installing ${missing[*]}"
	# Keep maintainer scripts from starting the system-wide daemons: a
	# policy-rc.d that exits 101 forbids every invoke-rc.d action. An existing
	# one is kept if it already does that, and restored afterwards otherwise.
	local policy=/usr/sbin/policy-rc.d backup=
	if ! { [[ -x $policy ]] && grep -qx 'exit 101' "$policy"; }; then
		if [[ -e $policy ]]; then
			backup=$(mktemp /usr/sbin/policy-rc.d.mailstack.XXXXXX)
			cp -p "$policy" "$backup"
		fi
		# shellcheck disable=SC2064 # expand now: the trap must see these values
		trap "restore_policy '$policy' '$backup'" EXIT
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 0755 "$policy"
	fi
	echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
	# What ran or was enabled before is the administrator's business; only
	# what this install starts or enables is undone below.
	local -A before=()
	local item
	for item in "${SYSTEM_PIDFILES[@]}"; do
		[[ -z $(read_pid "$item") ]] || before[$item]=1
	done
	for item in "${SYSTEM_UNITS[@]}"; do
		! unit_enabled "$item" || before[$item]=1
	done
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >&2
	apt-get install -y -q --no-install-recommends \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		"${PACKAGES[@]}" >&2
	mapfile -t missing < <(missing_packages)
	if ((${#missing[@]} != 0)); then
		die "still missing after apt-get install: ${missing[*]}"
	fi
	# Should a package have started a system-wide daemon after all, stop it
	# by its own pid file (never by name).
	for item in "${SYSTEM_PIDFILES[@]}"; do
		if [[ -z ${before[$item]:-} && -n $(read_pid "$item") ]]; then
			log "stopping the system daemon of $item that the install started"
			stop_pidfile "$item" ""
		fi
	done
	# The packages enable their systemd units even when policy-rc.d keeps
	# them from starting; undo that so that a boot does not start them.
	for item in "${SYSTEM_UNITS[@]}"; do
		if [[ -z ${before[$item]:-} ]] && unit_enabled "$item"; then
			systemctl disable --quiet "$item" 2>/dev/null ||
				log "warning: could not disable $item"
		fi
	done
}

readonly SYSTEM_PIDFILES=(/run/dovecot/master.pid /var/spool/postfix/pid/master.pid)
readonly SYSTEM_UNITS=(dovecot.service postfix.service)

unit_enabled() {
	command -v systemctl >/dev/null && systemctl is-enabled --quiet "$1" 2>/dev/null
}

restore_policy() {
	local policy=$1 backup=$2
	if [[ -n $backup ]]; then
		mv -f "$backup" "$policy"
	else
		rm -f "$policy"
	fi
}

# ---------------------------------------------------------------- process helpers

# A process is named by "PID:STARTTIME" (start time in clock ticks since boot,
# field 22 of /proc/PID/stat), so that a pid the kernel hands out again is
# never mistaken for one of ours.

# proc_field PID N: field N (>= 3) of /proc/PID/stat, empty if PID is gone.
proc_field() {
	local line='' f
	{ IFS= read -r line <"/proc/$1/stat"; } 2>/dev/null || return 0
	# The command name (field 2) may hold spaces and ")"; cut after the last.
	read -r -a f <<<"${line##*) }"
	printf '%s' "${f[$2 - 3]:-}"
}

# ident PID: "PID:STARTTIME" of a live process, empty if none.
ident() {
	local start state
	state=$(proc_field "$1" 3)
	[[ -n $state && $state != Z ]] || return 0
	start=$(proc_field "$1" 22)
	printf '%s:%s\n' "$1" "$start"
}

# live IDENT...: the pids of those processes that still run (not zombies).
live() {
	local id
	for id in "$@"; do
		if [[ $(ident "${id%%:*}") == "$id" ]]; then
			printf '%s\n' "${id%%:*}"
		fi
	done
}

alive() {
	local pid state
	for pid in "$@"; do
		state=$(proc_field "$pid" 3)
		if [[ -n $state && $state != Z ]]; then
			return 0
		fi
	done
	return 1
}

# read_pid FILE: the pid in FILE if that process is alive, else nothing.
read_pid() {
	local file=$1 pid
	[[ -s $file ]] || return 0
	pid=$(tr -d ' \n' <"$file")
	[[ $pid =~ ^[0-9]+$ ]] || return 0
	if alive "$pid"; then
		printf '%s\n' "$pid"
	fi
}

# descendants PID: every process below PID (children, grandchildren...).
descendants() {
	ps -e -o pid=,ppid= | awk -v root="$1" '
		{ kids[$2] = kids[$2] " " $1 }
		END {
			queue[1] = root; n = 1
			for (i = 1; i <= n; i++) {
				m = split(kids[queue[i]], k, " ")
				for (j = 1; j <= m; j++) { print k[j]; queue[++n] = k[j] }
			}
		}'
}

# wait_gone TENTHS IDENT...: wait until none of those processes runs.
wait_gone() {
	local tenths=$1 i
	shift
	for ((i = 0; i < tenths; i++)); do
		[[ -n $(live "$@") ]] || return 0
		sleep 0.1
	done
	[[ -z $(live "$@") ]]
}

# stop_pidfile PIDFILE EXE: stop the process in PIDFILE (if its executable is
# named EXE) and everything it had started. SIGTERM to the master, which
# stops its children; SIGTERM to those of them still there once it is gone
# (Dovecot's anvil may linger for seconds); SIGKILL to any left at the
# deadline.
stop_pidfile() {
	local pidfile=$1 exe=$2 pid
	pid=$(read_pid "$pidfile")
	if [[ -z $pid ]]; then
		rm -f "$pidfile"
		return 0
	fi
	if [[ -n $exe ]]; then
		local actual
		actual=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
		if [[ ${actual##*/} != "$exe" ]]; then
			log "$pidfile names pid $pid, which is ${actual:-unknown}, not $exe: leaving it alone"
			rm -f "$pidfile"
			return 0
		fi
	fi
	local master kid
	local -a kids=()
	master=$(ident "$pid")
	while read -r kid; do
		kid=$(ident "$kid")
		if [[ -n $kid ]]; then kids+=("$kid"); fi
	done < <(descendants "$pid")

	kill -TERM "$pid" 2>/dev/null || true
	if ! wait_gone "$DEADLINE_TENTHS" "$master"; then
		log "$exe (pid $pid) still runs after SIGTERM; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		wait_gone 50 "$master" || die "could not stop $exe (pid $pid)"
	fi
	local -a left
	mapfile -t left < <(live "${kids[@]}")
	if ((${#left[@]})); then
		kill -TERM "${left[@]}" 2>/dev/null || true
		if ! wait_gone 30 "${kids[@]}"; then
			mapfile -t left < <(live "${kids[@]}")
			log "pid(s) ${left[*]} of $exe still run after SIGTERM; sending SIGKILL"
			kill -KILL "${left[@]}" 2>/dev/null || true
			wait_gone 50 "${kids[@]}" || die "could not stop pid(s) ${left[*]}"
		fi
	fi
	rm -f "$pidfile"
}

# wait_port PORT NAME: poll until 127.0.0.1:PORT accepts a connection.
wait_port() {
	local port=$1 name=$2 i
	for ((i = 0; i < DEADLINE_TENTHS; i++)); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	die "$name does not answer on 127.0.0.1:$port"
}

# wait_banner PORT PREFIX NAME: poll until the server on PORT greets with PREFIX.
wait_banner() {
	local port=$1 prefix=$2 name=$3 i line
	for ((i = 0; i < DEADLINE_TENTHS; i++)); do
		line=$(
			exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 0
			IFS= read -r -t 2 line <&3 || true
			printf '%s' "$line"
		) 2>/dev/null || true
		if [[ $line == "$prefix"* ]]; then
			return 0
		fi
		sleep 0.1
	done
	die "$name does not greet on 127.0.0.1:$port (last: ${line:-nothing})"
}

# elapsed T0 T1: seconds between two $EPOCHREALTIME values, e.g. 1.234.
elapsed() {
	awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'
}

# ---------------------------------------------------------------- layout

# set_paths DIR: the variables naming every file of a stack in DIR.
set_paths() {
	[[ -n ${1:-} ]] || usage
	DIR=$(cd "$1" 2>/dev/null && pwd -P) || die "no such directory: $1"
	TLS_DIR=$DIR/tls
	LOG_DIR=$DIR/log
	MAIL_DIR=$DIR/mail
	DOVECOT_DIR=$DIR/dovecot
	DOVECOT_CONF=$DOVECOT_DIR/dovecot.conf
	DOVECOT_RUN=$DOVECOT_DIR/run
	DOVECOT_PID=$DOVECOT_RUN/master.pid
	LMTP_SOCKET=$DOVECOT_RUN/lmtp
	AUTH_SOCKET=$DOVECOT_RUN/auth-postfix
	POSTFIX_DIR=$DIR/postfix
	POSTFIX_QUEUE=$DIR/postfix-queue
	POSTFIX_DATA=$DIR/postfix-data
	POSTFIX_PID=$POSTFIX_QUEUE/pid/master.pid
	STACK_ENV=$DIR/stack.env
}

load_env() {
	[[ -s $STACK_ENV ]] || die "$DIR has no stack.env: was it ever started?"
	IMAP_PORT=$(sed -n 's/^IMAP_PORT=//p' "$STACK_ENV")
	IMAPS_PORT=$(sed -n 's/^IMAPS_PORT=//p' "$STACK_ENV")
	SMTP_PORT=$(sed -n 's/^SMTP_PORT=//p' "$STACK_ENV")
}

require_root() {
	((EUID == 0)) || die "the mail stack must be started as root: Postfix's master refuses to run as any other user"
}

require_port() {
	local name=$1 value=${!1:-}
	if ! [[ $value =~ ^[0-9]+$ ]] || ((value < 1 || value > 65535)); then
		die "$name must be set to a TCP port (got '${value}')"
	fi
}

# ---------------------------------------------------------------- TLS

make_tls() {
	[[ -s $TLS_DIR/server.pem ]] && return 0
	mkdir -p "$TLS_DIR"
	local openssl_log=$TLS_DIR/openssl.log
	{
		openssl req -x509 -newkey rsa:2048 -nodes -days 30 \
			-subj '/CN=mailstack test CA' \
			-addext 'basicConstraints=critical,CA:TRUE' \
			-addext 'keyUsage=critical,keyCertSign,cRLSign' \
			-keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.pem"
		openssl req -newkey rsa:2048 -nodes -subj '/CN=localhost' \
			-keyout "$TLS_DIR/server.key" -out "$TLS_DIR/server.csr"
		printf '%s\n' \
			'basicConstraints=critical,CA:FALSE' \
			'keyUsage=critical,digitalSignature,keyEncipherment' \
			'extendedKeyUsage=serverAuth' \
			'subjectAltName=DNS:localhost,IP:127.0.0.1' >"$TLS_DIR/server.ext"
		openssl x509 -req -in "$TLS_DIR/server.csr" -days 30 \
			-CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" -CAcreateserial \
			-extfile "$TLS_DIR/server.ext" -out "$TLS_DIR/server.pem"
	} >"$openssl_log" 2>&1 || die "openssl failed: $(cat "$openssl_log")"
	chmod 0644 "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem"
	chmod 0600 "$TLS_DIR/ca.key" "$TLS_DIR/server.key"
}

# ---------------------------------------------------------------- Dovecot

write_dovecot_config() {
	mkdir -p "$DOVECOT_DIR" "$MAIL_DIR" "$LOG_DIR"
	chown mail:mail "$MAIL_DIR"
	chmod 0750 "$MAIL_DIR"
	local user
	: >"$DOVECOT_DIR/passwd"
	: >"$DIR/passwords"
	for user in "${USERS[@]}"; do
		printf '%s@%s:{PLAIN}%s::::::\n' "$user" "$DOMAIN" "$PASSWORD" >>"$DOVECOT_DIR/passwd"
		printf '%s@%s %s\n' "$user" "$DOMAIN" "$PASSWORD" >>"$DIR/passwords"
	done
	chmod 0640 "$DOVECOT_DIR/passwd"
	chgrp dovecot "$DOVECOT_DIR/passwd"
	local dh=
	if [[ -r /usr/share/dovecot/dh.pem ]]; then
		dh="ssl_dh = </usr/share/dovecot/dh.pem"
	fi
	cat >"$DOVECOT_CONF" <<EOF
# Generated by mailstack.sh for a private test instance; do not edit.
instance_name = mailstack-$(printf '%s' "$DIR" | md5sum | cut -c1-8)
base_dir = $DOVECOT_RUN
state_dir = $DOVECOT_DIR/state
listen = 127.0.0.1
protocols = imap lmtp
log_path = $LOG_DIR/dovecot.log
shutdown_clients = yes

default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
mail_uid = mail
mail_gid = mail
mail_location = maildir:~/Maildir
mail_fsync = never

ssl = yes
ssl_cert = <$TLS_DIR/server.pem
ssl_key = <$TLS_DIR/server.key
ssl_min_protocol = TLSv1.2
$dh

# Plaintext LOGIN/AUTHENTICATE needs TLS, except that Dovecot treats
# loopback connections (remote IP = local IP) as secure.
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_default_realm = $DOMAIN
auth_verbose = yes
# Tests try wrong passwords on purpose; do not make them wait.
auth_failure_delay = 0

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $DOVECOT_DIR/passwd
}
userdb {
  driver = passwd-file
  args = username_format=%u $DOVECOT_DIR/passwd
  default_fields = uid=mail gid=mail home=$MAIL_DIR/%n
}

service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $IMAPS_PORT
    ssl = yes
  }
}
service lmtp {
  # Every user's mail belongs to "mail": no need for root to deliver.
  user = mail
  unix_listener lmtp {
    mode = 0660
    user = postfix
    group = postfix
  }
}
service auth {
  unix_listener auth-postfix {
    mode = 0660
    user = postfix
    group = postfix
  }
}
protocol imap {
  # Tests and the daemon open many connections as the same user.
  mail_max_userip_connections = 200
}
protocol lmtp {
  postmaster_address = postmaster@$DOMAIN
}
namespace inbox {
  inbox = yes
  separator = /
}
EOF
}

start_dovecot() {
	if [[ -n $(read_pid "$DOVECOT_PID") ]]; then
		log "dovecot already runs (pid $(read_pid "$DOVECOT_PID"))"
	else
		mkdir -p "$DOVECOT_DIR/state"
		# The daemons must not inherit our stdio: a caller reading our output
		# through a pipe would otherwise wait for them to exit.
		dovecot -c "$DOVECOT_CONF" </dev/null >>"$LOG_DIR/dovecot-start.log" 2>&1 ||
			die "dovecot did not start: $(tail -n 20 "$LOG_DIR/dovecot-start.log" "$LOG_DIR/dovecot.log" 2>&1)"
	fi
	wait_banner "$IMAP_PORT" '* OK' "dovecot (imap)"
	wait_port "$IMAPS_PORT" "dovecot (imaps)"
	local i
	for ((i = 0; i < DEADLINE_TENTHS; i++)); do
		[[ -S $LMTP_SOCKET ]] && return 0
		sleep 0.1
	done
	die "dovecot did not create $LMTP_SOCKET"
}

stop_dovecot() {
	stop_pidfile "$DOVECOT_PID" dovecot
}

# ---------------------------------------------------------------- Postfix

write_postfix_config() {
	mkdir -p "$POSTFIX_DIR" "$POSTFIX_QUEUE" "$POSTFIX_DATA" "$LOG_DIR"
	chown postfix:postfix "$POSTFIX_DATA"
	local user
	: >"$POSTFIX_DIR/vmailbox"
	for user in "${USERS[@]}"; do
		printf '%s@%s OK\n' "$user" "$DOMAIN" >>"$POSTFIX_DIR/vmailbox"
	done
	printf 'postmaster@%s OK\n' "$DOMAIN" >>"$POSTFIX_DIR/vmailbox"
	cat >"$POSTFIX_DIR/main.cf" <<EOF
# Generated by mailstack.sh for a private test instance; do not edit.
compatibility_level = 3.6
queue_directory = $POSTFIX_QUEUE
data_directory = $POSTFIX_DATA
mail_owner = postfix
setgid_group = postdrop
maillog_file = $LOG_DIR/postfix.log
maillog_file_prefixes = $LOG_DIR
syslog_name = mailstack-postfix

myhostname = mailstack.localhost
mydomain = $DOMAIN
myorigin = $DOMAIN
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
biff = no
append_dot_mydomain = no

# The only destination: example.test, handed to Dovecot over LMTP.
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_maps = texthash:$POSTFIX_DIR/vmailbox
virtual_transport = lmtp:unix:$LMTP_SOCKET

# Nothing else is ever relayed, nor delivered locally: mail can not leave.
relayhost =
relay_domains =
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = reject_unlisted_recipient
default_transport = error:mailstack relays nothing
relay_transport = error:mailstack relays nothing
local_transport = error:mailstack delivers nothing locally
local_recipient_maps =
alias_maps =
alias_database =

# No DNS at all.
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
smtpd_peername_lookup = no
smtp_host_lookup = native
lmtp_host_lookup = native

# STARTTLS and AUTH (against Dovecot) offered, never required.
smtpd_tls_security_level = may
smtpd_tls_cert_file = $TLS_DIR/server.pem
smtpd_tls_key_file = $TLS_DIR/server.key
smtpd_tls_loglevel = 1
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = $AUTH_SOCKET
smtpd_tls_auth_only = no

# Retry quickly so that mail held during an outage goes out within seconds.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
lmtp_connect_timeout = 5s
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 100
smtpd_hard_error_limit = 200
smtpd_client_connection_rate_limit = 0
delay_warning_time = 0
EOF
	cat >"$POSTFIX_DIR/master.cf" <<EOF
# Generated by mailstack.sh. No service is chrooted: the queue lives under DIR.
# service        type  private unpriv chroot wakeup maxproc command
127.0.0.1:$SMTP_PORT inet n    -      n      -      -       smtpd
pickup           unix  n       -      n      60     1       pickup
cleanup          unix  n       -      n      -      0       cleanup
qmgr             unix  n       -      n      300    1       qmgr
tlsmgr           unix  -       -      n      1000?  1       tlsmgr
rewrite          unix  -       -      n      -      -       trivial-rewrite
bounce           unix  -       -      n      -      0       bounce
defer            unix  -       -      n      -      0       bounce
trace            unix  -       -      n      -      0       bounce
verify           unix  -       -      n      -      1       verify
flush            unix  n       -      n      1000?  0       flush
proxymap         unix  -       -      n      -      -       proxymap
proxywrite       unix  -       -      n      -      1       proxymap
smtp             unix  -       -      n      -      -       smtp
relay            unix  -       -      n      -      -       smtp
showq            unix  n       -      n      -      -       showq
error            unix  -       -      n      -      -       error
retry            unix  -       -      n      -      -       error
discard          unix  -       -      n      -      -       discard
lmtp             unix  -       -      n      -      -       lmtp
anvil            unix  -       -      n      -      1       anvil
scache           unix  -       -      n      -      1       scache
postlog          unix-dgram n  -      n      -      1       postlogd
EOF
	# Postfix holds back its start for about two seconds while a table or
	# config file is younger than that (a guard against half-written files).
	# These were written whole, so date them back.
	touch -d '-10 seconds' "$POSTFIX_DIR/main.cf" "$POSTFIX_DIR/master.cf" "$POSTFIX_DIR/vmailbox"
}

postfix_cmd() {
	postfix -c "$POSTFIX_DIR" "$@"
}

start_postfix() {
	if [[ -n $(read_pid "$POSTFIX_PID") ]]; then
		log "postfix already runs (pid $(read_pid "$POSTFIX_PID"))"
	else
		# The integrity check (which also creates the queue directories) runs
		# once, at "start"; later starts skip it through the quick-start file.
		if [[ ! -e $POSTFIX_QUEUE/.checked ]]; then
			postfix_cmd check </dev/null >>"$LOG_DIR/postfix-start.log" 2>&1 ||
				die "postfix check failed: $(tail -n 20 "$LOG_DIR/postfix-start.log" "$LOG_DIR/postfix.log" 2>&1)"
			touch "$POSTFIX_QUEUE/.checked"
		fi
		touch "$POSTFIX_QUEUE/quick-start"
		postfix_cmd start </dev/null >>"$LOG_DIR/postfix-start.log" 2>&1 ||
			die "postfix did not start: $(tail -n 20 "$LOG_DIR/postfix-start.log" "$LOG_DIR/postfix.log" 2>&1)"
	fi
	wait_banner "$SMTP_PORT" 220 "postfix (smtp)"
}

stop_postfix() {
	stop_pidfile "$POSTFIX_PID" master
}

# ---------------------------------------------------------------- commands

cmd_start() {
	set_paths "$1"
	require_root
	# Restarting a stack that ran before: its ports unless told otherwise.
	if [[ -s $STACK_ENV && -z ${IMAP_PORT:-}${IMAPS_PORT:-}${SMTP_PORT:-} ]]; then
		load_env
	fi
	require_port IMAP_PORT
	require_port IMAPS_PORT
	require_port SMTP_PORT
	local t0=$EPOCHREALTIME
	# The daemons' unprivileged users must be able to traverse DIR.
	chmod 0755 "$DIR"
	mkdir -p "$LOG_DIR"
	make_tls
	write_dovecot_config
	write_postfix_config
	cat >"$STACK_ENV" <<EOF
DIR=$DIR
IMAP_PORT=$IMAP_PORT
IMAPS_PORT=$IMAPS_PORT
SMTP_PORT=$SMTP_PORT
CA_FILE=$TLS_DIR/ca.pem
LMTP_SOCKET=$LMTP_SOCKET
DOVECOT_PID_FILE=$DOVECOT_PID
POSTFIX_PID_FILE=$POSTFIX_PID
PASSWORD=$PASSWORD
EOF
	local t1=$EPOCHREALTIME
	start_dovecot
	local t2=$EPOCHREALTIME
	start_postfix
	local t3=$EPOCHREALTIME
	cmd_status "$DIR" >&2
	log "started: setup $(elapsed "$t0" "$t1")s, dovecot $(elapsed "$t1" "$t2")s, postfix $(elapsed "$t2" "$t3")s"
}

cmd_stop() {
	set_paths "$1"
	stop_postfix
	stop_dovecot
}

cmd_status() {
	set_paths "$1"
	local dpid ppid ok=0
	dpid=$(read_pid "$DOVECOT_PID")
	ppid=$(read_pid "$POSTFIX_PID")
	if [[ -s $STACK_ENV ]]; then
		load_env
		printf 'mail stack in %s\n' "$DIR"
		printf '  IMAP (STARTTLS)  127.0.0.1:%s\n' "$IMAP_PORT"
		printf '  IMAPS            127.0.0.1:%s\n' "$IMAPS_PORT"
		printf '  SMTP             127.0.0.1:%s\n' "$SMTP_PORT"
		printf '  LMTP             %s\n' "$LMTP_SOCKET"
		printf '  CA               %s\n' "$TLS_DIR/ca.pem"
		printf '  users            %s (password "%s")\n' "${USERS[*]/%/@$DOMAIN}" "$PASSWORD"
		printf '  logs             %s\n' "$LOG_DIR"
	fi
	local name pid
	for name in dovecot postfix; do
		pid=$dpid
		[[ $name == dovecot ]] || pid=$ppid
		if [[ -n $pid ]]; then
			printf '  %-16s running, pid %s\n' "$name" "$pid"
		else
			printf '  %-16s stopped\n' "$name"
			ok=1
		fi
	done
	return "$ok"
}

main() {
	local cmd=${1:-}
	shift || true
	case $cmd in
	install) cmd_install ;;
	start) cmd_start "${1:-}" ;;
	stop)
		if [[ -n ${1:-} && ! -e $1 ]]; then
			log "$1 does not exist: nothing to stop"
			return 0
		fi
		cmd_stop "${1:-}"
		;;
	status) cmd_status "${1:-}" ;;
	stop-postfix)
		set_paths "${1:-}"
		stop_postfix
		;;
	start-postfix)
		set_paths "${1:-}"
		require_root
		load_env
		start_postfix
		;;
	flush-postfix)
		set_paths "${1:-}"
		require_root
		postfix_cmd flush </dev/null >>"$LOG_DIR/postfix-start.log" 2>&1 ||
			die "postfix flush failed: $(tail -n 20 "$LOG_DIR/postfix-start.log" 2>&1)"
		;;
	stop-dovecot)
		set_paths "${1:-}"
		stop_dovecot
		;;
	start-dovecot)
		set_paths "${1:-}"
		require_root
		load_env
		start_dovecot
		;;
	restart-dovecot)
		set_paths "${1:-}"
		require_root
		load_env
		stop_dovecot
		start_dovecot
		;;
	*) usage ;;
	esac
}

main "$@"
