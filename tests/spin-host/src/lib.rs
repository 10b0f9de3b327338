//! A small Spin-like host for tests: it serves a `wasi:http@0.2` proxy
//! component over HTTP on a loopback port with `wasmtime-wasi-http`, and
//! gives it Spin's key-value and variables (`fermyon:spin@2.0.0`, the
//! interfaces spin-sdk 5.2 imports).
//!
//! As on Spin, every request gets a fresh instance; key-value stores live
//! in the host and are shared by all of them. The component's stderr is
//! captured for tests to read.

pub mod spin;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::server::conn::http1;
use spin::{KeyValue, Spin, SpinCtx, SpinView};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::error::Context;
use wasmtime::{Engine, Store};
use wasmtime::{Result, bail};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// How much of the component's stderr is kept.
const STDERR_CAPACITY: usize = 64 << 20;

/// What the Spin application gives its component.
#[derive(Clone, Debug, Default)]
pub struct App {
    /// Variables by name (Spin's rule: lower-case, digits, `_`).
    pub variables: HashMap<String, String>,
    /// The labels of the key-value stores the component may open; any
    /// other label is `no-such-store`.
    pub stores: Vec<String>,
}

impl App {
    /// An application with these variables and stores.
    pub fn new(variables: &[(&str, &str)], stores: &[&str]) -> App {
        App {
            variables: variables
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            stores: stores.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// One instance's store data.
struct Instance {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    spin: Arc<Spin>,
}

impl WasiView for Instance {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Instance {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

impl SpinView for Instance {
    fn spin(&mut self) -> SpinCtx<'_> {
        SpinCtx {
            spin: &self.spin,
            table: &mut self.table,
        }
    }
}

/// What every connection shares.
struct Server {
    pre: ProxyPre<Instance>,
    spin: Arc<Spin>,
    stderr: MemoryOutputPipe,
    instances: AtomicU64,
}

/// A running host. Dropping it stops serving.
pub struct SpinHost {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    server: Arc<Server>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl SpinHost {
    /// Compiles `component` and serves it on a free loopback port.
    pub fn start(component: &Path, app: App) -> Result<SpinHost> {
        let engine = Engine::default();
        let component = Component::from_file(&engine, component)
            .with_context(|| format!("compiling {}", component.display()))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        spin::add_to_linker(&mut linker)?;
        let pre = ProxyPre::new(linker.instantiate_pre(&component)?)?;
        let server = Arc::new(Server {
            pre,
            spin: Arc::new(Spin {
                variables: Arc::new(app.variables),
                kv: KeyValue::with_labels(app.stores.iter().map(String::as_str)),
            }),
            stderr: MemoryOutputPipe::new(STDERR_CAPACITY),
            instances: AtomicU64::new(0),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        // Bound here rather than with `block_on`, so that a caller inside
        // its own tokio runtime (an async test) may start a host.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr: SocketAddr = listener.local_addr()?;
        let listener = {
            let _entered = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        runtime.spawn(accept(listener, server.clone()));
        Ok(SpinHost {
            url: format!("http://{addr}"),
            server,
            runtime: Some(runtime),
        })
    }

    /// The key-value stores, shared with the running instances.
    pub fn kv(&self) -> &KeyValue {
        &self.server.spin.kv
    }

    /// Everything the component wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.server.stderr.contents()).into_owned()
    }

    /// How many instances have been created (one per request).
    pub fn instances(&self) -> u64 {
        self.server.instances.load(Ordering::SeqCst)
    }
}

impl Drop for SpinHost {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn accept(listener: tokio::net::TcpListener, server: Arc<Server>) {
    while let Ok((conn, _)) = listener.accept().await {
        let server = server.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, std::convert::Infallible>(server.handle(req).await) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(conn), service)
                .await;
        });
    }
}

impl Server {
    /// One request, in a fresh instance; a host-side failure is a 500 that
    /// says what went wrong.
    async fn handle(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<HyperOutgoingBody> {
        match self.instance(req).await {
            Ok(resp) => resp,
            Err(e) => {
                let body = http_body_util::Full::new(Bytes::from(format!("spin-host: {e:#}\n")))
                    .map_err(|never| match never {})
                    .boxed_unsync();
                let mut resp = hyper::Response::new(body);
                *resp.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                resp
            }
        }
    }

    async fn instance(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<HyperOutgoingBody>> {
        self.instances.fetch_add(1, Ordering::SeqCst);
        let wasi = WasiCtx::builder()
            .stderr(self.stderr.clone())
            .stdout(self.stderr.clone())
            .build();
        let mut store = Store::new(
            self.pre.engine(),
            Instance {
                wasi,
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
                spin: self.spin.clone(),
            },
        );
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        let pre = self.pre.clone();
        // The instance runs on after the head is sent, to stream the body.
        let task = tokio::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
        });
        match receiver.await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(code)) => bail!("the component answered with an error: {code:?}"),
            Err(_) => {
                let outcome = match task.await {
                    Ok(Ok(())) => "returned".to_owned(),
                    Ok(Err(e)) => format!("trapped: {e:#}"),
                    Err(e) => format!("panicked: {e}"),
                };
                bail!("the component {outcome} without setting a response")
            }
        }
    }
}
