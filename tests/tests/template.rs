//! `legate template` against a dev agent: the talk's demo with `-dry` (an instance whose
//! check fails leaves the rendered config and comes back), a file render whose command runs
//! once per real change, `-once` with every data function and helper, and bad input.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use legate_tests::{free_port, legate_bin, run_cli_with, unique_node_name, wait_until, Agent};
use serde_json::json;

/// How long a change may take to show in a render on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(10);

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("legate-e2e").join(unique_node_name());
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

fn put_ok(agent: &Agent, path: &str, body: &str) {
    let r = agent.put(path, body);
    assert_eq!(r.status, 200, "PUT {path}: {}", r.text());
}

fn register(agent: &Agent, body: serde_json::Value) {
    put_ok(agent, "/v1/agent/service/register", &body.to_string());
}

fn passing(agent: &Agent, service: &str) -> usize {
    agent.get(&format!("/v1/health/service/{service}?passing")).json().as_array().map_or(0, Vec::len)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A `legate template` process left running; its output is collected as it comes, and it is
/// killed on drop (its output printed when the test failed).
struct Running {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Running {
    /// Starts `legate template -http-addr=<addr> <args…>` in `dir`.
    fn start(dir: &Path, addr: &str, args: &[&str]) -> Running {
        let mut child = Command::new(legate_bin())
            .arg("template")
            .arg(format!("-http-addr={addr}"))
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("CONSUL_HTTP_ADDR")
            .env_remove("CONSUL_HTTP_TOKEN")
            .spawn()
            .expect("spawn legate template");
        let stdout = collect(child.stdout.take().expect("piped stdout"));
        let stderr = collect(child.stderr.take().expect("piped stderr"));
        Running { child, stdout, stderr }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().expect("stdout lock").clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    fn still_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

fn collect(mut pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                return;
            }
            sink.lock().expect("output lock").push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- legate template stdout ---\n{}\n--- stderr ---\n{}", self.stdout(), self.stderr());
        }
    }
}

/// The renders a `-dry` run printed for `destination`, in order (`> destination` then the text).
fn dry_renders(stdout: &str, destination: &str) -> Vec<String> {
    let header = format!("> {destination}\n");
    stdout.split(header.as_str()).skip(1).map(str::to_string).collect()
}

/// Waits until a render equal to `want` appears after render number `after`; returns its number.
fn expect_render(run: &Running, after: Option<usize>, want: &str, why: &str) -> usize {
    let mut found = None;
    let ok = wait_until(DEADLINE, || {
        let renders = dry_renders(&run.stdout(), "haproxy.cfg");
        found = renders.iter().enumerate().skip(after.map_or(0, |a| a + 1)).find(|(_, r)| *r == want).map(|(i, _)| i);
        found.is_some()
    });
    assert!(
        ok,
        "{why}: no render {want:?} after render {after:?}; renders: {:?}",
        dry_renders(&run.stdout(), "haproxy.cfg")
    );
    found.expect("found")
}

#[test]
fn dry_run_follows_the_healthy_web_instances_as_checks_fail_and_recover() {
    // Set up: three web instances with TTL checks, all passing.
    let agent = Agent::start_dev(&[]);
    for n in 1..=3 {
        register(
            &agent,
            json!({"ID": format!("web{n}"), "Name": "web", "Address": format!("10.0.1.{n}"), "Port": 8000 + n,
                   "Check": {"TTL": "300s"}}),
        );
        put_ok(&agent, &format!("/v1/agent/check/pass/service:web{n}"), "");
    }
    assert!(wait_until(DEADLINE, || passing(&agent, "web") == 3), "three passing web instances");
    let dir = temp_dir();
    std::fs::write(
        dir.join("haproxy.ctmpl"),
        "{{range service \"web\"}}server {{.Node}} {{.Address}}:{{.Port}}\n{{end}}",
    )
    .unwrap();
    let line = |n: u32| format!("server {} 10.0.1.{n}:800{n}\n", agent.node);
    let all = format!("{}{}{}", line(1), line(2), line(3));
    let without_2 = format!("{}{}", line(1), line(3));

    // Act and assert: all three, then web2 fails and leaves, then it passes and returns.
    let mut run = Running::start(&dir, &agent.http_addr(), &["-dry", "-template", "haproxy.ctmpl:haproxy.cfg"]);
    let first = expect_render(&run, None, &all, "the three healthy instances");

    put_ok(&agent, "/v1/agent/check/fail/service:web2", "");
    let failed = expect_render(&run, Some(first), &without_2, "web2 failed");

    put_ok(&agent, "/v1/agent/check/pass/service:web2", "");
    expect_render(&run, Some(failed), &all, "web2 recovered");

    assert!(run.still_running(), "a run without -once keeps watching");
    assert!(!dir.join("haproxy.cfg").exists(), "-dry writes no file");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_file_render_runs_its_command_once_per_real_change() {
    // Set up: `port.cfg` shows one key of `app/`; `index.cfg` shows every key's ModifyIndex,
    // from the same `ls "app"` query, so its change proves that a render happened.
    let agent = Agent::start_dev(&[]);
    put_ok(&agent, "/v1/kv/app/port", "80");
    put_ok(&agent, "/v1/kv/app/other", "x");
    let dir = temp_dir();
    std::fs::write(
        dir.join("port.ctmpl"),
        "{{range ls \"app\"}}{{if eq .Key \"port\"}}port={{.Value}}\n{{end}}{{end}}",
    )
    .unwrap();
    std::fs::write(dir.join("index.ctmpl"), "{{range ls \"app\"}}{{.Key}}@{{.ModifyIndex}}\n{{end}}").unwrap();
    let (port_cfg, index_cfg, runs) = (dir.join("port.cfg"), dir.join("index.cfg"), dir.join("runs.log"));
    // An existing destination: replaced, but its mode is kept.
    std::fs::write(&port_cfg, "stale\n").unwrap();
    std::fs::set_permissions(&port_cfg, std::fs::Permissions::from_mode(0o600)).unwrap();

    let mut run = Running::start(
        &dir,
        &agent.http_addr(),
        &["-template", "port.ctmpl:port.cfg:cat port.cfg >> runs.log", "-template", "index.ctmpl:index.cfg"],
    );

    // The first render writes the file and runs the command.
    assert!(wait_until(DEADLINE, || read(&runs) == "port=80\n"), "first run; runs.log: {:?}", read(&runs));
    assert_eq!(read(&port_cfg), "port=80\n");
    assert_eq!(std::fs::metadata(&port_cfg).unwrap().permissions().mode() & 0o777, 0o600, "mode kept");

    // Writes that leave port.cfg as it is: the same value again, and another key. The agent
    // may keep `port`'s ModifyIndex for an unchanged value; `other`'s new one must show.
    assert!(read(&index_cfg).contains("port@"), "index.cfg: {:?}", read(&index_cfg));
    put_ok(&agent, "/v1/kv/app/port", "80");
    put_ok(&agent, "/v1/kv/app/other", "y");
    let other_index = agent.get("/v1/kv/app/other").json()[0]["ModifyIndex"].as_u64().expect("ModifyIndex");
    assert!(
        wait_until(DEADLINE, || read(&index_cfg).contains(&format!("other@{other_index}\n"))),
        "the writes were rendered: index.cfg {:?}, other@{other_index} expected",
        read(&index_cfg)
    );

    // A real change runs the command again, once.
    put_ok(&agent, "/v1/kv/app/port", "81");
    assert!(wait_until(DEADLINE, || read(&runs).contains("port=81")), "second run; runs.log: {:?}", read(&runs));
    assert_eq!(read(&runs), "port=80\nport=81\n", "one run per real change, none for the unchanged renders");
    assert_eq!(read(&port_cfg), "port=81\n");
    assert!(run.still_running());
    let mut files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(files, ["index.cfg", "index.ctmpl", "port.cfg", "port.ctmpl", "runs.log"], "no temporary file left");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn once_renders_every_function_and_helper_exactly() {
    // Set up.
    let agent = Agent::start_dev(&[]);
    for (k, v) in [("cfg/name", "legate"), ("cfg/port", "8500"), ("cfg/sub/deep", "1"), ("cfgother/x", "no")] {
        put_ok(&agent, &format!("/v1/kv/{k}"), v);
    }
    register(&agent, json!({"ID": "api1", "Name": "api", "Tags": ["green", "blue"], "Port": 9001}));
    register(&agent, json!({"ID": "api2", "Name": "api", "Tags": ["green"], "Port": 9002}));
    assert!(wait_until(DEADLINE, || passing(&agent, "api") == 2), "two api instances in the catalog");
    let dir = temp_dir();
    let template = dir.join("all.ctmpl");
    let out = dir.join("out/all.txt");
    std::fs::write(
        &template,
        r#"key={{key "cfg/name"}} missing=[{{key "cfg/nope"}}]
default={{keyOrDefault "cfg/nope" "fallback"}} {{keyOrDefault "cfg/name" "unused"}}
{{range ls "cfg/"}}ls {{.Key}}={{.Value}}
{{end}}{{range tree "cfg/"}}tree {{.Key}}={{.Value}}
{{end}}env={{env "LEGATE_TEMPLATE_TEST"}} unset=[{{env "LEGATE_TEMPLATE_UNSET"}}]
{{range services}}{{if eq .Name "api"}}tags={{join "," .Tags}} json={{toJSON .Tags}}{{end}}{{end}}
{{range $tag, $list := service "api" | byTag}}{{$tag}}:{{range $list}} {{.ID}}@{{.Port}}{{end}}
{{end}}{{range nodes}}{{if eq .Node "NODE"}}node ok{{end}}{{end}}
{{with service "tagged.api"}}{{else}}no tagged api{{end}}
"#
        .replace("NODE", &agent.node),
    )
    .unwrap();
    let spec = format!("{}:{}", template.display(), out.display());

    // Act.
    let result = run_cli_with(
        &["template", "-once", "-template", &spec],
        Some(&agent.http_addr()),
        &[("LEGATE_TEMPLATE_TEST", "from-env")],
    );

    // Assert.
    assert_eq!(result.code, 0, "stderr: {}", result.stderr);
    assert_eq!(
        read(&out),
        "key=legate missing=[]
default=fallback legate
ls name=legate
ls port=8500
tree name=legate
tree port=8500
tree sub/deep=1
env=from-env unset=[]
tags=blue,green json=[\"blue\",\"green\"]
blue: api1@9001
green: api1@9001 api2@9002
node ok
no tagged api
"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_is_a_clear_error_with_exit_code_1() {
    let dir = temp_dir();
    let nowhere = format!("127.0.0.1:{}", free_port());
    std::fs::write(dir.join("broken.ctmpl"), "line one\n{{if .X}}\n{{range}}\n").unwrap();
    std::fs::write(dir.join("unknown.ctmpl"), "{{nosuchfunc \"x\"}}").unwrap();
    std::fs::write(dir.join("ok.ctmpl"), "static\n").unwrap();
    let path = |name: &str| dir.join(name).display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["-template".into(), format!("{}:out", path("missing.ctmpl"))], "missing.ctmpl"),
        (vec!["-template".into(), path("ok.ctmpl")], "invalid -template"),
        (vec!["-template".into(), format!(":{}", path("out"))], "invalid -template"),
        (vec!["-template".into(), format!("{}:out", path("broken.ctmpl"))], "broken.ctmpl:3"),
        (vec!["-template".into(), format!("{}:out", path("unknown.ctmpl"))], "nosuchfunc"),
        (vec!["-once".into()], "-template"),
        (vec!["-wait".into(), "soon".into(), "-template".into(), format!("{}:out", path("ok.ctmpl"))], "invalid -wait"),
        (vec!["-nosuchflag".into()], "nosuchflag"),
    ];

    for (args, want) in cases {
        let mut full = vec!["template"];
        full.extend(args.iter().map(String::as_str));
        let out = run_cli_with(&full, Some(&nowhere), &[]);
        assert_eq!(out.code, 1, "{args:?}: stdout {} stderr {}", out.stdout, out.stderr);
        assert!(out.stderr.contains(want), "{args:?}: stderr {:?} should mention {want:?}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{args:?}: {}", out.stderr);
    }

    // An unreachable agent: the command keeps retrying and says why, without a panic.
    let mut why = String::new();
    std::fs::write(dir.join("kv.ctmpl"), "{{key \"k\"}}").unwrap();
    let mut run = Running::start(&dir, &nowhere, &["-once", "-template", "kv.ctmpl:kv.out"]);
    let said = wait_until(DEADLINE, || {
        why = run.stderr();
        why.matches("Error connecting").count() >= 2 && why.contains("retrying")
    });
    assert!(said, "the connection error is reported, and the request retried: {why:?}");
    assert!(run.still_running(), "-once waits for the data it needs");
    assert!(!why.contains("panicked"), "{why}");
    assert!(!dir.join("kv.out").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
