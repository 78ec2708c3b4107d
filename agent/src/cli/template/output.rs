//! Where a render goes: a file replaced atomically, or standard output (`-dry`); and the
//! command run after a file changed.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a command may run before it is killed (consul-template's default).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The mode of a file written for the first time.
const FILE_MODE_DEFAULT: u32 = 0o644;

/// Pause between two looks at a running command.
const COMMAND_POLL: Duration = Duration::from_millis(20);

/// What the destination holds now (`None`: no file, or not readable as text).
pub fn current(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// Replaces `path` with `contents` atomically: a temporary file in the same directory, synced,
/// then renamed over it, so a reader sees the old file or the new one, never a part. The
/// previous file's permissions are kept; the parent directory is created if missing.
pub fn write_atomic(path: &Path, contents: &str) -> Result<(), String> {
    let describe = |what: &str, e: std::io::Error| format!("{what} {}: {e}", path.display());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => Path::new(".").to_path_buf(),
    };
    fs::create_dir_all(&dir).map_err(|e| describe("creating the directory of", e))?;
    let mode = fs::metadata(path).map(|m| m.permissions().mode()).unwrap_or(FILE_MODE_DEFAULT);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let temp = dir.join(format!(".{name}.{}.legate-tmp", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&temp)?;
        file.write_all(contents.as_bytes())?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&temp);
        return Err(describe("writing", e));
    }
    Ok(())
}

/// Prints a dry-run render as consul-template does: `> destination`, then the contents.
pub fn print_dry(destination: &Path, contents: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    out.write_all(format!("> {}\n{contents}", destination.display()).as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("writing to standard output: {e}"))
}

/// Runs `command` with `sh -c`, sharing our standard output and error, and waits for it (at
/// most [`COMMAND_TIMEOUT`], then it is killed). A failure is returned as a message.
pub fn run_command(command: &str) -> Result<(), String> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("running {command:?}: {e}"))?;
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("command {command:?} failed: {status}")),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("command {command:?} did not finish within {COMMAND_TIMEOUT:?} and was killed"));
            }
            Ok(None) => std::thread::sleep(COMMAND_POLL),
            Err(e) => return Err(format!("waiting for {command:?}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("legate-template-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn an_atomic_write_keeps_the_previous_mode_and_leaves_no_temporary_file() {
        let dir = temp_dir("write");
        let path = dir.join("out.cfg");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();

        write_atomic(&path, "new").unwrap();

        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let names: Vec<String> =
            fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["out.cfg"]);

        let nested = dir.join("a/b/new.cfg");
        write_atomic(&nested, "x").unwrap();
        assert_eq!(fs::metadata(&nested).unwrap().permissions().mode() & 0o777, FILE_MODE_DEFAULT);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failing_command_is_reported() {
        assert!(run_command("true").is_ok());
        let err = run_command("exit 3").unwrap_err();
        assert!(err.contains("exit 3") || err.contains("exit status: 3"), "{err}");
    }
}
