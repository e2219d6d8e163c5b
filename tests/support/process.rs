//! Running the `jwtd` binary as an operator would, reading its stderr.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Kills the child if the test fails before it stopped it.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn jwtd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jwtd"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("JWTD_CONFIG");
    // Hermetic: no trace export unless a test asks for it.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OTEL_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// A running `jwtd` with its stderr lines forwarded to a channel.
pub struct Served {
    child: Running,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Served {
    pub fn start(config: &std::path::Path) -> Served {
        Self::start_with(config, |_| {})
    }

    /// Starts with `adjust` applied to the command (environment, flags).
    pub fn start_with(config: &std::path::Path, adjust: impl FnOnce(&mut Command)) -> Served {
        let mut cmd = jwtd();
        cmd.arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        adjust(&mut cmd);
        let mut child = cmd.spawn().expect("starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Served {
            child: Running(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// The first log line containing `needle`, waiting up to 20 s.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no log line with {needle:?}; saw {:#?}", self.seen),
            }
        }
    }

    /// Every log line seen so far, without waiting for more.
    pub fn log_so_far(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.clone()
    }

    /// Every log line, once jwtd has exited and closed its stderr.
    pub fn whole_log(&mut self) -> Vec<String> {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(20)) {
                Ok(line) => self.seen.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return self.seen.clone(),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    panic!("jwtd's stderr still open; saw {:#?}", self.seen)
                }
            }
        }
    }

    pub fn address(&mut self) -> String {
        let line = self.wait_for("jwtd ready");
        let at = line.find("addr=").expect("ready line names the address") + 5;
        line[at..]
            .split_whitespace()
            .next()
            .expect("addr")
            .to_owned()
    }

    /// The address of the ready line of `--log-format json`.
    pub fn address_json(&mut self) -> String {
        let line = self.wait_for("jwtd ready");
        let object: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        object["fields"]["addr"]
            .as_str()
            .unwrap_or_else(|| panic!("no addr: {line}"))
            .to_owned()
    }

    /// Waits up to 20 s until `addr` accepts connections (for a jwtd whose
    /// logs do not include its ready line).
    pub fn wait_until_listening(&self, addr: std::net::SocketAddr) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "{addr} never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.0.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
    }

    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.0.try_wait().expect("wait") {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "jwtd did not exit");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
