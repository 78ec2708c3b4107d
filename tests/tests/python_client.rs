//! A real third-party Consul client, py-consul, drives the agent (tests/python/client_test.py):
//! KV with blocking reads and CAS, sessions and locks, services, TTL checks and health.
//!
//! The client comes from the system Python when it already has the pinned py-consul, else
//! from a virtualenv at `<workspace>/target/legate-pyenv` made from
//! tests/python/requirements.txt. When neither works the test fails and says why; it never
//! skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use legate_tests::{wait_for, workspace_root, Agent};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

fn python3() -> String {
    std::env::var("PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".to_string())
}

fn run(cmd: &mut Command) -> Result<Output, String> {
    cmd.stdin(Stdio::null()).output().map_err(|e| format!("cannot run {cmd:?}: {e}"))
}

fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The py-consul version pinned in requirements.txt.
fn pinned_version(requirements: &Path) -> String {
    let text = std::fs::read_to_string(requirements).expect("read requirements.txt");
    text.lines()
        .find_map(|l| l.trim().strip_prefix("py-consul=="))
        .map(|v| v.trim().to_string())
        .expect("requirements.txt pins py-consul==<version>")
}

/// Whether `python` imports `consul` from py-consul at exactly `version` (the unrelated,
/// older `python-consul` uses the same import name with another API).
fn has_py_consul(python: &str, version: &str) -> bool {
    let probe = format!(
        "import consul, importlib.metadata as m; assert m.version('py-consul') == {version:?}, m.version('py-consul')"
    );
    run(Command::new(python).args(["-c", &probe])).is_ok_and(|o| o.status.success())
}

/// A Python interpreter that has the pinned py-consul, installing it into a venv if needed.
fn python_with_client() -> PathBuf {
    let requirements = workspace_root().join("tests/python/requirements.txt");
    let version = pinned_version(&requirements);
    let system = python3();
    if has_py_consul(&system, &version) {
        return PathBuf::from(system);
    }
    let venv = workspace_root().join("target/legate-pyenv");
    let venv_python = venv.join("bin/python");
    let venv_python_str = venv_python.to_str().expect("utf-8 path").to_string();
    if venv_python.is_file() && has_py_consul(&venv_python_str, &version) {
        return venv_python;
    }
    // A missing, broken or outdated venv: make it anew.
    let _ = std::fs::remove_dir_all(&venv);
    let made = run(Command::new(&system).args(["-m", "venv"]).arg(&venv))
        .unwrap_or_else(|e| panic!("py-consul {version} is not importable by {system} and a venv cannot be made: {e}"));
    assert!(
        made.status.success(),
        "py-consul {version} is not importable by {system}, and `{system} -m venv {}` failed \
         (on Debian: apt-get install python3-venv): {}",
        venv.display(),
        describe(&made)
    );
    let installed = run(Command::new(&venv_python)
        .args(["-m", "pip", "install", "--disable-pip-version-check", "-q", "-r"])
        .arg(&requirements))
    .unwrap_or_else(|e| panic!("cannot run pip in {}: {e}", venv.display()));
    assert!(
        installed.status.success(),
        "installing {} into {} failed; the test needs PyPI (or a wheel cache) to get py-consul: {}",
        requirements.display(),
        venv.display(),
        describe(&installed)
    );
    assert!(
        has_py_consul(&venv_python_str, &version),
        "pip succeeded but {venv_python_str} still cannot import py-consul {version}"
    );
    venv_python
}

#[test]
fn py_consul_drives_kv_sessions_services_and_health() {
    // Set up.
    let python = python_with_client();
    let agent = Agent::start_dev(&[]);
    let script = workspace_root().join("tests/python/client_test.py");

    // Act: run the script with a deadline.
    let dir = std::env::temp_dir().join("legate-e2e");
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (out_path, err_path) = (dir.join(format!("{}-py.out", agent.node)), dir.join(format!("{}-py.err", agent.node)));
    let mut child = Command::new(&python)
        .arg(&script)
        .args(["127.0.0.1", &agent.port.to_string(), &agent.node])
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_TOKEN")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let status = wait_for(SCRIPT_TIMEOUT, || child.try_wait().expect("try_wait"));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);

    // Assert.
    let report = format!("--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    let status = status.unwrap_or_else(|| panic!("client_test.py ran longer than {SCRIPT_TIMEOUT:?}\n{report}"));
    assert!(status.success(), "client_test.py failed with {status}\n{report}");
    assert!(stdout.contains("ALL OK"), "client_test.py did not finish\n{report}");
}
