//! The dual wiring with a stand-in gateway: client → reverse listener →
//! gateway → forward listener → provider, both legs captured and joined by
//! the session id; and what the gateway's environment holds.

mod common;

use common::engine::{Provider, Setup, Subscriber, TestHome};

#[test]
fn gateway_environment_points_at_the_forward_listener_and_the_ca() {
    let home = TestHome::new(&common::engine::Setup {
        gateway: Some(vec![
            "python3".into(),
            common::engine::fake_gateway().display().to_string(),
        ]),
        api_base: Some("https://127.0.0.2:9".into()),
        gateway_extra: "    environment:\n      CCP_TEST_PLAIN: \"${CCP_TEST_SET}-x\"\n      CCP_TEST_DEFAULT: \"${CCP_TEST_UNSET:-fallback}\"\n",
        ..common::engine::Setup::default()
    });
    let out = home
        .cmd(&["start", "--mitm", "-d"])
        .env("CCP_TEST_SET", "value")
        .env("NO_PROXY", "127.0.0.2")
        .output()
        .expect("start");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::read_to_string(home.file("litellm.log")).expect("litellm.log");
    let env_line = log
        .lines()
        .find_map(|l| l.strip_prefix("ENV "))
        .expect("ENV line");
    let env: serde_json::Value = serde_json::from_str(env_line).expect("env json");
    let proxy = format!("http://127.0.0.1:{}", home.forward);
    let bundle = home.file("ca/bundle.pem").display().to_string();
    assert_eq!(env["HTTPS_PROXY"], proxy);
    assert_eq!(env["HTTP_PROXY"], proxy);
    assert_eq!(env["https_proxy"], proxy);
    assert_eq!(env["SSL_CERT_FILE"], bundle);
    assert_eq!(env["REQUESTS_CA_BUNDLE"], bundle);
    // Node adds NODE_EXTRA_CA_CERTS to its own roots: our CA alone (as for `ccproxy run`).
    let ca = home.file("ca/ca.pem").display().to_string();
    assert_eq!(env["NODE_EXTRA_CA_CERTS"], ca);
    assert_eq!(env["CCP_TEST_PLAIN"], "value-x");
    assert_eq!(env["CCP_TEST_DEFAULT"], "fallback");
    assert!(
        env["NO_PROXY"].is_null(),
        "an inherited NO_PROXY would bypass capture"
    );
    let st = home.status().expect("status");
    let argv: Vec<String> = serde_json::from_value(st["gateway"]["command"].clone()).expect("argv");
    let config = home.file("config.yaml").display().to_string();
    assert!(
        argv.windows(2)
            .any(|w| w[0] == "--config" && w[1] == config),
        "{argv:?}"
    );
}

#[test]
fn both_legs_of_one_call_are_captured_and_share_the_session_id() {
    let provider = Provider::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let db = rt.block_on(common::db::fresh_db());
    let home = TestHome::new(&Setup {
        database_url: Some(db.url.clone()),
        ..Setup::gateway(&provider.url(), Some(&provider.ca_file))
    });
    home.start(&["start", "--mitm", "-d"]);
    let mut feed = Subscriber::connect(&home);

    let session = "sess-4e1f";
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--noproxy", "*"])
        .args(["-H", &format!("x-claude-code-session-id: {session}")])
        .args(["-H", "content-type: application/json"])
        .args(["-d", "{\"model\":\"claude\",\"messages\":[]}"])
        .arg(format!("http://127.0.0.1:{}/v1/messages", home.reverse))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(answer["provider"], true);
    assert_eq!(answer["path"], "/v1/messages");
    assert_eq!(
        answer["session"], session,
        "the gateway forwarded the header"
    );

    let flows = feed.completed(2);
    let leg = |dir: &str| {
        flows
            .iter()
            .find(|f| f["direction"] == dir)
            .unwrap_or_else(|| panic!("no {dir} flow in {flows:?}"))
    };
    let (reverse, forward) = (leg("reverse"), leg("forward"));
    assert_eq!(reverse["session_id"], session);
    assert_eq!(forward["session_id"], session);
    assert_eq!(reverse["path"], "/v1/messages");
    assert_eq!(forward["path"], "/v1/messages");
    assert_eq!(forward["is_https"], true);
    assert_eq!(forward["server_port"], provider.addr.port());
    assert_eq!(reverse["status_code"], 200);
    assert_eq!(forward["status_code"], 200);

    let st = home.status().expect("status");
    assert_eq!(st["flows"]["completed"], 2);
    assert_eq!(st["storage"]["state"], "connected", "{st}");

    // Stopping flushes the writer; both legs are then joinable in SQL.
    assert!(home.run(&["stop"]).status.success());
    let rows = rt.block_on(async {
        let client = ccproxy::store::connect(&db.url).await.expect("connect");
        client
            .query(
                "SELECT direction, host FROM \"CCProxy_HttpTraces\" WHERE session_id = $1 ORDER BY direction",
                &[&session],
            )
            .await
            .expect("query")
    });
    let legs: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(legs.len(), 2, "{legs:?}");
    assert_eq!(legs[0].0, "forward");
    assert_eq!(legs[0].1, "127.0.0.2");
    assert_eq!(legs[1].0, "reverse");
}
