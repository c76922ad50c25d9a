#!/usr/bin/env bash
# Build six OUTSIDE echo servers to compare ringport against, outside the
# repository, and print the `--server NAME=CMD` argument of `ringport bench`
# for each one.
#
#   scripts/peers.sh [DIR]        (default DIR: /tmp/ringport-peers)
#
# Servers, each a plain RFC 862 echo on 127.0.0.1:PORT:
#   tokio-echo     tokio's own examples/echo-tcp.rs (or examples/echo.rs), built
#                  as the example it is, inside the tokio workspace. Takes an
#                  ADDRESS, not a port: `tokio-echo 127.0.0.1:PORT`.
#   compio-echo    our own small main on compio (crates.io, io_uring driver),
#                  one task per connection; refuses to run on another driver.
#   liburing-echo  frevib/io_uring-echo-server (C, liburing) with a two-hunk
#                  patch (see URING_PATCH below): no buffer handed back to the
#                  pool for a read that selected none, and bind 127.0.0.1.
#   epoll-echo     frevib/epoll-echo-server (C, bare epoll, ONE thread) with a
#                  patch (see EPOLL_PATCH below): level-triggered, short and
#                  refused sends kept and finished on EPOLLOUT, sockets closed,
#                  no SIGPIPE, bind 127.0.0.1. Compare with `--workers 1`.
#   thread-echo    our own std::thread-per-connection Rust main (no crates):
#                  read into 16 KiB, write_all, TCP_NODELAY.
#   go-echo        our own goroutine-per-connection main: io.Copy(c, c).
#
# Sources (nothing is fetched unless it has to be, and only with git):
#   TOKIO_SRC       a tokio git directory (bare or a work tree's) or a plain
#                   source tree. Default: /work/.mirror/tokio-rs+tokio/repo if
#                   present, else `git clone` from GitHub if the network allows.
#   TOKIO_REV       commit to build (default: the pinned one below; falls back
#                   to HEAD with a warning if the git directory lacks it).
#   URING_ECHO_SRC  the same for frevib/io_uring-echo-server
#                   (default /work/.mirror/frevib+io_uring-echo-server/repo).
#   URING_ECHO_REV  commit to build (default: the pinned one below).
#   EPOLL_ECHO_SRC  the same for frevib/epoll-echo-server
#                   (default /work/.mirror/frevib+epoll-echo-server/repo).
#   EPOLL_ECHO_REV  commit to build (default: the pinned one below).
#   COMPIO_VERSION  exact compio version from crates.io (default 0.19.2).
#   PEERS_JOBS      cargo -j (default 1: the machine may be benchmarking).
#   PEERS_TIMEOUT   seconds allowed for each build (default 1800).
# Needs: cargo, git, gcc + make + liburing-dev, go (Debian golang-go).
# A server whose source or toolchain is missing is skipped, with the reason.
#
# Reproducibility: every build runs under `nice -n 19` and `timeout`, one at a
# time. Cargo lockfiles are kept in DIR/locks/; when one is there, the next
# build uses it with --locked, so a rebuild resolves the same crate versions.
# Copy DIR/locks/ along to rebuild the same elsewhere. DIR/MANIFEST.txt
# records sources, commits, tool versions, build commands and sha256 sums.
#
# Exit status: 0 when all six were built, 2 when some were skipped or failed.
# The script never writes into the repository.

set -euo pipefail

PINNED_TOKIO_REV=ea91b33ca57ff0581b38e735cc108f831bccbdaa      # 2026-08-20
PINNED_URING_ECHO_REV=dc00940baeec2ac577410dfa4d881d0852b01a08 # 2024-01-20
PINNED_EPOLL_ECHO_REV=22f325165c3e9749aca85a777cbb8f9b66ea7a27 # 2020-02-29

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
DIR=${1:-/tmp/ringport-peers}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd -P)
case "$DIR/" in
"$REPO"/*)
    echo "peers.sh: DIR ($DIR) is inside the repository ($REPO); pick a directory outside it" >&2
    exit 1
    ;;
esac
case "$DIR" in
*[[:space:]]*)
    echo "peers.sh: DIR must not contain whitespace (it goes into sh -c commands)" >&2
    exit 1
    ;;
esac

TOKIO_REV=${TOKIO_REV:-$PINNED_TOKIO_REV}
URING_ECHO_REV=${URING_ECHO_REV:-$PINNED_URING_ECHO_REV}
EPOLL_ECHO_REV=${EPOLL_ECHO_REV:-$PINNED_EPOLL_ECHO_REV}
COMPIO_VERSION=${COMPIO_VERSION:-0.19.2}
JOBS=${PEERS_JOBS:-1}
TMO=${PEERS_TIMEOUT:-1800}

mkdir -p "$DIR/bin" "$DIR/src" "$DIR/build" "$DIR/locks" "$DIR/cache"
MANIFEST=$DIR/MANIFEST.txt
: >"$MANIFEST.new"

say() { printf 'peers.sh: %s\n' "$*" >&2; }
note() { printf '%s\n' "$*" >>"$MANIFEST.new"; }
# Every build step goes through this: lowest priority, bounded in time.
build() { nice -n 19 timeout "$TMO" "$@"; }

# resolve_src NAME DEFAULT_PATH CLONE_URL USER_VALUE -> prints a source path or nothing
resolve_src() {
    local name=$1 default=$2 url=$3 given=$4
    if [ -n "$given" ]; then
        [ -e "$given" ] && { echo "$given"; return; }
        say "$name: source '$given' does not exist"
        return
    fi
    [ -e "$default" ] && { echo "$default"; return; }
    local clone=$DIR/src/$name.git
    if [ -d "$clone" ]; then echo "$clone"; return; fi
    if command -v git >/dev/null &&
        timeout 120 git clone --quiet --bare "$url" "$clone" >/dev/null 2>&1; then
        echo "$clone"
        return
    fi
    rm -rf "$clone"
    say "$name: no source (set the env var, or let 'git clone $url' work)"
}

# git_dir_of PATH -> prints the git directory of PATH (bare or work tree), or nothing
git_dir_of() {
    local p=$1
    if [ -d "$p/.git" ]; then echo "$p/.git"; return; fi
    if git --git-dir="$p" rev-parse --git-dir >/dev/null 2>&1; then echo "$p"; fi
}

# materialize NAME SRC REV DEST -> extracts the tree of REV into DEST and sets
# MAT_DESC to what was used. Keeps DEST when it already holds that commit.
MAT_DESC=
materialize() {
    local name=$1 src=$2 rev=$3 dest=$4 gd commit
    gd=$(git_dir_of "$src")
    if [ -n "$gd" ]; then
        if commit=$(git --git-dir="$gd" rev-parse --verify --quiet "$rev^{commit}"); then :; else
            commit=$(git --git-dir="$gd" rev-parse HEAD)
            say "$name: commit $rev is not in $src; using its HEAD $commit"
        fi
        MAT_DESC="git $gd @ $commit"
        if [ -f "$dest/.peers-source" ] && [ "$(cat "$dest/.peers-source")" = "$commit" ]; then
            return
        fi
        rm -rf "$dest"
        mkdir -p "$dest"
        git --git-dir="$gd" archive "$commit" | tar -x -C "$dest"
        echo "$commit" >"$dest/.peers-source"
    else
        MAT_DESC="unversioned copy of $src"
        rm -rf "$dest"
        mkdir -p "$dest"
        tar -C "$src" --exclude=./target --exclude=./.git -cf - . | tar -x -C "$dest"
        echo "copy" >"$dest/.peers-source"
    fi
}

# with_lock NAME SRCDIR -> copies a kept lockfile in; prints the cargo flag
with_lock() {
    local name=$1 srcdir=$2
    if [ -f "$DIR/locks/$name.Cargo.lock" ]; then
        cp "$DIR/locks/$name.Cargo.lock" "$srcdir/Cargo.lock"
        echo "--locked"
    fi
}
keep_lock() {
    local name=$1 srcdir=$2
    [ -f "$DIR/locks/$name.Cargo.lock" ] || cp "$srcdir/Cargo.lock" "$DIR/locks/$name.Cargo.lock"
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# --------------------------------------------------------------------------
build_tokio() {
    command -v cargo >/dev/null || { say "tokio: no cargo"; return 1; }
    local src
    src=$(resolve_src tokio /work/.mirror/tokio-rs+tokio/repo \
        https://github.com/tokio-rs/tokio.git "${TOKIO_SRC:-}")
    [ -n "$src" ] || return 1
    local tree=$DIR/src/tokio
    materialize tokio "$src" "$TOKIO_REV" "$tree"
    local ex
    if [ -f "$tree/examples/echo-tcp.rs" ]; then ex=echo-tcp
    elif [ -f "$tree/examples/echo.rs" ]; then ex=echo
    else say "tokio: neither examples/echo-tcp.rs nor examples/echo.rs in $tree"; return 1
    fi
    local locked
    locked=$(with_lock tokio "$tree")
    local cmd=(cargo build --release -j "$JOBS" ${locked:+"$locked"} -p examples --example "$ex")
    say "tokio: (cd $tree && CARGO_TARGET_DIR=$DIR/target-tokio nice -n 19 ${cmd[*]})"
    (cd "$tree" && build env CARGO_TARGET_DIR="$DIR/target-tokio" "${cmd[@]}")
    keep_lock tokio "$tree"
    install -m 755 "$DIR/target-tokio/release/examples/$ex" "$DIR/bin/tokio-echo"
    note "tokio-echo"
    note "  source:  tokio-rs/tokio, $MAT_DESC, examples/$ex.rs (unmodified)"
    note "  tokio:   $(grep -m1 '^version' "$tree/tokio/Cargo.toml")"
    note "  build:   cd $tree && CARGO_TARGET_DIR=$DIR/target-tokio nice -n 19 ${cmd[*]}"
    note "  rustc:   $(rustc --version)"
    note "  binary:  $DIR/bin/tokio-echo sha256 $(sha "$DIR/bin/tokio-echo")"
    note "  run:     tokio-echo 127.0.0.1:PORT"
}

# --------------------------------------------------------------------------
build_compio() {
    command -v cargo >/dev/null || { say "compio: no cargo"; return 1; }
    local d=$DIR/src/compio-echo
    mkdir -p "$d/src"
    cat >"$d/Cargo.toml" <<EOF
[package]
name = "compio-echo"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
# io_uring only: no "polling" fallback driver is compiled in.
compio = { version = "=$COMPIO_VERSION", default-features = false, features = ["runtime", "io-uring", "net", "io", "macros"] }

# Its own workspace, whatever directory DIR is under.
[workspace]
EOF
    cat >"$d/src/main.rs" <<'EOF'
//! RFC 862 echo on compio's io_uring driver, for `ringport bench --server`.
//!
//!     compio-echo PORT        (listens on 127.0.0.1:PORT)
//!
//! One single-threaded compio runtime; one task per connection that reads
//! into a 16 KiB buffer (ringport's own size) and writes it all back, until
//! end of stream; then the socket is dropped, which closes it.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::exit;

use compio::buf::BufResult;
use compio::driver::DriverType;
use compio::io::{AsyncRead, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};
use compio::runtime::Runtime;

const BUF_SIZE: usize = 16 * 1024;

#[compio::main]
async fn main() {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        Some(Ok(port)) => port,
        _ => {
            eprintln!("usage: compio-echo PORT");
            exit(2);
        }
    };
    let driver = Runtime::with_current(|rt| rt.driver_type());
    if driver != DriverType::IoUring {
        eprintln!("compio-echo: the driver is {driver:?}, not io_uring");
        exit(1);
    }
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("compio-echo: bind {addr}: {e}");
            exit(1);
        }
    };
    eprintln!("compio-echo: listening on {addr} ({driver:?})");
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => compio::runtime::spawn(serve(stream)).detach(),
            Err(e) => eprintln!("compio-echo: accept: {e}"),
        }
    }
}

async fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(BUF_SIZE);
    loop {
        // `read` fills the buffer from its start but only ever raises its
        // length (advance_to), so empty it first: after a short read the
        // length must be that read's, not the longest read's so far.
        buf.clear();
        let BufResult(res, b) = stream.read(buf).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let BufResult(res, b) = stream.write_all(buf).await;
        buf = b;
        if res.is_err() {
            return;
        }
    }
}
EOF
    local locked
    locked=$(with_lock compio "$d")
    local cmd=(cargo build --release -j "$JOBS" ${locked:+"$locked"} --manifest-path "$d/Cargo.toml")
    say "compio: CARGO_TARGET_DIR=$DIR/target-compio nice -n 19 ${cmd[*]}"
    build env CARGO_TARGET_DIR="$DIR/target-compio" "${cmd[@]}"
    keep_lock compio "$d"
    install -m 755 "$DIR/target-compio/release/compio-echo" "$DIR/bin/compio-echo"
    note "compio-echo"
    note "  source:  our own $d/src/main.rs, written by this script"
    note "  crates:  $(grep -A1 -E '^name = "compio(-driver|-runtime|-net|-io)?"$' "$d/Cargo.lock" | grep -v -- -- | paste -sd' ' | sed 's/name = //g; s/ version = /@/g; s/"//g')"
    note "  build:   CARGO_TARGET_DIR=$DIR/target-compio nice -n 19 ${cmd[*]}"
    note "  rustc:   $(rustc --version)"
    note "  binary:  $DIR/bin/compio-echo sha256 $(sha "$DIR/bin/compio-echo")"
    note "  run:     compio-echo PORT"
}

# --------------------------------------------------------------------------
# The patch to frevib/io_uring-echo-server, applied in DIR/build only.
# Hunk 1: a read that completes with res <= 0 (EOF or an error) selected no
#   buffer (IORING_CQE_F_BUFFER is clear, so cqe->flags >> 16 is 0), yet the
#   original hands buffer `bid` (0) back to the pool each time. Buffer 0 then
#   sits in the pool twice, or while still in use by another connection, and
#   one connection's bytes are echoed to another. Only give a buffer back when
#   the completion actually selected one.
# Hunk 2: bind 127.0.0.1 instead of INADDR_ANY (all addresses), like the other
#   servers here. The port is already taken from argv[1].
URING_PATCH=$(cat <<'EOF'
--- a/io_uring_echo_server.c
+++ b/io_uring_echo_server.c
@@ -56,7 +56,7 @@
     memset(&serv_addr, 0, sizeof(serv_addr));
     serv_addr.sin_family = AF_INET;
     serv_addr.sin_port = htons(portno);
-    serv_addr.sin_addr.s_addr = INADDR_ANY;
+    serv_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
 
     // bind and listen
     if (bind(sock_listen_fd, (struct sockaddr *)&serv_addr, sizeof(serv_addr)) < 0) {
@@ -150,7 +150,8 @@
                 int bid = cqe->flags >> 16;
                 if (cqe->res <= 0) {
                     // read failed, re-add the buffer
-                    add_provide_buf(&ring, bid, group_id);
+                    if (cqe->flags & IORING_CQE_F_BUFFER)
+                        add_provide_buf(&ring, bid, group_id);
                     // connection closed or error
                     close(conn_i.fd);
                 } else {
EOF
)

build_uring() {
    command -v gcc >/dev/null || { say "liburing-echo: no gcc"; return 1; }
    command -v make >/dev/null || { say "liburing-echo: no make"; return 1; }
    command -v patch >/dev/null || { say "liburing-echo: no patch"; return 1; }
    if [ ! -f /usr/include/liburing.h ]; then
        say "liburing-echo: no /usr/include/liburing.h (apt-get install liburing-dev)"
        return 1
    fi
    local src
    src=$(resolve_src io_uring-echo-server /work/.mirror/frevib+io_uring-echo-server/repo \
        https://github.com/frevib/io_uring-echo-server.git "${URING_ECHO_SRC:-}")
    [ -n "$src" ] || return 1
    local b=$DIR/build/liburing-echo
    rm -rf "$b"
    materialize liburing-echo "$src" "$URING_ECHO_REV" "$b"
    printf '%s\n' "$URING_PATCH" >"$DIR/build/liburing-echo.patch"
    patch -d "$b" -p1 --forward --no-backup-if-mismatch <"$DIR/build/liburing-echo.patch" >&2
    local cmd=(make -C "$b" CC=gcc io_uring_echo_server)
    say "liburing-echo: nice -n 19 ${cmd[*]}"
    build "${cmd[@]}" >&2
    install -m 755 "$b/io_uring_echo_server" "$DIR/bin/liburing-echo"
    note "liburing-echo"
    note "  source:  frevib/io_uring-echo-server, $MAT_DESC"
    note "  patch:   $DIR/build/liburing-echo.patch (EOF/error read returns no buffer; bind 127.0.0.1)"
    note "  build:   nice -n 19 ${cmd[*]}   (the Makefile's: gcc io_uring_echo_server.c -Wall -O2 -D_GNU_SOURCE -luring)"
    note "  gcc:     $(gcc --version | head -1); liburing-dev $(dpkg-query -W -f='${Version}' liburing-dev 2>/dev/null || echo '?')"
    note "  binary:  $DIR/bin/liburing-echo sha256 $(sha "$DIR/bin/liburing-echo")"
    note "  run:     liburing-echo PORT"
}

# --------------------------------------------------------------------------
# The patch to frevib/epoll-echo-server, applied in DIR/build only. Upstream
# stalls on any message over 2 KiB and leaks every socket (both seen under
# `ringport stress`); the other fixes are from reading the code.
# Hunk 1: a per-fd record of bytes read but not yet sent (a short send). The
#   read buffer stays the one shared stack buffer; only a remainder is copied.
# Hunk 2: bind 127.0.0.1 instead of INADDR_ANY, like the other servers here.
# Hunk 3: level-triggered instead of EPOLLET. Upstream makes ONE 2 KiB recv per
#   edge, so a message over 2 KiB that arrived in one edge stalls until the
#   peer sends again (it never does: it waits for its echo). Level-triggered,
#   one recv per wakeup is correct without an extra recv to reach EAGAIN.
#   An fd past the table is closed at once.
# Hunk 4: the connection handler.
#   - send(2) result used: upstream ignores it, so a short send or EAGAIN on
#     a full socket buffer drops the rest of the bytes. The rest is kept in
#     pend[fd], the fd waits for EPOLLOUT only (no reads meanwhile: back-
#     pressure), and goes back to EPOLLIN once it is all sent.
#   - recv EAGAIN (a spurious wakeup) is not taken for a closed connection.
#   - close(2) instead of shutdown(SHUT_RDWR): upstream never closed a socket,
#     so every connection leaked its fd until accept failed and exit()ed.
#   - MSG_NOSIGNAL: a send to a peer that has gone must not kill the server.
EPOLL_PATCH=$(cat <<'EOF'
--- a/epoll_echo_server.c
+++ b/epoll_echo_server.c
@@ -12,6 +12,10 @@
 #define BACKLOG 512
 #define MAX_EVENTS 128
 #define MAX_MESSAGE_LEN 2048
+#define MAX_FDS 65536
+
+// bytes read but not yet echoed, per connection fd (send was short)
+struct pending { char *buf; int off, len; } pend[MAX_FDS];
 
 void error(char* msg);
 
@@ -41,7 +45,7 @@
 	memset((char *)&server_addr, 0, sizeof(server_addr));
 	server_addr.sin_family = AF_INET;
 	server_addr.sin_port = htons(portno);
-	server_addr.sin_addr.s_addr = INADDR_ANY;
+	server_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
 	
 
 	// bind socket and listen for connections
@@ -89,7 +93,11 @@
 					error("Error accepting new connection..\n");
 				}
 
-				ev.events = EPOLLIN | EPOLLET;
+				if (sock_conn_fd >= MAX_FDS) {
+					close(sock_conn_fd);
+					continue;
+				}
+				ev.events = EPOLLIN;
 				ev.data.fd = sock_conn_fd;
 				if (epoll_ctl(epollfd, EPOLL_CTL_ADD, sock_conn_fd, &ev) == -1)
 				{
@@ -99,16 +107,50 @@
 			else
 			{
 				int newsockfd = events[i].data.fd;
-				int bytes_received = recv(newsockfd, buffer, MAX_MESSAGE_LEN, 0);
-				if (bytes_received <= 0)
+				struct pending *p = &pend[newsockfd];
+				if (p->buf)
 				{
-					epoll_ctl(epollfd, EPOLL_CTL_DEL, newsockfd, NULL);
-					shutdown(newsockfd, SHUT_RDWR);
+					int n = send(newsockfd, p->buf + p->off, p->len - p->off, MSG_NOSIGNAL);
+					if (n < 0 && errno == EAGAIN)
+						continue;
+					if (n < 0)
+						goto close_conn;
+					p->off += n;
+					if (p->off == p->len)
+					{
+						free(p->buf);
+						p->buf = NULL;
+						ev.events = EPOLLIN;
+						ev.data.fd = newsockfd;
+						epoll_ctl(epollfd, EPOLL_CTL_MOD, newsockfd, &ev);
+					}
+					continue;
 				}
-				else
+				int bytes_received = recv(newsockfd, buffer, MAX_MESSAGE_LEN, 0);
+				if (bytes_received < 0 && errno == EAGAIN)
+					continue;
+				if (bytes_received <= 0)
+					goto close_conn;
+				int n = send(newsockfd, buffer, bytes_received, MSG_NOSIGNAL);
+				if (n < 0 && errno == EAGAIN)
+					n = 0;
+				if (n < 0)
+					goto close_conn;
+				if (n < bytes_received)
 				{
-					send(newsockfd, buffer, bytes_received, 0);
+					p->len = bytes_received - n;
+					p->off = 0;
+					p->buf = malloc(p->len);
+					memcpy(p->buf, buffer + n, p->len);
+					ev.events = EPOLLOUT;
+					ev.data.fd = newsockfd;
+					epoll_ctl(epollfd, EPOLL_CTL_MOD, newsockfd, &ev);
 				}
+				continue;
+			close_conn:
+				free(p->buf);
+				p->buf = NULL;
+				close(newsockfd);
 			}
 		}
 	}
EOF
)

build_epoll() {
    command -v gcc >/dev/null || { say "epoll-echo: no gcc"; return 1; }
    command -v patch >/dev/null || { say "epoll-echo: no patch"; return 1; }
    local src
    src=$(resolve_src epoll-echo-server /work/.mirror/frevib+epoll-echo-server/repo \
        https://github.com/frevib/epoll-echo-server.git "${EPOLL_ECHO_SRC:-}")
    [ -n "$src" ] || return 1
    local b=$DIR/build/epoll-echo
    rm -rf "$b"
    materialize epoll-echo "$src" "$EPOLL_ECHO_REV" "$b"
    printf '%s\n' "$EPOLL_PATCH" >"$DIR/build/epoll-echo.patch"
    patch -d "$b" -p1 --forward --no-backup-if-mismatch <"$DIR/build/epoll-echo.patch" >&2
    # The Makefile's own command (its only target, `all`).
    local cmd=(make -C "$b" all)
    say "epoll-echo: nice -n 19 ${cmd[*]}"
    build "${cmd[@]}" >&2
    install -m 755 "$b/epoll_echo_server" "$DIR/bin/epoll-echo"
    note "epoll-echo"
    note "  source:  frevib/epoll-echo-server, $MAT_DESC"
    note "  patch:   $DIR/build/epoll-echo.patch (level-triggered; short sends finished on EPOLLOUT; close; MSG_NOSIGNAL; bind 127.0.0.1)"
    note "  threads: 1 (one epoll loop, 2 KiB shared read buffer, no TCP_NODELAY): compare with --workers 1"
    note "  build:   nice -n 19 ${cmd[*]}   (the Makefile's: gcc -Wall -O2 -D_GNU_SOURCE epoll_echo_server.c)"
    note "  gcc:     $(gcc --version | head -1)"
    note "  binary:  $DIR/bin/epoll-echo sha256 $(sha "$DIR/bin/epoll-echo")"
    note "  run:     epoll-echo PORT"
}

# --------------------------------------------------------------------------
build_thread() {
    command -v cargo >/dev/null || { say "thread-echo: no cargo"; return 1; }
    local d=$DIR/src/thread-echo
    mkdir -p "$d/src"
    cat >"$d/Cargo.toml" <<'EOF'
[package]
name = "thread-echo"
version = "0.1.0"
edition = "2021"
publish = false

# No dependencies: std only.

# Its own workspace, whatever directory DIR is under.
[workspace]
EOF
    cat >"$d/src/main.rs" <<'EOF'
//! RFC 862 echo with a plain `std::thread` per connection, for
//! `ringport bench --server`.
//!
//!     thread-echo PORT        (listens on 127.0.0.1:PORT)
//!
//! Each accepted connection gets its own thread (default stack size) that
//! reads into a 16 KiB buffer (ringport's own size) and writes what it read
//! back with `write_all`, until end of stream or an error; dropping the
//! stream closes it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::exit;
use std::thread;

const BUF_SIZE: usize = 16 * 1024;

fn main() {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        Some(Ok(port)) => port,
        _ => {
            eprintln!("usage: thread-echo PORT");
            exit(2);
        }
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("thread-echo: bind {addr}: {e}");
            exit(1);
        }
    };
    eprintln!("thread-echo: listening on {addr}");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = thread::Builder::new().spawn(move || serve(stream)) {
                    // The stream was moved into the closure and is dropped
                    // with it: the connection is closed.
                    eprintln!("thread-echo: spawn: {e}");
                }
            }
            Err(e) => eprintln!("thread-echo: accept: {e}"),
        }
    }
}

fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        if stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}
EOF
    # No dependencies, so no lockfile to keep.
    local cmd=(cargo build --release -j "$JOBS" --offline --manifest-path "$d/Cargo.toml")
    say "thread-echo: CARGO_TARGET_DIR=$DIR/target-thread nice -n 19 ${cmd[*]}"
    build env CARGO_TARGET_DIR="$DIR/target-thread" "${cmd[@]}"
    install -m 755 "$DIR/target-thread/release/thread-echo" "$DIR/bin/thread-echo"
    note "thread-echo"
    note "  source:  our own $d/src/main.rs, written by this script (std only)"
    note "  threads: one per connection, default stack; 16 KiB buffer; TCP_NODELAY"
    note "  build:   CARGO_TARGET_DIR=$DIR/target-thread nice -n 19 ${cmd[*]}"
    note "  rustc:   $(rustc --version)"
    note "  binary:  $DIR/bin/thread-echo sha256 $(sha "$DIR/bin/thread-echo")"
    note "  run:     thread-echo PORT"
}

# --------------------------------------------------------------------------
build_go() {
    command -v go >/dev/null || { say "go-echo: no go (apt-get install golang-go)"; return 1; }
    local d=$DIR/src/go-echo
    mkdir -p "$d"
    printf 'module goecho\n\ngo 1.19\n' >"$d/go.mod"
    cat >"$d/main.go" <<'EOF'
// go-echo PORT: RFC 862 echo on 127.0.0.1:PORT, one goroutine per connection.
package main

import (
	"io"
	"log"
	"net"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: go-echo PORT")
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", os.Args[1]))
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Print(err)
			continue
		}
		// Go sets TCP_NODELAY on every TCP connection already; said again here.
		c.(*net.TCPConn).SetNoDelay(true)
		go func() { io.Copy(c, c); c.Close() }()
	}
}
EOF
    local cmd=(go build -trimpath -o "$DIR/bin/go-echo" .)
    say "go-echo: (cd $d && nice -n 19 ${cmd[*]})"
    (cd "$d" && build env GOCACHE="$DIR/cache/go-build" GOPATH="$DIR/cache/gopath" \
        GOFLAGS= GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0 "${cmd[@]}")
    note "go-echo"
    note "  source:  our own $d/main.go, written by this script"
    note "  build:   cd $d && CGO_ENABLED=0 GOPROXY=off nice -n 19 ${cmd[*]}"
    note "  go:      $(go version)"
    note "  binary:  $DIR/bin/go-echo sha256 $(sha "$DIR/bin/go-echo")"
    note "  run:     go-echo PORT"
}

# --------------------------------------------------------------------------
declare -A ARG=(
    [tokio]="--server \"tokio-example=$DIR/bin/tokio-echo 127.0.0.1:{port}\""
    [compio]="--server \"compio=$DIR/bin/compio-echo {port}\""
    [uring]="--server \"liburing-echo=$DIR/bin/liburing-echo {port}\""
    [epoll]="--server \"epoll-echo=$DIR/bin/epoll-echo {port}\""
    [thread]="--server \"thread-echo=$DIR/bin/thread-echo {port}\""
    [go]="--server \"go=$DIR/bin/go-echo {port}\""
)
ok=()
bad=()
# One build at a time, each in a subshell with errexit on, so that one failed
# or skipped server does not stop the others.
for s in tokio compio uring epoll thread go; do
    set +e
    (set -e; "build_$s")
    rc=$?
    set -e
    if [ "$rc" -eq 0 ]; then ok+=("$s"); else bad+=("$s"); say "$s: NOT built (see above)"; fi
done
mv "$MANIFEST.new" "$MANIFEST"

echo "# built into $DIR/bin; details in $MANIFEST"
echo "# arguments for ringport bench:"
for s in "${ok[@]}"; do echo "${ARG[$s]}"; done
if [ "${#bad[@]}" -gt 0 ]; then
    echo "# skipped or failed: ${bad[*]}"
    exit 2
fi
