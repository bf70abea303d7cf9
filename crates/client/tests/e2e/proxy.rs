//! A frame-aware WebSocket proxy between a client and the real server. It
//! forwards every text frame both ways and asks a rule about each one; the
//! rule can drop a frame and cut both sides of the connection at once, as a
//! failing network would (no close frame).

use chatsync_protocol::WS_PATH;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::Message;

/// Which way a frame travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    ToServer,
    ToClient,
}

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Forward,
    /// Drop it and close both TCP connections without a close frame.
    DropAndCut,
}

/// Decides the fate of a frame from its direction, its JSON `"type"` and its
/// full text.
pub type Rule = Arc<dyn Fn(Dir, &str, &str) -> Action + Send + Sync>;

/// A rule that cuts the connection on the first frame of type `ty` going
/// `dir`, and forwards everything else (including later frames of that type).
pub fn cut_on_first(dir: Dir, ty: &'static str) -> Rule {
    let fired = AtomicBool::new(false);
    Arc::new(move |d, t, _| {
        if d == dir && t == ty && !fired.swap(true, Ordering::SeqCst) {
            Action::DropAndCut
        } else {
            Action::Forward
        }
    })
}

#[derive(Default)]
struct Counters {
    connections: AtomicUsize,
    cuts: AtomicUsize,
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr, rule: Rule) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let task = tokio::spawn(async move {
            // Dropping the set (when the proxy is dropped) ends every link.
            let mut links = JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                c.connections.fetch_add(1, Ordering::SeqCst);
                links.spawn(link(socket, upstream, rule.clone(), c.clone()));
                while links.try_join_next().is_some() {}
            }
        });
        Proxy {
            addr,
            counters,
            task,
        }
    }

    /// The address clients are given instead of the server's.
    pub fn url(&self) -> String {
        self.addr.to_string()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.counters.connections.load(Ordering::SeqCst)
    }

    /// Connections cut by the rule so far.
    pub fn cuts(&self) -> usize {
        self.counters.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The JSON `"type"` of a frame, or "" when it has none.
fn frame_type(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
        .unwrap_or_default()
}

async fn link(socket: TcpStream, upstream: SocketAddr, rule: Rule, counters: Arc<Counters>) {
    let Ok(client) = tokio_tungstenite::accept_async(socket).await else {
        return;
    };
    let url = format!("ws://{upstream}{WS_PATH}");
    let Ok((server, _)) = tokio_tungstenite::connect_async(url).await else {
        return; // the client sees the connection end, as if the server were down
    };
    let (mut to_client, mut from_client) = client.split();
    let (mut to_server, mut from_server) = server.split();
    loop {
        let (dir, next) = tokio::select! {
            m = from_client.next() => (Dir::ToServer, m),
            m = from_server.next() => (Dir::ToClient, m),
        };
        let message = match next {
            Some(Ok(m)) => m,
            // One side is gone: dropping both ends the other.
            Some(Err(_)) | None => return,
        };
        let (out, last) = match message {
            Message::Text(text) => {
                let ty = frame_type(text.as_str());
                match rule(dir, &ty, text.as_str()) {
                    Action::Forward => (Message::Text(text), false),
                    Action::DropAndCut => {
                        counters.cuts.fetch_add(1, Ordering::SeqCst);
                        return; // both streams dropped: both TCP links close
                    }
                }
            }
            Message::Binary(data) => (Message::Binary(data), false),
            Message::Close(frame) => (Message::Close(frame), true),
            // Each side's WebSocket layer answers pings itself.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        let sent = match dir {
            Dir::ToServer => to_server.send(out).await,
            Dir::ToClient => to_client.send(out).await,
        };
        if sent.is_err() || last {
            return;
        }
    }
}
