//! Bad input gets a clear message and the right exit code.

use crate::util::{free_port, run, Server};

#[test]
fn unknown_model_exits_2_and_lists_the_models() {
    let (status, _, err) = run(&["serve", "--model", "nonsense"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("nonsense") && err.contains("blocking") && err.contains("threaded"),
        "{err}"
    );
}

#[test]
fn bad_flag_exits_2() {
    let (status, _, err) = run(&["serve", "--no-such-flag"]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("--no-such-flag"), "{err}");
}

#[test]
fn bad_address_exits_2() {
    for addr in ["not-an-address", "127.0.0.1:99999", "300.1.1.1:80"] {
        let (status, _, err) = run(&["serve", "--listen", addr]);
        assert_eq!(status.code(), Some(2), "{addr}: {err}");
        assert!(err.contains(addr), "{addr}: {err}");
    }
}

#[test]
fn port_in_use_exits_2_and_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, out, err) = run(&["serve", "--model", "threaded", "--listen", &addr]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains(&addr) && err.contains("in use"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(!out.contains("listening on"), "{out}");
}

#[test]
fn client_to_a_closed_port_exits_1() {
    let addr = format!("127.0.0.1:{}", free_port());
    let (status, _, err) = run(&["client", &addr, "--message", "hi"]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&addr) && err.to_lowercase().contains("refused"),
        "{err}"
    );
}

#[test]
fn stress_against_a_closed_port_exits_1_with_counts() {
    let addr = format!("127.0.0.1:{}", free_port());
    let (status, out, err) = run(&["stress", &addr, "-c", "3", "-n", "5"]);
    assert_eq!(status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains("3 of 3 connections failed (connect_failed 3)")
            && err.contains("0 of 15 scheduled messages verified"),
        "{err}"
    );
}

/// The epoll model listens with SO_REUSEPORT, which on its own would let a
/// second server join the first one's port and silently take half its
/// clients. It must be refused like any other port in use.
#[test]
fn a_second_epoll_server_on_the_same_port_exits_2() {
    let first = Server::start("epoll", &[]);
    let addr = first.addr.to_string();
    for model in ["epoll", "tokio"] {
        let (status, out, err) = run(&["serve", "--model", model, "--listen", &addr]);
        assert_eq!(status.code(), Some(2), "{model}: {err}");
        assert!(
            err.contains(&addr) && err.contains("in use"),
            "{model}: {err}"
        );
        assert!(!out.contains("listening on"), "{model}: {out}");
    }
}
