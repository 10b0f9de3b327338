//! Runs the real `levee` binary for end-to-end tests: a config written to a
//! temp dir, ports chosen by the OS, and the process stopped by its PID.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The admin token the test configs use.
pub const ADMIN_TOKEN: &str = "test-admin-token-7c1f";

/// A running `levee serve`.
pub struct Levee {
    child: Child,
    /// The client-facing address, e.g. `127.0.0.1:41234`.
    pub addr: String,
    /// The admin address.
    pub admin: String,
    dir: tempfile::TempDir,
}

impl Levee {
    /// Starts levee with `config` (TOML) appended to a base that listens on
    /// free loopback ports and enables the admin API with [`ADMIN_TOKEN`].
    pub fn start(config: &str) -> Levee {
        Self::start_with(config, &[])
    }

    /// As [`Levee::start`], with extra command-line arguments.
    pub fn start_with(config: &str, args: &[&str]) -> Levee {
        Self::spawn(config, args, &[])
    }

    /// As [`Levee::start`], with environment variables set. Every run
    /// starts without the caller's proxy variables (`HTTPS_PROXY`, …).
    pub fn start_env(config: &str, env: &[(&str, String)]) -> Levee {
        Self::spawn(config, &[], env)
    }

    fn spawn(config: &str, args: &[&str], env: &[(&str, String)]) -> Levee {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("levee.toml");
        // The harness's admin keys join the config's own `[admin]` table,
        // if it has one (TOML refuses a table defined twice).
        let admin = "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"LEVEE_TEST_ADMIN_TOKEN\"\n";
        let config = format!("\n{config}\n");
        let text = if config.contains("\n[admin]\n") {
            let merged = config.replacen("\n[admin]\n", &format!("\n{admin}"), 1);
            format!("listen = \"127.0.0.1:0\"\nshutdown_grace_ms = 10000\n{merged}")
        } else {
            format!("listen = \"127.0.0.1:0\"\nshutdown_grace_ms = 10000\n{config}\n{admin}")
        };
        std::fs::write(&path, text).expect("write config");
        let log = std::fs::File::create(dir.path().join("levee.log")).expect("log file");
        let mut child = Command::new(crate::levee_bin())
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .args(args)
            .env("LEVEE_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .env("RUST_LOG", "info")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            // A machine's own OpenTelemetry settings would turn tracing on.
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_HEADERS")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
            .env_remove("OTEL_SERVICE_NAME")
            .env_remove("OTEL_SDK_DISABLED")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("levee starts");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut next = |prefix: &str| -> String {
            match lines.next() {
                Some(Ok(line)) if line.starts_with(prefix) => {
                    line[prefix.len()..].trim().to_owned()
                }
                other => {
                    let log =
                        std::fs::read_to_string(dir.path().join("levee.log")).unwrap_or_default();
                    panic!("levee did not print `{prefix}`: {other:?}\nits log:\n{log}")
                }
            }
        };
        let addr = next("levee listening on");
        let admin = next("levee admin on");
        Levee {
            child,
            addr,
            admin,
            dir,
        }
    }

    /// `http://ADDR`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://ADMIN`
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// Everything levee logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("levee.log")).unwrap_or_default()
    }

    /// The temp dir holding the config and the log.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`TERM`, `HUP`, ...) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, at most `limit`; returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Levee {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
