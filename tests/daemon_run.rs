//! `ccproxy run`: exit codes, the routing environment, signal forwarding, and
//! real clients (curl, Python urllib) captured through the running engine.

mod common;

use std::time::{Duration, Instant};

use common::engine::{Provider, Setup, Subscriber, TestHome};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn without_an_engine_the_command_runs_unchanged_with_its_exit_code() {
    let home = TestHome::new(&Setup::default());
    let out = home.run(&["run", "--", "sh", "-c", "echo \"[$HTTPS_PROXY]\"; exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    assert!(
        stderr(&out).contains("no engine is running"),
        "{}",
        stderr(&out)
    );

    let out = home.run(&["run", "--", "ccproxy-no-such-command-here", "x"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("command not found"),
        "{}",
        stderr(&out)
    );

    let out = home.run(&["run", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(128 + 15), "killed by a signal");
}

#[test]
fn with_an_engine_the_routing_environment_is_set() {
    let home = TestHome::new(&Setup::default());
    home.start(&["start", "--mitm", "-d"]);
    let script = "for v in HTTPS_PROXY HTTP_PROXY https_proxy http_proxy ANTHROPIC_BASE_URL \
                  OPENAI_BASE_URL OPENAI_API_BASE NO_PROXY NODE_EXTRA_CA_CERTS SSL_CERT_FILE \
                  REQUESTS_CA_BUNDLE CURL_CA_BUNDLE; do eval echo $v=\\$$v; done";
    let out = home.run(&["run", "--", "sh", "-c", script]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let home_dir = home.path().display().to_string();
    let want = [
        format!("HTTPS_PROXY=http://127.0.0.1:{}", home.forward),
        format!("http_proxy=http://127.0.0.1:{}", home.forward),
        format!("ANTHROPIC_BASE_URL=http://127.0.0.1:{}", home.reverse),
        format!("OPENAI_BASE_URL=http://127.0.0.1:{}/v1", home.reverse),
        "NO_PROXY=localhost,127.0.0.1,::1".to_string(),
        format!("NODE_EXTRA_CA_CERTS={home_dir}/ca/ca.pem"),
        format!("SSL_CERT_FILE={home_dir}/ca/bundle.pem"),
        format!("CURL_CA_BUNDLE={home_dir}/ca/bundle.pem"),
    ];
    for w in &want {
        assert!(text.lines().any(|l| l == w), "missing {w} in:\n{text}");
    }
}

#[test]
fn sigterm_is_forwarded_to_the_child() {
    let home = TestHome::new(&Setup::default());
    let ready = home.file("trap-ready");
    let script = format!(
        "trap 'exit 42' TERM; touch {}; while :; do sleep 0.05; done",
        ready.display()
    );
    let child = home
        .cmd(&["run", "--", "sh", "-c", &script])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "child never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("sigterm");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(42));
}

#[test]
fn curl_and_python_urllib_are_captured_through_run() {
    let provider = Provider::start();
    let home = TestHome::new(&Setup {
        upstream_ca: Some(&provider.ca_file),
        ..Setup::default()
    });
    home.start(&["mitm", "start", "-d"]);
    let mut feed = Subscriber::connect(&home);

    let url = format!("{}/v1/messages", provider.url());
    let out = home.run(&[
        "run",
        "--",
        "curl",
        "-sS",
        "--fail",
        "-d",
        "{\"hi\":1}",
        &url,
    ]);
    assert!(out.status.success(), "curl: {}", stderr(&out));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("provider json");
    assert_eq!(body["provider"], true);

    let script = format!(
        "import urllib.request,sys; r=urllib.request.urlopen('{}/py'); sys.stdout.write(r.read().decode())",
        provider.url()
    );
    let out = home.run(&["run", "--", "python3", "-c", &script]);
    assert!(out.status.success(), "python: {}", stderr(&out));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("provider json");
    assert_eq!(body["path"], "/py");

    let flows = feed.completed(2);
    let paths: Vec<&str> = flows.iter().filter_map(|f| f["path"].as_str()).collect();
    assert!(
        paths.contains(&"/v1/messages") && paths.contains(&"/py"),
        "{paths:?}"
    );
    for f in &flows {
        assert_eq!(f["direction"], "forward");
        assert_eq!(f["is_https"], true);
        assert_eq!(f["status_code"], 200);
    }
}
