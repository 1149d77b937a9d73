//! `start -d` / `status` / `stop` with the real binary: pid files, second
//! start, stale files after `kill -9`, busy ports, a missing or failing gateway.

mod common;

use std::time::Duration;

use common::engine::{pid_alive, wait_gone, Setup, TestHome};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn detach_status_stop_round_trip_leaves_nothing() {
    let home = TestHome::with_gateway("https://127.0.0.2:9", None);
    let out = home.start(&["start", "--mitm", "-d"]);
    assert!(
        stdout(&out).contains("running in the background"),
        "{}",
        stdout(&out)
    );
    assert!(home.file("ccproxy.lock").exists());
    assert!(home.file("litellm.lock").exists());
    let sock = home.file("ccproxy.sock");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&sock).expect("socket").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "control socket mode");

    let st = home.status().expect("status --json");
    assert_eq!(st["schema"], 1);
    assert_eq!(st["mode"], "dual-gateway");
    assert_eq!(st["forward"], format!("127.0.0.1:{}", home.forward));
    assert_eq!(st["reverse"], format!("127.0.0.1:{}", home.reverse));
    let pid = st["pid"].as_u64().expect("pid") as u32;
    let gw_pid = st["gateway"]["pid"].as_u64().expect("gateway pid") as u32;
    assert!(pid_alive(pid) && pid_alive(gw_pid));
    assert!(st["storage"]["state"].is_string());
    assert_eq!(st["flows"]["completed"], 0);
    // The lock file's first line is the bare pid.
    let lock = std::fs::read_to_string(home.file("ccproxy.lock")).expect("lock");
    assert_eq!(lock.lines().next(), Some(pid.to_string().as_str()));

    let human = home.run(&["status"]);
    assert!(human.status.success());
    let text = stdout(&human);
    for needle in [
        "dual-gateway",
        &format!("pid {pid}"),
        "gateway",
        "storage",
        "llm",
    ] {
        assert!(text.contains(needle), "status lacks {needle}: {text}");
    }

    let out = home.run(&["stop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("pid {pid}")),
        "{}",
        stdout(&out)
    );
    assert!(wait_gone(pid, Duration::from_secs(5)), "engine still runs");
    assert!(
        wait_gone(gw_pid, Duration::from_secs(5)),
        "gateway still runs"
    );
    for f in ["ccproxy.lock", "litellm.lock", "ccproxy.sock"] {
        assert!(!home.file(f).exists(), "{f} left behind");
    }
    let after = home.run(&["status"]);
    assert_eq!(after.status.code(), Some(1));
    assert!(stderr(&after).contains("not running"), "{}", stderr(&after));
    assert!(std::fs::read_to_string(home.file("ccproxy.log"))
        .expect("log")
        .contains("engine ready"));
}

#[test]
fn second_start_says_so_and_exits_1() {
    let home = TestHome::new(&Setup::default());
    home.start(&["start", "--mitm", "-d"]);
    let pid = home.engine_pid();
    for args in [
        &["start", "--mitm", "-d"][..],
        &["start", "--mitm", "--headless"][..],
        &["mitm", "start", "-d"][..],
    ] {
        let out = home.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("already running") && stderr(&out).contains(&pid.to_string()),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(home.engine_pid(), pid, "the first engine is untouched");
}

#[test]
fn kill_9_then_start_again_works() {
    let home = TestHome::with_gateway("https://127.0.0.2:9", None);
    home.start(&["start", "--mitm", "-d"]);
    let st = home.status().expect("status");
    let pid = st["pid"].as_u64().expect("pid") as u32;
    let gw_pid = st["gateway"]["pid"].as_u64().expect("gateway pid") as u32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    assert!(wait_gone(pid, Duration::from_secs(5)));
    assert!(
        home.file("ccproxy.lock").exists(),
        "kill -9 leaves the pid file"
    );
    assert_eq!(home.run(&["status"]).status.code(), Some(1));

    home.start(&["start", "--mitm", "-d"]);
    let st = home.status().expect("status");
    assert_ne!(st["pid"].as_u64(), Some(u64::from(pid)));
    assert!(
        wait_gone(gw_pid, Duration::from_secs(5)),
        "the orphaned gateway was stopped"
    );
    let new_gw = st["gateway"]["pid"].as_u64().expect("gateway") as u32;
    assert!(pid_alive(new_gw));
}

#[test]
fn stop_after_kill_9_cleans_up_the_orphan_gateway() {
    let home = TestHome::with_gateway("https://127.0.0.2:9", None);
    home.start(&["start", "--mitm", "-d"]);
    let st = home.status().expect("status");
    let pid = st["pid"].as_u64().expect("pid") as u32;
    let gw_pid = st["gateway"]["pid"].as_u64().expect("gateway pid") as u32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    assert!(wait_gone(pid, Duration::from_secs(5)));
    let out = home.run(&["stop"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("stale"), "{}", stdout(&out));
    assert!(
        wait_gone(gw_pid, Duration::from_secs(5)),
        "gateway still runs"
    );
    for f in ["ccproxy.lock", "litellm.lock", "ccproxy.sock"] {
        assert!(!home.file(f).exists(), "{f} left behind");
    }
}

#[test]
fn busy_port_is_one_clear_line_and_exit_1() {
    let home = TestHome::new(&Setup::default());
    let _busy = std::net::TcpListener::bind(("127.0.0.1", home.forward)).expect("occupy");
    for args in [
        &["start", "--mitm", "-d"][..],
        &["mitm", "start", "--headless"][..],
    ] {
        let out = home.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("127.0.0.1:{} is already in use", home.forward)),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(
            !home.file("ccproxy.lock").exists(),
            "{args:?} left its pid file"
        );
    }
}

#[test]
fn without_litellm_start_says_how_and_mitm_goes_direct() {
    let home = TestHome::new(&Setup::default());
    let out = home
        .cmd(&["start"])
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("pip install") && err.contains("--mitm"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    let out = home
        .cmd(&["start", "--mitm", "-d"])
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let st = home.status().expect("status");
    assert_eq!(st["mode"], "dual-direct");
    assert!(st["gateway"].is_null());
    assert!(!home.file("litellm.lock").exists());
}

#[test]
fn a_gateway_that_dies_fails_start_with_its_log() {
    let home = TestHome::new(&Setup {
        gateway: Some(vec![
            "sh".into(),
            "-c".into(),
            "echo gateway-cannot-start-here >&2; exit 3".into(),
            "sh".into(),
        ]),
        api_base: Some("https://127.0.0.2:9".into()),
        ..Setup::default()
    });
    let out = home.run(&["start", "--mitm", "-d"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("gateway-cannot-start-here"), "{err}");
    assert!(!home.file("ccproxy.lock").exists());
    assert!(!home.file("litellm.lock").exists());
}

#[test]
fn gateway_without_its_config_file_is_explained() {
    let home = TestHome::new(&Setup {
        gateway: Some(vec![
            "python3".into(),
            common::engine::fake_gateway().display().to_string(),
        ]),
        ..Setup::default()
    });
    let out = home.run(&["start", "--mitm", "-d"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("config.yaml"), "{}", stderr(&out));
}

#[test]
fn mitm_start_status_stop() {
    let home = TestHome::new(&Setup::default());
    let port = common::engine::free_port();
    home.start(&["mitm", "start", "--port", &port.to_string(), "-d"]);
    let out = home.run(&["mitm", "status", "--json"]);
    assert!(out.status.success());
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(st["mode"], "forward");
    assert_eq!(st["forward"], format!("127.0.0.1:{port}"));
    assert!(st["reverse"].is_null());
    let pid = st["pid"].as_u64().expect("pid") as u32;
    let out = home.run(&["mitm", "stop"]);
    assert!(out.status.success());
    assert!(wait_gone(pid, Duration::from_secs(5)));
    assert_eq!(home.run(&["mitm", "status"]).status.code(), Some(1));
    assert!(!home.file("ccproxy.lock").exists());
}

#[test]
fn sigterm_to_a_foreground_engine_shuts_it_down_cleanly() {
    let home = TestHome::new(&Setup::default());
    let mut child = home
        .cmd(&["mitm", "start", "--headless"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while home.status().is_none() {
        // An engine that exits (a port taken meanwhile, say) says why here
        // instead of leaving the loop to run out.
        if child.try_wait().expect("try_wait").is_some() {
            let out = child.wait_with_output().expect("wait");
            panic!("the engine exited before answering: {}", stderr(&out));
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!("engine never answered; its stderr: {}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("sigterm");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("engine stopped"), "{}", stderr(&out));
    assert!(!home.file("ccproxy.lock").exists());
    assert!(!home.file("ccproxy.sock").exists());
}

#[test]
fn logs_show_the_engine_log() {
    let home = TestHome::new(&Setup::default());
    assert_eq!(home.run(&["logs"]).status.code(), Some(1), "no logs yet");
    home.start(&["mitm", "start", "-d"]);
    let out = home.run(&["logs", "-n", "5"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("ccproxy.log"), "{text}");
    assert!(text.contains("engine ready"), "{text}");
}

#[test]
fn start_without_mitm_runs_the_gateway_alone_on_the_litellm_port() {
    let home = TestHome::with_gateway("https://127.0.0.2:9", None);
    let out = home.run(&["start", "-d"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("127.0.0.1:{}", home.reverse)),
        "{}",
        stdout(&out)
    );
    let rec = std::fs::read_to_string(home.file("litellm.lock")).expect("litellm.lock");
    let pid: u32 = rec
        .lines()
        .next()
        .and_then(|l| l.parse().ok())
        .expect("pid");
    assert!(pid_alive(pid));
    std::net::TcpStream::connect(("127.0.0.1", home.reverse)).expect("gateway accepts");
    assert!(!home.file("ccproxy.lock").exists(), "no engine runs");

    let human = home.run(&["status"]);
    assert_eq!(human.status.code(), Some(0));
    assert!(
        stdout(&human).contains("LiteLLM running alone"),
        "{}",
        stdout(&human)
    );
    assert_eq!(
        home.run(&["status", "--json"]).status.code(),
        Some(1),
        "no engine document"
    );
    assert_eq!(home.run(&["mitm", "status"]).status.code(), Some(1));

    let again = home.run(&["start", "-d"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already running"),
        "{}",
        stderr(&again)
    );

    // The seed's basic workflow: the forward proxy beside it, then stop both.
    home.start(&["mitm", "start", "-d"]);
    assert_eq!(home.status().expect("engine")["mode"], "forward");
    assert!(home.run(&["mitm", "stop"]).status.success());
    assert!(pid_alive(pid), "mitm stop leaves the gateway");
    assert!(home.run(&["stop"]).status.success());
    assert!(wait_gone(pid, Duration::from_secs(5)));
    assert!(!home.file("litellm.lock").exists());
}

#[test]
fn stop_also_ends_what_the_gateway_spawned() {
    let mut setup = Setup::gateway("https://127.0.0.2:9", None);
    // Like LiteLLM's workers: a child of the gateway in its process group.
    let script = format!(
        "sleep 300 & echo $! > \"$CCP_TEST_HOME/grandchild.pid\"; exec python3 {} \"$@\"",
        common::engine::fake_gateway().display()
    );
    setup.gateway = Some(vec!["sh".into(), "-c".into(), script, "sh".into()]);
    let home = TestHome::new(&setup);
    let out = home
        .cmd(&["start", "--mitm", "-d"])
        .env("CCP_TEST_HOME", home.path())
        .output()
        .expect("start");
    assert!(out.status.success(), "{}", stderr(&out));
    let grandchild: u32 = std::fs::read_to_string(home.file("grandchild.pid"))
        .expect("grandchild pid")
        .trim()
        .parse()
        .expect("pid");
    assert!(pid_alive(grandchild));
    assert!(home.run(&["stop"]).status.success());
    assert!(
        wait_gone(grandchild, Duration::from_secs(5)),
        "the gateway's own child outlived stop"
    );
}
