//! A frame-aware WebSocket proxy between a client and the real server. It
//! forwards every text frame both ways and asks a rule about each one; the
//! rule can forward it, delay it, drop it silently, replace it with other
//! frames, or drop it and cut both sides of the connection at once, as a
//! failing network would (no close frame).
//!
//! Besides the rule, the proxy can be switched at run time: black-hole a
//! direction (frames vanish silently, the connection stays open), hold a
//! direction (frames wait in the proxy until released, in order), cut every
//! link, or refuse new connections. Every frame is logged with the time it
//! left the proxy (or was dropped), per connection, for inspection.
//!
//! Delays never reorder: like TCP, a direction delivers in arrival order,
//! so a frame waits for the ones before it.

use chatsync_protocol::WS_PATH;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::Message;

/// Which way a frame travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    ToServer,
    ToClient,
}

/// What to do with a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Forward,
    /// Forward it after this delay (after the frames before it, too).
    Delay(Duration),
    /// Drop it silently; the connection stays up.
    Drop,
    /// Send these frames instead, in order, each after its delay.
    Replace(Vec<(Duration, String)>),
    /// Drop it and close both TCP connections without a close frame.
    DropAndCut,
}

/// Decides the fate of a frame from its direction, its JSON `"type"` and its
/// full text.
pub type Rule = Arc<dyn Fn(Dir, &str, &str) -> Action + Send + Sync>;

/// Forwards everything.
pub fn forward_all() -> Rule {
    Arc::new(|_, _, _| Action::Forward)
}

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

/// Delays every frame going `dir` by `delay`.
pub fn delay_all(dir: Dir, delay: Duration) -> Rule {
    Arc::new(move |d, _, _| {
        if d == dir {
            Action::Delay(delay)
        } else {
            Action::Forward
        }
    })
}

/// Delays every frame going `dir` by a random 0..=`max` drawn from a
/// generator seeded with `seed` (same seed, same delays in frame order).
pub fn jitter(dir: Dir, max: Duration, seed: u64) -> Rule {
    let rng = Mutex::new(fastrand::Rng::with_seed(seed));
    let max_ms = max.as_millis() as u64;
    Arc::new(move |d, _, _| {
        if d == dir {
            let ms = rng.lock().unwrap().u64(0..=max_ms);
            Action::Delay(Duration::from_millis(ms))
        } else {
            Action::Forward
        }
    })
}

/// Whether a frame's text carries `needle` as a JSON string value of the
/// field `field` (e.g. a `send` whose `id` is a given message).
pub fn field_is(text: &str, field: &str, needle: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get(field).and_then(|f| f.as_str()).map(|s| s == needle))
        .unwrap_or(false)
}

/// Whether a frame left the proxy or was dropped by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Delivered,
    Dropped,
}

/// One frame as the proxy handled it.
#[derive(Clone, Debug)]
pub struct Frame {
    /// When the proxy released it to its peer (or dropped it).
    pub at: Instant,
    /// Which connection through the proxy, counted from 1.
    pub link: usize,
    pub dir: Dir,
    /// The JSON `"type"`.
    pub ty: String,
    pub text: String,
    pub fate: Fate,
}

impl Frame {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or(serde_json::Value::Null)
    }

    /// The string field `field`, if the frame has one.
    pub fn str_field(&self, field: &str) -> Option<String> {
        self.json()
            .get(field)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    }
}

struct Shared {
    rule: RwLock<Rule>,
    connections: AtomicUsize,
    cuts: AtomicUsize,
    log: Mutex<Vec<Frame>>,
    /// Frames going this way vanish (ToServer, ToClient).
    blackhole: [AtomicBool; 2],
    /// Frames going this way wait in the proxy while true.
    hold: [watch::Sender<bool>; 2],
    /// Bumped to cut every current link.
    cut_all: watch::Sender<u64>,
    /// New connections are closed at once while true.
    down: AtomicBool,
}

fn index(dir: Dir) -> usize {
    match dir {
        Dir::ToServer => 0,
        Dir::ToClient => 1,
    }
}

impl Shared {
    fn record(&self, link: usize, dir: Dir, ty: &str, text: &str, fate: Fate) {
        self.record_at(Instant::now(), link, dir, ty, text, fate);
    }

    fn record_at(&self, at: Instant, link: usize, dir: Dir, ty: &str, text: &str, fate: Fate) {
        self.log.lock().unwrap().push(Frame {
            at,
            link,
            dir,
            ty: ty.to_string(),
            text: text.to_string(),
            fate,
        });
    }
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr, rule: Rule) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            rule: RwLock::new(rule),
            connections: AtomicUsize::new(0),
            cuts: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            blackhole: [AtomicBool::new(false), AtomicBool::new(false)],
            hold: [watch::channel(false).0, watch::channel(false).0],
            cut_all: watch::channel(0).0,
            down: AtomicBool::new(false),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            // Dropping the set (when the proxy is dropped) ends every link.
            let mut links = JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                if s.down.load(Ordering::SeqCst) {
                    drop(socket);
                    continue;
                }
                let n = s.connections.fetch_add(1, Ordering::SeqCst) + 1;
                links.spawn(link(socket, upstream, s.clone(), n));
                while links.try_join_next().is_some() {}
            }
        });
        Proxy { addr, shared, task }
    }

    /// The address clients are given instead of the server's.
    pub fn url(&self) -> String {
        self.addr.to_string()
    }

    /// Connections accepted so far (not counting refused ones).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Connections cut so far (by the rule or by [`Proxy::cut`]).
    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    /// Replaces the rule for every frame from now on.
    pub fn set_rule(&self, rule: Rule) {
        *self.shared.rule.write().unwrap() = rule;
    }

    /// Frames going `dir` vanish silently while `on` (the link stays up).
    pub fn blackhole(&self, dir: Dir, on: bool) {
        self.shared.blackhole[index(dir)].store(on, Ordering::SeqCst);
    }

    /// Frames going `dir` wait in the proxy while `on`; released in order.
    pub fn hold(&self, dir: Dir, on: bool) {
        self.shared.hold[index(dir)].send_replace(on);
    }

    /// Cuts every current link (no close frame), as a network failure.
    pub fn cut(&self) {
        self.shared.cut_all.send_modify(|g| *g += 1);
    }

    /// While `down`, every link is cut and new connections are refused.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
        if down {
            self.cut();
        }
    }

    /// Every frame handled so far, in the order handled.
    pub fn frames(&self) -> Vec<Frame> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Frames of type `ty` going `dir` that left the proxy.
    pub fn delivered(&self, dir: Dir, ty: &str) -> Vec<Frame> {
        self.frames()
            .into_iter()
            .filter(|f| f.dir == dir && f.ty == ty && f.fate == Fate::Delivered)
            .collect()
    }

    /// Number of frames of type `ty` going `dir` that left the proxy.
    pub fn count(&self, dir: Dir, ty: &str) -> usize {
        self.delivered(dir, ty).len()
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

/// A frame on its way out of the proxy, with the time it may leave.
struct Queued {
    release: tokio::time::Instant,
    message: Message,
    ty: String,
}

async fn link(socket: TcpStream, upstream: SocketAddr, shared: Arc<Shared>, n: usize) {
    let mut cut_rx = shared.cut_all.subscribe();
    cut_rx.borrow_and_update();
    let Ok(client) = tokio_tungstenite::accept_async(socket).await else {
        return;
    };
    let url = format!("ws://{upstream}{WS_PATH}");
    let Ok((server, _)) = tokio_tungstenite::connect_async(url).await else {
        return; // the client sees the connection end, as if the server were down
    };
    let (to_client, from_client) = client.split();
    let (to_server, from_server) = server.split();
    let (cut_tx, mut cut) = mpsc::channel::<()>(1);
    let (q_server, rx_server) = mpsc::unbounded_channel::<Queued>();
    let (q_client, rx_client) = mpsc::unbounded_channel::<Queued>();
    // Aborted when this function returns: both sockets then close.
    let mut tasks = JoinSet::new();
    tasks.spawn(read_side(
        from_client,
        Dir::ToServer,
        q_server,
        shared.clone(),
        n,
        cut_tx.clone(),
    ));
    tasks.spawn(read_side(
        from_server,
        Dir::ToClient,
        q_client,
        shared.clone(),
        n,
        cut_tx,
    ));
    let w1 = tokio::spawn(write_side(
        to_server,
        rx_server,
        Dir::ToServer,
        shared.clone(),
        n,
    ));
    let w2 = tokio::spawn(write_side(
        to_client,
        rx_client,
        Dir::ToClient,
        shared.clone(),
        n,
    ));
    let (a1, a2) = (w1.abort_handle(), w2.abort_handle());
    tokio::select! {
        // A side closed and everything before its close went out.
        _ = w1 => {}
        _ = w2 => {}
        // Counted where the rule decided.
        _ = cut.recv() => {}
        _ = cut_rx.changed() => {
            shared.cuts.fetch_add(1, Ordering::SeqCst);
        }
    }
    a1.abort();
    a2.abort();
}

async fn read_side<S>(
    mut from: S,
    dir: Dir,
    queue: mpsc::UnboundedSender<Queued>,
    shared: Arc<Shared>,
    n: usize,
    cut: mpsc::Sender<()>,
) where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut last = tokio::time::Instant::now();
    let mut push = |delay: Duration, message: Message, ty: String| {
        let release = (tokio::time::Instant::now() + delay).max(last);
        last = release;
        let _ = queue.send(Queued {
            release,
            message,
            ty,
        });
    };
    while let Some(next) = from.next().await {
        let message = match next {
            Ok(m) => m,
            Err(_) => break,
        };
        match message {
            Message::Text(text) => {
                let text = text.as_str().to_string();
                let ty = frame_type(&text);
                if shared.blackhole[index(dir)].load(Ordering::SeqCst) {
                    shared.record(n, dir, &ty, &text, Fate::Dropped);
                    continue;
                }
                let rule = shared.rule.read().unwrap().clone();
                match rule(dir, &ty, &text) {
                    Action::Forward => push(Duration::ZERO, Message::text(text), ty),
                    Action::Delay(d) => push(d, Message::text(text), ty),
                    Action::Drop => shared.record(n, dir, &ty, &text, Fate::Dropped),
                    Action::Replace(frames) => {
                        shared.record(n, dir, &ty, &text, Fate::Dropped);
                        for (d, t) in frames {
                            let ty = frame_type(&t);
                            push(d, Message::text(t), ty);
                        }
                    }
                    Action::DropAndCut => {
                        shared.record(n, dir, &ty, &text, Fate::Dropped);
                        shared.cuts.fetch_add(1, Ordering::SeqCst);
                        let _ = cut.send(()).await;
                        return;
                    }
                }
            }
            Message::Binary(data) => push(Duration::ZERO, Message::Binary(data), String::new()),
            Message::Close(frame) => {
                push(Duration::ZERO, Message::Close(frame), String::new());
                break;
            }
            // Each side's WebSocket layer answers pings itself.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
    // Dropping the queue lets the writer finish what is queued, then end.
}

async fn write_side<S>(
    mut to: S,
    mut queue: mpsc::UnboundedReceiver<Queued>,
    dir: Dir,
    shared: Arc<Shared>,
    n: usize,
) where
    S: futures_util::Sink<Message> + Unpin,
{
    let mut hold = shared.hold[index(dir)].subscribe();
    while let Some(q) = queue.recv().await {
        tokio::time::sleep_until(q.release).await;
        if hold.wait_for(|held| !*held).await.is_err() {
            return;
        }
        let text = match &q.message {
            Message::Text(t) => Some(t.as_str().to_string()),
            _ => None,
        };
        let close = matches!(q.message, Message::Close(_));
        // Stamped when released: a frame reaches its peer no earlier, and
        // (going to the server) left the client no later.
        let at = Instant::now();
        if to.send(q.message).await.is_err() {
            return;
        }
        if let Some(text) = text {
            shared.record_at(at, n, dir, &q.ty, &text, Fate::Delivered);
        }
        if close {
            return;
        }
    }
}
