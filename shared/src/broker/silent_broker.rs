//! A broker that falls silent, for the tests of the bounds on waiting for one: a TCP proxy on
//! 127.0.0.1 in front of the real RabbitMQ that forwards everything until [`SilentBroker::freeze`],
//! then neither reads nor writes, in either direction, and keeps every socket open. That is a
//! broker that hangs (a resource alarm, a stuck node) or a network that drops every packet: no
//! error, no close, nothing, which is what a bound has to end.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The proxy; dropped, it closes every connection through it.
pub(crate) struct SilentBroker {
    /// The broker's URL through the proxy (the real one's, with the proxy's address).
    url: reqwest::Url,
    frozen: CancellationToken,
    /// The accepting task; it owns the connections' tasks, so aborting it ends them all.
    proxy: tokio::task::JoinHandle<()>,
}

impl SilentBroker {
    /// A proxy to the tests' broker (`FITLINK_AMQP_URL`, default RabbitMQ on 127.0.0.1:5672).
    pub(crate) async fn start() -> SilentBroker {
        let real = std::env::var("FITLINK_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
        let mut url = reqwest::Url::parse(&real).expect("FITLINK_AMQP_URL is a URL");
        let upstream = format!(
            "{}:{}",
            url.host_str().expect("the broker URL names a host"),
            url.port().unwrap_or(5672)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at: SocketAddr = listener.local_addr().unwrap();
        url.set_ip_host(at.ip()).unwrap();
        url.set_port(Some(at.port())).unwrap();
        let frozen = CancellationToken::new();
        let proxy = tokio::spawn(accept(listener, upstream, frozen.clone()));
        SilentBroker { url, frozen, proxy }
    }

    /// The URL to connect to, with `query` (such as `heartbeat=1`) if given.
    pub(crate) fn url(&self, query: Option<&str>) -> String {
        let mut url = self.url.clone();
        url.set_query(query);
        url.into()
    }

    /// From now on nothing passes, either way, on any connection; none is closed.
    pub(crate) fn freeze(&self) {
        self.frozen.cancel();
    }
}

impl Drop for SilentBroker {
    fn drop(&mut self) {
        self.proxy.abort();
    }
}

async fn accept(listener: TcpListener, upstream: String, frozen: CancellationToken) {
    let mut connections = JoinSet::new();
    while let Ok((client, _)) = listener.accept().await {
        let Ok(broker) = TcpStream::connect(&upstream).await else {
            continue; // the client sees its connection closed, as with the broker down
        };
        let (client_read, client_write) = client.into_split();
        let (broker_read, broker_write) = broker.into_split();
        connections.spawn(forward(client_read, broker_write, frozen.clone()));
        connections.spawn(forward(broker_read, client_write, frozen.clone()));
    }
}

/// Copies one direction until either end closes or the proxy freezes; frozen, it holds both
/// ends open and moves nothing more (bytes read but not written yet are dropped, as a network
/// drops them).
async fn forward(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, frozen: CancellationToken) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let read = tokio::select! {
            biased;
            _ = frozen.cancelled() => break,
            read = from.read(&mut buffer) => read,
        };
        let n = match read {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let written = tokio::select! {
            biased;
            _ = frozen.cancelled() => break,
            written = to.write_all(&buffer[..n]) => written,
        };
        if written.is_err() {
            return;
        }
    }
    let _open = (from, to);
    std::future::pending::<()>().await;
}
