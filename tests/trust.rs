//! Trust (issue 13): secrets never leave the proxy in the clear, the parsers
//! survive arbitrary input, and broken configuration or a closed pipe give one
//! line and an exit code, never a panic or a hang. Everything runs the real
//! binary, a real PostgreSQL and real sockets.

mod common;

#[path = "../fuzz/harness.rs"]
mod harness;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::engine::{wait_gone, Setup, Subscriber, TestHome};
use proptest::prelude::*;

// ---------------------------------------------------------------- fuzz entry points

/// The seed corpus of one fuzz target (checked in under `fuzz/corpus/`).
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.expect("entry").path()).expect("seed"))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// Every fuzz target once over its whole seed corpus (and any crash
/// reproducer kept there), as CI cannot run libFuzzer.
#[test]
fn fuzz_targets_pass_their_seed_corpora() {
    type Target = fn(&[u8]);
    let targets: &[(&str, Target)] = &[
        ("filter", harness::filter),
        ("config", harness::config),
        ("head", harness::head),
        ("sse", harness::sse),
        ("spool", harness::spool),
        ("control", harness::control),
        ("redact", harness::redact),
    ];
    for (name, run) in targets {
        for seed in corpus(name) {
            run(&seed);
        }
    }
}

/// Seeds mutated the way a fuzzer would: a seed with bytes flipped, cut,
/// spliced or repeated.
fn mutated(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = corpus(target);
    (
        0..seeds.len(),
        proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..4), 0..12),
        any::<u16>(),
    )
        .prop_map(move |(i, edits, cut)| {
            let mut b = seeds[i].clone();
            for (at, byte, kind) in edits {
                let at = usize::from(at) % (b.len() + 1);
                match kind {
                    0 if at < b.len() => b[at] = byte,
                    1 => b.insert(at, byte),
                    2 if at < b.len() => {
                        b.remove(at);
                    }
                    _ => {
                        let tail = b[at..].to_vec();
                        b.extend_from_slice(&tail[..tail.len().min(64)]);
                    }
                }
            }
            let keep = usize::from(cut) % (b.len() + 1);
            if cut % 3 == 0 {
                b.truncate(keep);
            }
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn filter_parser_never_panics(b in prop_oneof![mutated("filter"), any::<Vec<u8>>()]) {
        harness::filter(&b);
    }

    #[test]
    fn config_loader_never_panics(b in prop_oneof![mutated("config"), any::<Vec<u8>>()]) {
        harness::config(&b);
    }

    #[test]
    fn head_pre_reader_replays_every_byte(b in prop_oneof![mutated("head"), any::<Vec<u8>>()]) {
        harness::head(&b);
    }

    #[test]
    fn sse_parser_ignores_slicing(b in prop_oneof![mutated("sse"), any::<Vec<u8>>()]) {
        harness::sse(&b);
    }

    #[test]
    fn spool_reader_never_panics(b in prop_oneof![mutated("spool"), any::<Vec<u8>>()]) {
        harness::spool(&b);
    }

    #[test]
    fn control_reader_never_panics(b in prop_oneof![mutated("control"), any::<Vec<u8>>()]) {
        harness::control(&b);
    }

    #[test]
    fn redaction_is_idempotent(b in prop_oneof![mutated("redact"), any::<Vec<u8>>()]) {
        harness::redact(&b);
    }
}

// ---------------------------------------------------------------- config and CLI

/// Wait for `child` for at most `limit` (a hang guard, not a timing
/// assertion); kill it and fail past that.
fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            let out = child.wait_with_output().expect("output");
            eprintln!("{what}: {:?} in {:?}", out.status.code(), start.elapsed());
            return out;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ccproxy(home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(common::engine::bin());
    c.arg("--home").arg(home).args(args);
    for k in ["CCPROXY_HOME", "CCPROXY_MITM_PORT", "CCPROXY_MITM_UPSTREAM"] {
        c.env_remove(k);
    }
    c.env("CCPROXY_DATABASE_URL", common::engine::UNREACHABLE_DB);
    c.stdin(Stdio::null());
    c
}

/// Every way a configuration file can be hostile: one line on stderr,
/// exit 2, no panic, no hang, bounded memory (the 100,000-reuse alias bomb
/// and `/dev/zero` included).
#[test]
fn hostile_configs_give_one_line_and_exit_2() {
    let dir = tempfile::tempdir().expect("tmp");
    let home = dir.path();
    let deep_flow = format!("ccproxy: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let deep_block = format!(
        "ccproxy:\n  mitm:\n    excluded_hosts:\n      {}x\n",
        "- ".repeat(100_000)
    );
    let mut deep_indent = String::from("ccproxy:\n");
    for i in 1..200 {
        deep_indent.push_str(&" ".repeat(i));
        deep_indent.push_str("k:\n");
    }
    let bomb = format!(
        "ccproxy:\n  mitm:\n    excluded_hosts: &a [{}]\n    llm_hosts: [{}]\n",
        vec!["h.example"; 20].join(", "),
        vec!["*a"; 100_000].join(", ")
    );
    let mut laughs = String::from("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*l{}", i - 1); 10].join(", ");
        let _ = writeln!(laughs, "l{i}: &l{i} [{refs}]");
    }
    let big = format!("# {}\n", "x".repeat(2 << 20));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "wrong type",
            b"ccproxy:\n  mitm:\n    port: [1, 2]\n".to_vec(),
            "port",
        ),
        (
            "string for bool",
            b"ccproxy:\n  mitm:\n    capture_bodies: \"yes please\"\n".to_vec(),
            "line 3",
        ),
        (
            "huge number",
            b"ccproxy:\n  mitm:\n    port: 99999999999999999999999999\n".to_vec(),
            "port",
        ),
        (
            "huge size",
            b"ccproxy:\n  mitm:\n    max_body_size: 1e400\n".to_vec(),
            "max_body_size",
        ),
        (
            "huge buffer",
            b"ccproxy:\n  mitm:\n    buffer_size: 18446744073709551615\n".to_vec(),
            "buffer_size",
        ),
        (
            "negative port",
            b"ccproxy:\n  mitm:\n    port: -8081\n".to_vec(),
            "port",
        ),
        (
            "negative listen port",
            b"litellm:\n  port: -1\n".to_vec(),
            "port",
        ),
        (
            "unicode key",
            "ccproxy:\n  mitm:\n    h\u{f4}st: \u{1f980}\n"
                .as_bytes()
                .to_vec(),
            "line 3",
        ),
        (
            "bidi in a URL",
            "ccproxy:\n  upstream: \"http://a\u{202e}b c\"\n"
                .as_bytes()
                .to_vec(),
            "upstream",
        ),
        (
            "not UTF-8",
            b"ccproxy:\n  mitm:\n    host: \xff\xfe\n".to_vec(),
            "UTF-8",
        ),
        ("NUL bytes", b"ccproxy:\x00\x00\n".to_vec(), "bad.yaml"),
        ("tab indent", b"ccproxy:\n\tmitm: {}\n".to_vec(), "line 2"),
        ("deep flow nesting", deep_flow.into_bytes(), "nested deeper"),
        (
            "deep dash nesting",
            deep_block.into_bytes(),
            "nested deeper",
        ),
        (
            "deep indentation",
            deep_indent.into_bytes(),
            "nested deeper",
        ),
        ("alias bomb", bomb.into_bytes(), "aliases"),
        ("billion laughs", laughs.into_bytes(), "aliases"),
        (
            "unknown tag",
            b"ccproxy:\n  mitm:\n    port: !custom 8080\n".to_vec(),
            "unknown tag `!custom`",
        ),
        (
            "python tag",
            b"ccproxy: !!python/object:os.system [ls]\n".to_vec(),
            "unknown tag",
        ),
        ("too big", big.into_bytes(), "larger than 1024 KiB"),
        (
            "unknown key",
            b"ccproxy:\n  mitm:\n    redact_querys: [x]\n".to_vec(),
            "redact_querys",
        ),
    ];
    for (what, yaml, needle) in cases {
        let path = home.join("bad.yaml");
        std::fs::write(&path, &yaml).expect("write");
        let child = ccproxy(home, &["--config", path.to_str().expect("path"), "status"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let out = wait_bounded(child, Duration::from_secs(20), what);
        assert_one_line_exit_2(&out, what, needle);
    }
    // Not a file at all: an endless device and a directory.
    for (what, path, needle) in [
        (
            "/dev/zero",
            PathBuf::from("/dev/zero"),
            "larger than 1024 KiB",
        ),
        ("a directory", home.to_path_buf(), "directory"),
    ] {
        let child = ccproxy(
            home,
            &["--config", path.to_str().expect("path"), "db", "url"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
        let out = wait_bounded(child, Duration::from_secs(20), what);
        assert_one_line_exit_2(&out, what, needle);
    }
}

fn assert_one_line_exit_2(out: &Output, what: &str, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what}: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: one line, got: {err}");
    assert!(err.starts_with("ccproxy: "), "{what}: {err}");
    assert!(err.contains(needle), "{what}: `{err}` lacks `{needle}`");
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert!(
        err.len() < 600,
        "{what}: a short line, got {} bytes",
        err.len()
    );
}

/// YAML features a real config may use still work: a few aliases, quoted
/// `*` and `!`, core tags and block scalars holding anything.
#[test]
fn friendly_yaml_features_still_load() {
    let dir = tempfile::tempdir().expect("tmp");
    let yaml = "ccproxy:\n  mitm:\n    excluded_hosts: &hosts [\"*.internal\", 'it''s!']\n    llm_hosts: *hosts\n    host: !!str 127.0.0.1\n  litellm:\n    environment:\n      NOTE: |\n        anything !goes *here [[[[\n        & even this\n";
    let path = dir.path().join("ok.yaml");
    std::fs::write(&path, yaml).expect("write");
    let out = ccproxy(
        dir.path(),
        &["--config", path.to_str().expect("path"), "db", "url"],
    )
    .output()
    .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stdout nobody reads any more (`ccproxy db status | head -c1`) ends
/// the command quietly: no panic, no message, the exit code it would have had.
#[test]
fn broken_pipe_ends_commands_quietly() {
    let dir = tempfile::tempdir().expect("tmp");
    let home = dir.path();
    std::fs::write(home.join("ccproxy.log"), "engine log line\n".repeat(50_000)).expect("log");
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["db", "url"],
        &["db", "status"],
        &["ca"],
        &["logs", "-n", "50000"],
    ] {
        let normal = ccproxy(home, args).output().expect("run");
        let (read, write) = nix::unistd::pipe().expect("pipe");
        drop(read);
        let child = ccproxy(home, args)
            .stdout(Stdio::from(write))
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let out = wait_bounded(child, Duration::from_secs(30), &format!("{args:?}"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("Broken pipe"), "{args:?}: {err}");
        assert!(
            out.status.code() == Some(0) || out.status.code() == normal.status.code(),
            "{args:?}: {:?} (normally {:?}): {err}",
            out.status.code(),
            normal.status.code()
        );
    }
}

/// `stop` still stops the engine when the configuration has been broken
/// since it started (pid file and socket are found from the home alone).
#[test]
fn stop_works_with_a_broken_config() {
    let home = TestHome::new(&Setup::default());
    home.start(&["start", "--mitm", "-d"]);
    let pid = home.engine_pid();
    std::fs::write(home.file("ccproxy.yaml"), "ccproxy: [\n  mitm: !oops\n").expect("break config");
    let status = home.run(&["status"]);
    assert_eq!(status.status.code(), Some(2), "status does read the config");
    let out = home.run(&["stop"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stop failed: {err}");
    assert!(err.contains("stopping from the pid files"), "{err}");
    assert!(
        wait_gone(pid, Duration::from_secs(20)),
        "engine {pid} still alive"
    );
    assert!(!home.file("ccproxy.lock").exists());
}

// ---------------------------------------------------------------- secrets end to end

/// Secrets of every provider, as they are planted in the requests and
/// answers (made-up values of the real shapes).
const PLANTED: &[&str] = &[
    "3f9c2a7b1e5d4c8a9b0f6e2d1c7a5b3e",        // Azure api-key
    "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY", // Gemini x-goog-api-key
    "AIzaSyB-1aBcDeFgHiJkLmNoPqRsTuVwXyZ0123", // Gemini ?key=
    "IQoJb3JpZ2luX2VjEBYaCXVzLWVhc3QtMSJHMEUCIQDnV2eYz8Jd7", // x-amz-security-token
    "AKIAIOSFODNN7EXAMPL2",                    // X-Amz-Credential
    "fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024", // X-Amz-Signature
    "sk-ant-api03-Xq3Tz8Lm2Pw9Rk5Vn7Bc4Hd6Jf1Gs0Ya-Ue2Io8Op3As9Df4Gh7", // x-api-key
    "sk-ant-oat01-Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5", // Bearer
    "sk-proj-4fGh8JkL2mNp6QrS0tUv3WxY7zAb1CdE5fGh9IjK-LmNo_PqRs", // body api_key
    "CorrectHorseBatteryStaple-99",            // body password
    "ghs_9aB8cD7eF6gH5iJ4kL3mN2oP1qR0sT9uV8wX", // userinfo
    "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", // ?token=
    "at_9f8e7d6c5b4a39281706f5e4d3c2b1a0",     // response access_token
    "sess_0a1b2c3d4e5f60718293a4b5c6d7e8f9",   // response set-cookie
];

/// What must not appear: all of a secret but its first 3 and last 4 characters.
fn middle(secret: &str) -> &str {
    &secret[3..secret.len() - 4]
}

/// A marker that must appear in every artifact (in a body), so a scan that
/// finds no secret is known to have looked at the bodies.
const MARKER: &str = "trust-marker-body-7731";

/// Look for `needle` in `hay` as text, as lowercase hex (bytea in a
/// `pg_dump`) and inside every base64 JSON string (bodies in the spool and
/// on the control socket).
fn found_in(hay: &[u8], needle: &str) -> bool {
    let text = String::from_utf8_lossy(hay);
    if text.contains(needle) {
        return true;
    }
    let hex = needle.bytes().fold(String::new(), |mut h, b| {
        let _ = write!(h, "{b:02x}");
        h
    });
    if text.contains(&hex) {
        return true;
    }
    let b64 = regex::Regex::new(r#""([A-Za-z0-9+/]{8,}={0,2})""#).expect("regex");
    for c in b64.captures_iter(&text) {
        let decoded = base64::engine::general_purpose::STANDARD.decode(&c[1]);
        if decoded.is_ok_and(|d| String::from_utf8_lossy(&d).contains(needle)) {
            return true;
        }
    }
    false
}

fn assert_clean(what: &str, hay: &[u8]) {
    assert!(
        found_in(hay, MARKER),
        "{what}: the marker is missing, so the scan saw no bodies"
    );
    let leaked: Vec<&str> = PLANTED
        .iter()
        .copied()
        .filter(|s| found_in(hay, middle(s)))
        .collect();
    assert!(
        leaked.is_empty(),
        "{what} holds secrets in the clear: {leaked:?}"
    );
}

/// Send one raw HTTP/1.1 request to the forward listener; the answer's bytes.
fn raw_request(port: u16, head: &str, body: &str) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect proxy");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let req = format!(
        "{head}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// Secrets planted in requests (headers, URLs, userinfo, bodies) and in
/// answers (cookies, token fields) go through the real engine into the
/// spool (the database is down at first) and then the real database; none
/// of them is in the clear in the spool files, the database (`pg_dump`),
/// the engine log, a HAR export or the control-socket stream.
#[test]
fn planted_secrets_reach_no_storage_log_export_or_socket() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cluster = rt.block_on(common::db::own_cluster());
    let url = cluster.managed.url.clone();
    cluster.kill();
    let upstream = rt.block_on(common::upstream::http(|_req| async move {
        let body = format!(
            "{{\"access_token\":\"{}\",\"token_type\":\"bearer\",\"note\":\"{MARKER}\"}}",
            PLANTED[12]
        );
        hyper::Response::builder()
            .header("content-type", "application/json")
            .header("set-cookie", format!("session={}; HttpOnly", PLANTED[13]))
            .body(common::upstream::full(body))
            .expect("response")
    }));
    let up = upstream.addr.port();
    let home = TestHome::new(&Setup {
        database_url: Some(url.clone()),
        ..Setup::default()
    });
    home.start(&["start", "--mitm", "-d"]);
    let mut sub = Subscriber::connect(&home);

    let p = PLANTED;
    let requests = [
        (
            format!("POST http://127.0.0.1:{up}/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21 HTTP/1.1\r\nhost: 127.0.0.1\r\napi-key: {}\r\ncontent-type: application/json\r\n", p[0]),
            format!("{{\"model\":\"gpt-4o\",\"api_key\":\"{}\",\"note\":\"{MARKER}\"}}", p[8]),
        ),
        (
            format!("POST http://127.0.0.1:{up}/v1beta/models/gemini-2.0-flash:generateContent?alt=sse&key={} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-goog-api-key: {}\r\ncontent-type: application/json\r\n", p[2], p[1]),
            format!("{{\"contents\":[],\"password\":\"{}\",\"note\":\"{MARKER}\"}}", p[9]),
        ),
        (
            format!("GET http://127.0.0.1:{up}/bucket/o.json?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={}%2F20261202%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature={} HTTP/1.1\r\nhost: 127.0.0.1\r\nx-amz-security-token: {}\r\n", p[4], p[5], p[3]),
            String::new(),
        ),
        (
            format!("POST http://127.0.0.1:{up}/v1/messages HTTP/1.1\r\nhost: 127.0.0.1\r\nx-api-key: {}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\n", p[6], p[7]),
            format!("{{\"model\":\"claude-sonnet-4-5\",\"messages\":[{{\"role\":\"user\",\"content\":\"{MARKER} key {}\"}}]}}", p[6]),
        ),
        (
            format!("GET http://x-access-token:{}@127.0.0.1:{up}/repos/o/r?token={} HTTP/1.1\r\nhost: 127.0.0.1\r\n", p[10], p[11]),
            String::new(),
        ),
    ];
    for (head, body) in &requests {
        let answer = raw_request(home.forward, head, body);
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{head}: {}",
            String::from_utf8_lossy(&answer)
        );
        // What goes upstream is untouched: the provider saw the real secret.
        assert!(String::from_utf8_lossy(&answer).contains(p[12]));
    }
    let mut stream = Vec::new();
    let mut completed = 0;
    while completed < requests.len() {
        let v = sub.next();
        if v["event"] == "completed" {
            completed += 1;
        }
        stream.extend_from_slice(v.to_string().as_bytes());
        stream.push(b'\n');
    }
    assert_clean("the control-socket stream", &stream);

    // The database is down: the rows are in the spool. Copy it before replay.
    let spool_dir = home.file("spool");
    let deadline = Instant::now() + Duration::from_secs(60);
    let spool = loop {
        let mut all = Vec::new();
        for e in std::fs::read_dir(&spool_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            all.extend(std::fs::read(e.path()).unwrap_or_default());
        }
        if found_in(&all, "/repos/o/r") && found_in(&all, "/v1/messages") {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "the rows never reached the spool"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_clean("the spool files", &spool);

    // The database comes back: the spool is replayed into it.
    rt.block_on(cluster.restart());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let n = rt.block_on(async {
            let c = ccproxy::store::connect(&url).await.ok()?;
            let r = c
                .query_one(r#"SELECT count(*) FROM "CCProxy_HttpTraces""#, &[])
                .await
                .ok()?;
            Some(r.get::<_, i64>(0))
        });
        if n == Some(requests.len() as i64) {
            break;
        }
        assert!(Instant::now() < deadline, "rows in the database: {n:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let dump = Command::new(cluster.managed.bindir.join("pg_dump"))
        .arg("--dbname")
        .arg(&url)
        .output()
        .expect("pg_dump");
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    assert!(found_in(&dump.stdout, "CCProxy_HttpTraces"));
    assert_clean("the pg_dump", &dump.stdout);

    let har = home.file("flows.har");
    let out = home.run(&["export", "--har", har.to_str().expect("path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_clean("the HAR export", &std::fs::read(&har).expect("har"));

    let out = home.run(&["stop"]);
    assert!(out.status.success());
    let log = std::fs::read(home.file("ccproxy.log")).expect("engine log");
    assert!(
        found_in(&log, "/repos/o/r"),
        "the flow log lists the requests"
    );
    let leaked: Vec<&str> = PLANTED
        .iter()
        .copied()
        .filter(|s| found_in(&log, middle(s)))
        .collect();
    assert!(
        leaked.is_empty(),
        "the engine log holds secrets: {leaked:?}"
    );
    drop(upstream);
}
