# Shared by scripts/demo.sh, scripts/test.sh and test/bench/run.sh: install
# what the project needs, and find an unprivileged user to run PostgreSQL as.
# Sourced, not run.

PG_MAJOR=15
PACKAGES="make gcc libc6-dev postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR
postgresql-$PG_MAJOR-pgtap libtap-parser-sourcehandler-pgtap-perl
libipc-run-perl perl python3-jsonschema"

# Run a command as root: directly when we are root, through sudo otherwise.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Install the Debian packages above, and those named as arguments (what a
# benchmark needs besides), that are missing (apt-get update only when
# something is).
install_dependencies() {
	local missing=()
	for p in $PACKAGES "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		echo "== installing: ${missing[*]}"
		as_root apt-get update -qq
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
	# PG_EVENTSTORE_PG_CONFIG points at another (say, a private) installation
	PG_BINDIR=$("${PG_EVENTSTORE_PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}" --bindir)
	export PG_CONFIG=$PG_BINDIR/pg_config
	export PATH="$PG_BINDIR:$PATH"
}

# PostgreSQL refuses to run as root.  As root, work in a copy of the checkout
# owned by the unprivileged user "postgres" (the checkout itself may sit
# where that user cannot reach, such as /root); otherwise work in place.
# Sets WORKDIR (PG_EVENTSTORE_WORKDIR overrides the copy's place) and RUN
# (the prefix that runs a command as that user).
prepare_workdir() {
	local name=$1 src
	src=$(pwd)
	if [ "$(id -u)" -eq 0 ]; then
		WORKDIR=${PG_EVENTSTORE_WORKDIR:-/tmp/pg_eventstore-$name}
		rm -rf "$WORKDIR"
		mkdir -p "$WORKDIR"
		tar -C "$src" --exclude=./.git --exclude=./tmp --exclude='./tmp_check*' \
			--exclude=./results --exclude=./output_iso --exclude='*.o' --exclude='*.so' \
			-cf - . | tar -C "$WORKDIR" -xf -
		chown -R postgres: "$WORKDIR"
		RUN="runuser -u postgres -- env PATH=$PATH PG_CONFIG=$PG_CONFIG"
	else
		WORKDIR=$src
		RUN="env"
	fi
}

# Build the extension in $WORKDIR as the unprivileged user and install it
# into PostgreSQL's directories as root.  Arguments go to both makes (say,
# COPT=... for compiler flags of one build).
build_and_install() {
	echo "== building"
	$RUN make -s clean >/dev/null
	$RUN make -s "$@"
	echo "== installing the extension"
	as_root env PATH="$PATH" make -s install PG_CONFIG="$PG_CONFIG" "$@" >/dev/null
}
