//! Real network helpers for the egress and DNS tests: a `tinyproxy` and a
//! `dnsmasq` started on free loopback ports, each stopped by its PID when
//! dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `tinyproxy -d` on 127.0.0.1.
pub struct Tinyproxy {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    allow: u16,
    auth: Option<(String, String)>,
    dir: tempfile::TempDir,
    starts: u32,
}

impl Tinyproxy {
    /// Starts a tinyproxy allowing CONNECT only to `allow`, with basic
    /// auth when `auth` is given.
    pub fn start(allow: u16, auth: Option<(&str, &str)>) -> Tinyproxy {
        let mut p = Tinyproxy {
            child: None,
            port: free_port(),
            allow,
            auth: auth.map(|(u, pw)| (u.to_owned(), pw.to_owned())),
            dir: tempfile::tempdir().expect("temp dir"),
            starts: 0,
        };
        p.restart();
        p
    }

    /// `http://[user:pass@]127.0.0.1:PORT`
    pub fn url(&self) -> String {
        match &self.auth {
            Some((u, pw)) => format!("http://{u}:{pw}@127.0.0.1:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// How many CONNECT requests it has logged, over all its runs.
    pub fn connects(&self) -> usize {
        (1..=self.starts)
            .map(|n| {
                std::fs::read_to_string(self.log(n))
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains("): CONNECT "))
                    .count()
            })
            .sum()
    }

    fn log(&self, run: u32) -> PathBuf {
        self.dir.path().join(format!("tinyproxy-{run}.log"))
    }

    /// Kills it (by PID) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, with a fresh log.
    pub fn restart(&mut self) {
        self.kill();
        self.starts += 1;
        let conf = self.dir.path().join("tinyproxy.conf");
        let mut text = format!(
            "Port {}\nListen 127.0.0.1\nTimeout 60\nMaxClients 100\nLogLevel Info\n\
             LogFile \"{}\"\nConnectPort {}\n",
            self.port,
            self.log(self.starts).display(),
            self.allow
        );
        if let Some((u, pw)) = &self.auth {
            text += &format!("BasicAuth {u} {pw}\n");
        }
        std::fs::write(&conf, text).expect("write tinyproxy.conf");
        let child = Command::new("/usr/bin/tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy starts");
        self.child = Some(child);
        let port = self.port;
        wait_for("tinyproxy", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `dnsmasq` answering on 127.0.0.1 (UDP and TCP), from fixed
/// records only.
pub struct Dnsmasq {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq answering `records` (name, IPv4 address; a name may
    /// repeat for several addresses) with `ttl` seconds, NXDOMAIN for
    /// anything else.
    pub fn start(records: &[(&str, &str)], ttl: u32) -> Dnsmasq {
        let mut d = Dnsmasq {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        d.restart(records, ttl);
        d
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Replaces the records (and TTL): a restart on the same port.
    pub fn restart(&mut self, records: &[(&str, &str)], ttl: u32) {
        self.kill();
        let hosts = self.dir.path().join("hosts");
        let text: String = records
            .iter()
            .map(|(name, ip)| format!("{ip} {name}\n"))
            .collect();
        std::fs::write(&hosts, text).expect("write hosts");
        let child = Command::new("/usr/sbin/dnsmasq")
            .args(["--keep-in-foreground", "--no-resolv", "--no-hosts"])
            .args(["--bind-interfaces", "--listen-address=127.0.0.1"])
            .args(["--user=root", "--pid-file=", "--log-facility=-"])
            .arg(format!("--port={}", self.port))
            .arg(format!("--addn-hosts={}", hosts.display()))
            .arg(format!("--local-ttl={ttl}"))
            .arg("--local=/#/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq starts");
        self.child = Some(child);
        let port = self.port;
        wait_for("dnsmasq", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP address that swallows connection attempts, as a black-holed
/// address does: a listener whose accept queue is full (backlog 0, one
/// connection queued and never accepted), so the kernel drops each new SYN
/// and the connect hangs until its timeout.
pub struct BlackHole {
    _listener: tokio::net::TcpListener,
    _queued: Vec<std::net::TcpStream>,
    /// The address.
    pub addr: std::net::SocketAddr,
}

impl BlackHole {
    /// A black hole on `addr` (inside a tokio runtime).
    pub fn on(addr: std::net::SocketAddr) -> BlackHole {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(addr).expect("bind the black hole");
        let listener = socket.listen(0).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let mut queued = Vec::new();
        loop {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(s) => queued.push(s),
                Err(_) => break,
            }
            assert!(queued.len() < 8, "the accept queue of {addr} never fills");
        }
        BlackHole {
            _listener: listener,
            _queued: queued,
            addr,
        }
    }
}
