//! A frame-aware WebSocket fault proxy.
//!
//! Each chaos client connects to its own proxy instead of the server. The
//! proxy accepts the WebSocket, opens one to the server, and forwards every
//! frame both ways after looking at it: the JSON `"type"`, and the message
//! id of `send`, `ack`, `refused` and `message` frames. Faults are armed by
//! the schedule and fire on the frames they wait for:
//!
//! * drop the acknowledgement of one chosen message, the link staying up;
//! * hold one chosen acknowledgement for a while (frames behind it wait, as
//!   they would behind a stalled TCP segment);
//! * drop a chosen frame and cut the connection, or forward it and cut;
//! * add a per-frame delay with jitter for a while (order is kept);
//! * black-hole one direction for a while: its frames vanish, and since a
//!   stream cannot skip data the connection is cut when the window ends;
//! * cut every connection now.
//!
//! A cut drops both TCP connections without a WebSocket close frame, as a
//! failing network or a crashed middlebox would. Faults that need a frame
//! count as injected only when that frame was seen.

use super::faults::FaultLog;
use chatsync_protocol::WS_PATH;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Which way a frame travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

impl Dir {
    /// "to server" or "to client".
    pub fn describe(self) -> &'static str {
        match self {
            Dir::Up => "to server",
            Dir::Down => "to client",
        }
    }
}

/// What the proxy sees of a frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    /// The JSON `"type"`, or "" when the text is not a JSON object with one.
    pub ty: String,
    /// The message id a `send`, `ack`, `refused` or `message` frame is
    /// about.
    pub id: Option<String>,
}

/// Classifies a text frame. Never fails: garbage is a frame of type "".
pub fn classify(text: &str) -> Frame {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text) else {
        return Frame::default();
    };
    let ty = map
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or_default()
        .to_string();
    let id = match ty.as_str() {
        "send" | "ack" | "refused" => map.get("id"),
        "message" => map.get("message").and_then(|m| m.get("id")),
        _ => None,
    }
    .and_then(|v| v.as_str())
    .map(str::to_string);
    Frame { ty, id }
}

/// A fault that waits for a frame.
#[derive(Clone, Debug, PartialEq)]
pub enum FrameFault {
    /// Drop the acknowledgement of the next message the client sends; the
    /// connection stays up (the client must notice by its ack timeout).
    DropAck,
    /// Hold the acknowledgement of the next message the client sends for
    /// this long; everything behind it in that direction waits too.
    HoldAck(Duration),
    /// Drop the next frame of this type going this way, and cut.
    DropAndCut(Dir, &'static str),
    /// Forward the next frame of this type going this way, then cut.
    CutAfter(Dir, &'static str),
}

impl FrameFault {
    /// The fault's kind, as counted in the report.
    pub fn kind(&self) -> &'static str {
        match self {
            FrameFault::DropAck => "drop-ack",
            FrameFault::HoldAck(_) => "hold-ack",
            FrameFault::DropAndCut(..) => "drop+cut",
            FrameFault::CutAfter(..) => "cut-after",
        }
    }
}

/// What happens to one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Forward,
    ForwardThenCut,
    Drop,
    DropAndCut,
}

/// An acknowledgement the proxy is waiting for, and what to do with it.
#[derive(Clone, Copy, Debug)]
enum AckFate {
    Drop,
    Hold(Duration),
}

struct Delay {
    until: Instant,
    base: Duration,
    jitter: Duration,
    fired: bool,
}

struct BlackHole {
    dir: Dir,
    until: Instant,
    epoch: u64,
    swallowed: usize,
}

/// Control of one proxied connection.
struct LinkCtl {
    cut: watch::Sender<bool>,
    tainted: std::sync::atomic::AtomicBool,
}

impl LinkCtl {
    fn cut(&self) {
        self.cut.send_replace(true);
    }
}

#[derive(Default)]
struct State {
    armed: Vec<FrameFault>,
    acks: HashMap<String, AckFate>,
    delay: Option<Delay>,
    black_hole: Option<BlackHole>,
    epoch: u64,
    links: HashMap<u64, Arc<LinkCtl>>,
    next_link: u64,
}

struct Shared {
    name: String,
    upstream: String,
    log: Arc<FaultLog>,
    state: Mutex<State>,
    rng: Mutex<fastrand::Rng>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides the fate of a frame and the delay before it may leave.
    fn decide(&self, link: &LinkCtl, dir: Dir, frame: &Frame) -> (Fate, Duration) {
        let now = Instant::now();
        let mut st = self.state();
        if let Some(bh) = st.black_hole.as_mut() {
            if bh.dir == dir && now < bh.until {
                bh.swallowed += 1;
                link.tainted
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                if bh.swallowed == 1 {
                    self.log.fired(
                        "black-hole",
                        &self.name,
                        format!(
                            "black hole {}: frames vanish for {:.1}s, then the link is cut",
                            dir.describe(),
                            bh.until.saturating_duration_since(now).as_secs_f64()
                        ),
                    );
                }
                return (Fate::Drop, Duration::ZERO);
            }
        }
        let mut fate = Fate::Forward;
        let mut delay = Duration::ZERO;
        let hit = st.armed.iter().position(|f| match f {
            FrameFault::DropAck | FrameFault::HoldAck(_) => {
                dir == Dir::Up && frame.ty == "send" && frame.id.is_some()
            }
            FrameFault::DropAndCut(d, ty) | FrameFault::CutAfter(d, ty) => {
                *d == dir && frame.ty == *ty
            }
        });
        if let Some(i) = hit {
            let fault = st.armed.remove(i);
            let id = frame.id.clone().unwrap_or_default();
            match fault {
                FrameFault::DropAck => {
                    st.acks.insert(id, AckFate::Drop);
                }
                FrameFault::HoldAck(d) => {
                    st.acks.insert(id, AckFate::Hold(d));
                }
                FrameFault::DropAndCut(d, ty) => {
                    fate = Fate::DropAndCut;
                    self.log.fired(
                        "drop+cut",
                        &self.name,
                        format!("dropped a `{ty}` frame {} and cut", d.describe()),
                    );
                }
                FrameFault::CutAfter(d, ty) => {
                    fate = Fate::ForwardThenCut;
                    self.log.fired(
                        "cut-after",
                        &self.name,
                        format!("cut right after a `{ty}` frame {}", d.describe()),
                    );
                }
            }
        }
        if dir == Dir::Down && frame.ty == "ack" {
            if let Some(ack) = frame.id.as_ref().and_then(|id| st.acks.remove(id)) {
                let short = short_id(frame.id.as_deref().unwrap_or_default());
                match ack {
                    AckFate::Drop => {
                        self.log.fired(
                            "drop-ack",
                            &self.name,
                            format!("dropped the ack of {short}, link kept up"),
                        );
                        return (Fate::Drop, Duration::ZERO);
                    }
                    AckFate::Hold(d) => {
                        self.log.fired(
                            "hold-ack",
                            &self.name,
                            format!("holding the ack of {short} for {:.1}s", d.as_secs_f64()),
                        );
                        delay += d;
                    }
                }
            }
        }
        if let Some(d) = st.delay.as_mut() {
            if now < d.until {
                if !d.fired {
                    d.fired = true;
                    self.log.fired(
                        "delay",
                        &self.name,
                        format!(
                            "every frame delayed {}ms + up to {}ms jitter for {:.1}s",
                            d.base.as_millis(),
                            d.jitter.as_millis(),
                            d.until.saturating_duration_since(now).as_secs_f64()
                        ),
                    );
                }
                let jitter_ms = u64::try_from(d.jitter.as_millis()).unwrap_or(u64::MAX);
                let extra = self
                    .rng
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .u64(0..=jitter_ms);
                delay += d.base + Duration::from_millis(extra);
            } else {
                st.delay = None;
            }
        }
        (fate, delay)
    }
}

/// The last 8 characters of an id (its random part; a UUIDv7 starts with
/// the time), for progress lines.
fn short_id(id: &str) -> &str {
    id.get(id.len().saturating_sub(8)..).unwrap_or(id)
}

/// A running fault proxy in front of the server, for one client. Stops
/// (and cuts its connections) when dropped.
pub struct FaultProxy {
    /// Where the client connects.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`
    /// (`host:port` of the server). `name` labels its progress lines.
    pub async fn start(
        name: &str,
        upstream: &str,
        seed: u64,
        log: Arc<FaultLog>,
    ) -> anyhow::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            name: name.to_string(),
            upstream: upstream.to_string(),
            log,
            state: Mutex::new(State::default()),
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            // Dropping the set (when the proxy stops) ends every link.
            let mut links = JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                links.spawn(run_link(socket, s.clone()));
                while links.try_join_next().is_some() {}
            }
        });
        Ok(FaultProxy { addr, shared, task })
    }

    /// Arms a fault that fires on the next frame it matches.
    pub fn arm(&self, fault: FrameFault) {
        self.shared.state().armed.push(fault);
    }

    /// Delays every frame by `base` plus a random jitter up to `jitter`,
    /// for `window`. Frames keep their order.
    pub fn delay(&self, base: Duration, jitter: Duration, window: Duration) {
        self.shared.state().delay = Some(Delay {
            until: Instant::now() + window,
            base,
            jitter,
            fired: false,
        });
    }

    /// Swallows every frame going `dir` for `window`; then cuts each
    /// connection that lost a frame.
    pub fn black_hole(&self, dir: Dir, window: Duration) {
        let epoch = {
            let mut st = self.shared.state();
            st.epoch += 1;
            let epoch = st.epoch;
            st.black_hole = Some(BlackHole {
                dir,
                until: Instant::now() + window,
                epoch,
                swallowed: 0,
            });
            epoch
        };
        let shared = self.shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(window).await;
            let mut st = shared.state();
            if st.black_hole.as_ref().map(|b| b.epoch) == Some(epoch) {
                st.black_hole = None;
                cut_tainted(&st);
            }
        });
    }

    /// Cuts every open connection now; returns how many.
    pub fn cut_all(&self) -> usize {
        let st = self.shared.state();
        for link in st.links.values() {
            link.cut();
        }
        st.links.len()
    }

    /// Clears every armed, pending or running fault: from now on the proxy
    /// forwards everything at once. Connections that lost a frame to a
    /// black hole are cut (a stream cannot skip data).
    pub fn heal(&self) {
        let mut st = self.shared.state();
        st.armed.clear();
        st.acks.clear();
        st.delay = None;
        st.black_hole = None;
        cut_tainted(&st);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn cut_tainted(st: &State) {
    for link in st.links.values() {
        if link.tainted.load(std::sync::atomic::Ordering::SeqCst) {
            link.cut();
        }
    }
}

/// One proxied connection: client ⇄ proxy ⇄ server.
async fn run_link(socket: TcpStream, shared: Arc<Shared>) {
    let _ = socket.set_nodelay(true);
    let Ok(client) = tokio_tungstenite::accept_async(socket).await else {
        return;
    };
    let url = format!("ws://{}{WS_PATH}", shared.upstream);
    // Nagle off on the upstream side too, like the client and server.
    let Ok((server, _)) = tokio_tungstenite::connect_async_with_config(url, None, true).await
    else {
        return; // the client sees the connection end, as if the server were down
    };
    let (cut_tx, mut cut_rx) = watch::channel(false);
    let ctl = Arc::new(LinkCtl {
        cut: cut_tx,
        tainted: std::sync::atomic::AtomicBool::new(false),
    });
    let id = {
        let mut st = shared.state();
        st.next_link += 1;
        let id = st.next_link;
        st.links.insert(id, ctl.clone());
        id
    };
    let (to_client, from_client) = client.split();
    let (to_server, from_server) = server.split();
    tokio::select! {
        _ = pump(Dir::Up, from_client, to_server, &shared, &ctl) => {}
        _ = pump(Dir::Down, from_server, to_client, &shared, &ctl) => {}
        _ = cut_rx.wait_for(|cut| *cut) => {}
    }
    shared.state().links.remove(&id);
    // Returning drops all four halves: both TCP connections close, with no
    // WebSocket close frame.
}

/// Moves frames one way, applying the faults; ends when the source ends or
/// the sink fails (after sending what was already released).
async fn pump<S, K>(dir: Dir, mut source: S, mut sink: K, shared: &Shared, ctl: &LinkCtl)
where
    S: Stream<Item = Result<Message, WsError>> + Unpin,
    K: Sink<Message, Error = WsError> + Unpin,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Message, bool)>();
    let reader = async move {
        let mut last = Instant::now();
        while let Some(Ok(message)) = source.next().await {
            let (fate, delay) = match &message {
                Message::Text(text) => shared.decide(ctl, dir, &classify(text.as_str())),
                Message::Binary(_) | Message::Close(_) => (Fate::Forward, Duration::ZERO),
                // Each side's WebSocket layer answers pings itself.
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            let closing = matches!(message, Message::Close(_));
            match fate {
                Fate::Drop => continue,
                Fate::DropAndCut => {
                    ctl.cut();
                    break;
                }
                Fate::Forward | Fate::ForwardThenCut => {
                    // Order is kept: a frame never overtakes an earlier one.
                    let at = last.max(Instant::now() + delay);
                    last = at;
                    if tx
                        .send((at, message, fate == Fate::ForwardThenCut))
                        .is_err()
                    {
                        break;
                    }
                }
            }
            if closing {
                break;
            }
        }
    };
    let writer = async {
        while let Some((at, message, cut_after)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if sink.send(message).await.is_err() {
                break;
            }
            if cut_after {
                ctl.cut();
                break;
            }
        }
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_frames_by_type_and_message_id() {
        let id = "01a23ceb-fb03-7ee7-a078-893fc0a69195";
        let send = format!(
            r#"{{"type":"send","id":"{id}","conversation":"c","body":"hi \"type\":\"ack\""}}"#
        );
        assert_eq!(
            classify(&send),
            Frame {
                ty: "send".into(),
                id: Some(id.into())
            }
        );
        // Field order does not matter, whitespace is allowed.
        let ack = format!(r#"{{ "seq": 3, "id" : "{id}", "type": "ack" }}"#);
        assert_eq!(classify(&ack).ty, "ack");
        assert_eq!(classify(&ack).id.as_deref(), Some(id));
        let refused =
            format!(r#"{{"type":"refused","id":"{id}","code":"rate_limited","retryable":true}}"#);
        assert_eq!(classify(&refused).id.as_deref(), Some(id));
        // A pushed message carries its id inside `message`.
        let push = format!(r#"{{"type":"message","message":{{"id":"{id}","seq":1}}}}"#);
        assert_eq!(classify(&push).ty, "message");
        assert_eq!(classify(&push).id.as_deref(), Some(id));
        // Frames without a message id.
        let marks = r#"{"type":"marks","conversation":"c","marks":{"delivered":2}}"#;
        assert_eq!(
            classify(marks),
            Frame {
                ty: "marks".into(),
                id: None
            }
        );
        let batch = format!(r#"{{"type":"batch","req":4,"messages":[{{"id":"{id}"}}]}}"#);
        assert_eq!(classify(&batch).id, None);
        // Garbage never panics and has no type.
        for junk in [
            "",
            "not json",
            "[1,2]",
            r#"{"type":7}"#,
            r#"{"id":"x"}"#,
            "{\"type\":",
        ] {
            assert_eq!(classify(junk).ty, "", "{junk:?}");
        }
        assert_eq!(classify(r#"{"type":"ack","id":5}"#).id, None);
    }

    #[tokio::test]
    async fn drops_an_armed_ack_and_cuts_after_a_chosen_frame() {
        let log = Arc::new(FaultLog::new(true));
        let shared = Shared {
            name: "test".into(),
            upstream: String::new(),
            log: log.clone(),
            state: Mutex::new(State::default()),
            rng: Mutex::new(fastrand::Rng::with_seed(1)),
        };
        let (cut, _rx) = watch::channel(false);
        let link = LinkCtl {
            cut,
            tainted: false.into(),
        };
        let f = |ty: &str, id: Option<&str>| Frame {
            ty: ty.into(),
            id: id.map(str::to_string),
        };
        shared.state().armed.push(FrameFault::DropAck);
        shared
            .state()
            .armed
            .push(FrameFault::CutAfter(Dir::Down, "welcome"));
        // The ack of the first send after arming is the one dropped.
        let up = shared.decide(&link, Dir::Up, &f("send", Some("m1")));
        assert_eq!(up.0, Fate::Forward);
        let other = shared.decide(&link, Dir::Down, &f("ack", Some("m0")));
        assert_eq!(other.0, Fate::Forward);
        let ack = shared.decide(&link, Dir::Down, &f("ack", Some("m1")));
        assert_eq!(ack.0, Fate::Drop);
        // Once only: the resend's ack goes through.
        let again = shared.decide(&link, Dir::Down, &f("ack", Some("m1")));
        assert_eq!(again.0, Fate::Forward);
        let welcome = shared.decide(&link, Dir::Down, &f("welcome", None));
        assert_eq!(welcome.0, Fate::ForwardThenCut);
        let counts = log.counts();
        assert_eq!(counts.get("drop-ack"), Some(&1));
        assert_eq!(counts.get("cut-after"), Some(&1));
    }
}
