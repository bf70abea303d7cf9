//! The server's handling of connections' frame sequences.
//!
//! Each input is a structured script (built with `arbitrary`): up to three
//! WebSocket connections to a real server (HTTP upgrade, gateway, group
//! committer, fan-out, SQLite in memory) running in-process over in-memory
//! pipes (`chatsync_server::testing`), and a sequence of frames on them —
//! valid `register`, `login`, `hello`, `send` (messages and actions),
//! `received`, `read`, `sync`, `create_conversation`, `list_conversations`,
//! `ping` and `logout` frames built from small pools of names, tokens, ids
//! and conversations so that they collide meaningfully, mixed with arbitrary
//! text and binary messages and reconnections.
//!
//! Checked for every input:
//! - nothing panics (libFuzzer aborts on a panic in any thread), and the
//!   server shuts down cleanly;
//! - every frame the server sends decodes;
//! - nothing but `registered`, `logged_in`, `pong` and `error` reaches a
//!   connection before its `welcome`; no `welcome` for a token whose logout
//!   was already answered;
//! - a connection only ever receives messages, marks and pages of
//!   conversations its account belongs to;
//! - in the store: per conversation, seqs are exactly 1..=last_seq; (sender,
//!   id) is unique and so is id; every sender is a member; every action
//!   targets an earlier message (not an action) of its conversation, edits
//!   and deletes come from the author, a deleted message's text and its
//!   edits' texts are erased; read ≤ delivered ≤ last_seq;
//! - every `ack` a connection received is the stored (sender, id, seq) of
//!   its own account; every `batch` is consecutive from its cursor.
#![no_main]

use arbitrary::Arbitrary;
use chatsync_protocol::{
    decode_client, decode_server, encode, ActionKind, ActionRef, ClientFrame, ConversationId,
    Limits, MessageId, Seq, ServerFrame, UserId, WireMessage, PROTOCOL_VERSION, WS_PATH,
};
use chatsync_server::store::ServerStore;
use chatsync_server::testing::InMemoryServer;
use chatsync_server::{auth, ServerConfig, SqliteStore};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::DuplexStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Most operations run per input (keeps every input fast).
const MAX_OPS: usize = 64;
/// Connections an input can use.
const CONNS: usize = 3;
/// Seeded accounts; all share [`PASSWORD`].
const NAMES: [&str; 3] = ["alice", "bob", "carol"];
const PASSWORD: &str = "password1";
/// How long a barrier waits for its pong before giving up.
const BARRIER_WAIT: Duration = Duration::from_secs(5);

#[derive(Arbitrary, Debug)]
struct Script {
    /// Each connection sends `hello` with the seeded token of account k
    /// (connection k) as soon as it opens, so that short scripts reach the
    /// authenticated frames.
    auto_hello: bool,
    /// Largest body (bytes); small, so that `too_large` is reachable.
    max_body: u8,
    /// Rate burst; 0 means no rate limit.
    burst: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// A well-formed frame on a connection.
    Frame(u8, Frame),
    /// Arbitrary text (mostly not a frame).
    Text(u8, String),
    /// A valid frame's JSON with one byte changed.
    Mutated(u8, Frame, u16, u8),
    /// A binary message.
    Binary(u8, Vec<u8>),
    /// Ping and wait for the pong: everything before it was handled.
    Barrier(u8),
    /// Close the connection; the next use opens a new one.
    Reconnect(u8),
}

#[derive(Arbitrary, Debug)]
enum Who {
    Seeded(u8),
    Named(String),
}

#[derive(Arbitrary, Debug)]
enum Token {
    /// The seeded session of account n.
    Seeded(u8),
    /// The n-th token a `logged_in` frame carried.
    Learned(u8),
    Garbage(String),
}

#[derive(Arbitrary, Debug)]
enum Conv {
    /// Seeded: 0 = {alice, bob}, 1 = {alice}, 2 = {bob, carol}.
    Seeded(u8),
    /// The n-th conversation a `conversation` frame carried.
    Learned(u8),
    Random(u128),
}

#[derive(Arbitrary, Debug)]
enum Id {
    /// One of 16 fixed ids, so that resends, conflicts and targets happen.
    Pool(u8),
    Random(u128),
}

#[derive(Arbitrary, Debug)]
enum Body {
    Short(u8),
    Text(String),
    Empty,
}

#[derive(Arbitrary, Debug)]
enum Act {
    Edit,
    Delete,
    React(bool),
}

#[derive(Arbitrary, Debug)]
enum SeqSpec {
    Small(u8),
    Any(u64),
}

#[derive(Arbitrary, Debug)]
enum Frame {
    Register(Who, bool),
    Login(Who, bool, String),
    Hello(Token, bool),
    Send(Id, Conv, Body, Option<(Id, Act)>),
    Received(Conv, SeqSpec),
    Read(Conv, SeqSpec),
    Sync(Conv, SeqSpec, u16),
    Create(String, Vec<Who>),
    List,
    Ping(u64),
    Logout,
}

/// What the harness learned from the server's answers so far.
#[derive(Default)]
struct Learned {
    tokens: Vec<String>,
    conversations: Vec<ConversationId>,
    /// Tokens whose `logout` was answered with `logged_out`.
    revoked: HashSet<String>,
}

/// Everything one connection received, and what it was sent.
#[derive(Default)]
struct Transcript {
    frames: Vec<ServerFrame>,
    /// The token of its first `hello`, and whether that token had already
    /// been revoked when the hello was sent.
    hello: Option<(String, bool)>,
}

struct Live {
    sink: SplitSink<WebSocketStream<DuplexStream>, Message>,
    reader: JoinHandle<()>,
    transcript: Arc<Mutex<Transcript>>,
    next_nonce: u64,
}

struct Harness {
    server: InMemoryServer,
    auto_hello: bool,
    learned: Arc<Mutex<Learned>>,
    seeded_tokens: Vec<String>,
    seeded_convs: Vec<ConversationId>,
    conns: Vec<Option<Live>>,
    closed: Vec<Arc<Mutex<Transcript>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn pool_id(n: u8) -> MessageId {
    MessageId(uuid::Uuid::from_u128(
        0x0190_0000_0000_7000_8000_0000_0000_0000 | u128::from(n % 16),
    ))
}

impl Harness {
    fn name(&self, who: &Who) -> String {
        match who {
            Who::Seeded(n) => NAMES[usize::from(*n) % NAMES.len()].to_string(),
            Who::Named(s) => s.clone(),
        }
    }

    fn conv(&self, c: &Conv) -> ConversationId {
        match c {
            Conv::Seeded(n) => self.seeded_convs[usize::from(*n) % self.seeded_convs.len()],
            Conv::Learned(n) => {
                let learned = lock(&self.learned);
                match learned.conversations.len() {
                    0 => self.seeded_convs[0],
                    len => learned.conversations[usize::from(*n) % len],
                }
            }
            Conv::Random(r) => ConversationId(uuid::Uuid::from_u128(*r)),
        }
    }

    fn token(&self, t: &Token) -> String {
        match t {
            Token::Seeded(n) => {
                self.seeded_tokens[usize::from(*n) % self.seeded_tokens.len()].clone()
            }
            Token::Learned(n) => {
                let learned = lock(&self.learned);
                match learned.tokens.len() {
                    0 => self.seeded_tokens[0].clone(),
                    len => learned.tokens[usize::from(*n) % len].clone(),
                }
            }
            Token::Garbage(s) => s.clone(),
        }
    }

    fn client_frame(&self, f: &Frame, nonce: u64) -> ClientFrame {
        let id = |i: &Id| match i {
            Id::Pool(n) => pool_id(*n),
            Id::Random(r) => MessageId(uuid::Uuid::from_u128(*r)),
        };
        let seq = |s: &SeqSpec| match s {
            SeqSpec::Small(n) => Seq(u64::from(*n % 8)),
            SeqSpec::Any(n) => Seq(*n),
        };
        let password = |ok: bool| {
            if ok {
                PASSWORD.to_string()
            } else {
                "wrong".to_string()
            }
        };
        match f {
            Frame::Register(who, ok) => ClientFrame::Register {
                req: nonce,
                username: self.name(who),
                password: password(*ok),
            },
            Frame::Login(who, ok, device_name) => ClientFrame::Login {
                req: nonce,
                username: self.name(who),
                password: password(*ok),
                device_name: device_name.clone(),
            },
            Frame::Hello(token, ok) => ClientFrame::Hello {
                version: if *ok {
                    PROTOCOL_VERSION
                } else {
                    PROTOCOL_VERSION + 1
                },
                token: self.token(token),
            },
            Frame::Send(i, c, body, action) => ClientFrame::Send {
                id: id(i),
                conversation: self.conv(c),
                body: match body {
                    Body::Short(n) => "x".repeat(usize::from(*n % 80)),
                    Body::Text(s) => s.clone(),
                    Body::Empty => String::new(),
                },
                action: action.as_ref().map(|(target, act)| ActionRef {
                    target: id(target),
                    kind: match act {
                        Act::Edit => ActionKind::Edit,
                        Act::Delete => ActionKind::Delete,
                        Act::React(on) => ActionKind::React { on: *on },
                    },
                }),
            },
            Frame::Received(c, s) => ClientFrame::Received {
                conversation: self.conv(c),
                seq: seq(s),
            },
            Frame::Read(c, s) => ClientFrame::Read {
                conversation: self.conv(c),
                seq: seq(s),
            },
            Frame::Sync(c, after, limit) => ClientFrame::Sync {
                req: nonce,
                conversation: self.conv(c),
                after: seq(after),
                limit: u32::from(*limit),
            },
            Frame::Create(title, members) => ClientFrame::CreateConversation {
                req: nonce,
                title: title.clone(),
                members: members.iter().map(|w| self.name(w)).collect(),
            },
            Frame::List => ClientFrame::ListConversations { req: nonce },
            Frame::Ping(n) => ClientFrame::Ping { nonce: *n },
            Frame::Logout => ClientFrame::Logout { req: nonce },
        }
    }

    /// The live connection `k`, opened (HTTP upgrade included) if needed.
    async fn conn(&mut self, k: u8) -> Option<&mut Live> {
        let k = usize::from(k) % CONNS;
        if self.conns[k].is_none() {
            let pipe = self.server.connect();
            let url = format!("ws://chatsync{WS_PATH}");
            let (ws, _) = tokio_tungstenite::client_async(url, pipe)
                .await
                .expect("the WebSocket upgrade failed");
            let (sink, mut stream) = ws.split();
            let transcript = Arc::new(Mutex::new(Transcript::default()));
            let (t, learned) = (transcript.clone(), self.learned.clone());
            let reader = tokio::spawn(async move {
                while let Some(Ok(msg)) = stream.next().await {
                    let Message::Text(text) = msg else { continue };
                    let frame = decode_server(&text).unwrap_or_else(|e| {
                        panic!("the server sent {text:?}, which does not decode: {e}")
                    });
                    let mut learned = lock(&learned);
                    match &frame {
                        ServerFrame::LoggedIn { token, .. } => learned.tokens.push(token.clone()),
                        ServerFrame::Conversation { conversation, .. } => {
                            learned.conversations.push(conversation.id)
                        }
                        ServerFrame::LoggedOut { .. } => {
                            if let Some((token, _)) = &lock(&t).hello {
                                learned.revoked.insert(token.clone());
                            }
                        }
                        _ => {}
                    }
                    drop(learned);
                    lock(&t).frames.push(frame);
                }
            });
            let mut live = Live {
                sink,
                reader,
                transcript,
                next_nonce: 1_000_000,
            };
            if self.auto_hello {
                let token = self.seeded_tokens[k % self.seeded_tokens.len()].clone();
                let revoked = lock(&self.learned).revoked.contains(&token);
                lock(&live.transcript).hello = Some((token.clone(), revoked));
                let hello = encode(&ClientFrame::Hello {
                    version: PROTOCOL_VERSION,
                    token,
                });
                let _ = live.sink.send(Message::text(hello)).await;
            }
            self.conns[k] = Some(live);
        }
        self.conns[k].as_mut()
    }

    async fn send(&mut self, k: u8, msg: Message) {
        if let Some(live) = self.conn(k).await {
            // A closed connection just ignores it.
            let _ = live.sink.send(msg).await;
        }
    }

    async fn barrier(&mut self, k: u8) {
        let Some(live) = self.conn(k).await else {
            return;
        };
        live.next_nonce += 1;
        let nonce = live.next_nonce;
        let ping = encode(&ClientFrame::Ping { nonce });
        if live.sink.send(Message::text(ping)).await.is_err() {
            return;
        }
        let transcript = live.transcript.clone();
        let deadline = tokio::time::Instant::now() + BARRIER_WAIT;
        loop {
            let seen = lock(&transcript)
                .frames
                .iter()
                .any(|f| matches!(f, ServerFrame::Pong { nonce: n } if *n == nonce));
            if seen || live.reader.is_finished() || tokio::time::Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }

    /// Sends a text message; if it is a `hello` (a mutated or arbitrary
    /// text can be one too), records its token first.
    async fn send_text(&mut self, k: u8, text: String) {
        if let Ok(ClientFrame::Hello { token, .. }) = decode_client(&text) {
            let revoked = lock(&self.learned).revoked.contains(&token);
            if let Some(live) = self.conn(k).await {
                lock(&live.transcript).hello.get_or_insert((token, revoked));
            }
        }
        self.send(k, Message::text(text)).await;
    }

    async fn close(&mut self, k: usize) {
        if let Some(mut live) = self.conns[k].take() {
            let _ = live.sink.close().await;
            if tokio::time::timeout(BARRIER_WAIT, &mut live.reader)
                .await
                .is_err()
            {
                live.reader.abort();
            }
            self.closed.push(live.transcript);
        }
    }

    async fn run(&mut self, op: &Op) {
        match op {
            Op::Frame(k, f) => {
                let nonce = u64::from(*k);
                let frame = encode(&self.client_frame(f, nonce));
                self.send_text(*k, frame).await;
            }
            Op::Text(k, text) => self.send_text(*k, text.clone()).await,
            Op::Mutated(k, f, at, byte) => {
                let mut bytes = encode(&self.client_frame(f, 7)).into_bytes();
                let at = usize::from(*at) % bytes.len();
                bytes[at] = *byte;
                // Only valid UTF-8 can be a text message.
                if let Ok(text) = String::from_utf8(bytes) {
                    self.send_text(*k, text).await;
                }
            }
            Op::Binary(k, data) => self.send(*k, Message::binary(data.clone())).await,
            Op::Barrier(k) => self.barrier(*k).await,
            Op::Reconnect(k) => self.close(usize::from(*k) % CONNS).await,
        }
    }
}

/// Checks what every connection received against what the store holds.
fn check(store: &SqliteStore, transcripts: &[Arc<Mutex<Transcript>>], seeded: &[ConversationId]) {
    // Every conversation anyone could have touched.
    let mut convs: BTreeSet<ConversationId> = seeded.iter().copied().collect();
    for t in transcripts {
        for f in &lock(t).frames {
            match f {
                ServerFrame::Conversation { conversation, .. } => {
                    convs.insert(conversation.id);
                }
                ServerFrame::Ack { conversation, .. } => {
                    convs.insert(*conversation);
                }
                _ => {}
            }
        }
    }
    let mut stored: HashMap<(UserId, MessageId), WireMessage> = HashMap::new();
    let mut ids: HashSet<MessageId> = HashSet::new();
    let mut members_of: BTreeMap<ConversationId, Vec<UserId>> = BTreeMap::new();
    for &c in &convs {
        let members = store
            .members(c)
            .expect("members")
            .expect("conversation exists");
        let (marks, last) = store.marks(c).expect("marks").expect("conversation exists");
        let msgs = store
            .messages_after(c, Seq::ZERO, u32::MAX)
            .expect("messages");
        assert_eq!(
            msgs.len() as u64,
            last.0,
            "conversation {c}: not 1..=last_seq"
        );
        let by_id: HashMap<MessageId, &WireMessage> = msgs.iter().map(|m| (m.id, m)).collect();
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(
                m.seq,
                Seq(i as u64 + 1),
                "conversation {c}: seq gap or disorder"
            );
            assert!(
                members.contains(&m.sender),
                "a non-member's message is stored"
            );
            assert!(ids.insert(m.id), "id {} stored twice", m.id);
            if let Some(a) = &m.action {
                let t = by_id
                    .get(&a.target)
                    .expect("action on a message of another conversation");
                assert!(
                    t.action.is_none() && t.seq < m.seq,
                    "action on an action or a later entry"
                );
                if !matches!(a.kind, ActionKind::React { .. }) {
                    assert_eq!(t.sender, m.sender, "edit or delete by someone else");
                }
            }
            stored.insert((m.sender, m.id), m.clone());
        }
        // Deleted messages and their edits have no text left.
        let deleted: HashSet<MessageId> = msgs
            .iter()
            .filter_map(|m| m.action.as_ref())
            .filter(|a| a.kind == ActionKind::Delete)
            .map(|a| a.target)
            .collect();
        for m in &msgs {
            let erased = deleted.contains(&m.id)
                || matches!(&m.action, Some(a) if a.kind == ActionKind::Edit && deleted.contains(&a.target));
            if erased {
                assert!(m.body.is_empty(), "text of a deleted message survives");
            }
        }
        assert_eq!(marks.len(), members.len());
        for mk in &marks {
            assert!(
                mk.read <= mk.delivered && mk.delivered <= last,
                "marks out of order: {mk:?}"
            );
        }
        members_of.insert(c, members);
    }
    for t in transcripts {
        let t = lock(t);
        let mut me: Option<UserId> = None;
        for f in &t.frames {
            let Some(user) = me else {
                match f {
                    ServerFrame::Welcome { user, .. } => {
                        let (token, revoked) = t.hello.as_ref().expect("welcome without hello");
                        assert!(!revoked, "welcome for the logged-out token {token:?}");
                        me = Some(*user);
                    }
                    ServerFrame::Registered { .. }
                    | ServerFrame::LoggedIn { .. }
                    | ServerFrame::Pong { .. }
                    | ServerFrame::Error { .. } => {}
                    other => panic!("{other:?} before welcome"),
                }
                continue;
            };
            let member = |c: &ConversationId| members_of.get(c).is_some_and(|m| m.contains(&user));
            match f {
                ServerFrame::Ack {
                    id,
                    conversation,
                    seq,
                    ..
                } => {
                    let m = stored.get(&(user, *id)).expect("acked message not stored");
                    assert_eq!(
                        (m.conversation, m.seq),
                        (*conversation, *seq),
                        "ack differs from the store"
                    );
                }
                ServerFrame::Message { message } => {
                    assert!(
                        member(&message.conversation),
                        "message pushed to a non-member"
                    );
                    let m = stored
                        .get(&(message.sender, message.id))
                        .expect("pushed message not stored");
                    assert_eq!(m.seq, message.seq);
                }
                ServerFrame::Marks { conversation, .. } => {
                    assert!(member(conversation), "marks pushed to a non-member")
                }
                ServerFrame::Batch {
                    conversation,
                    messages,
                    last_seq,
                    ..
                } => {
                    assert!(member(conversation), "batch for a non-member");
                    for w in messages.windows(2) {
                        assert_eq!(w[1].seq, w[0].seq.next(), "batch with a gap");
                    }
                    assert!(messages
                        .iter()
                        .all(|m| m.seq <= *last_seq && m.conversation == *conversation));
                }
                ServerFrame::Conversation { conversation, .. } => {
                    assert!(
                        conversation.members.iter().any(|m| m.user == user),
                        "foreign conversation"
                    );
                }
                ServerFrame::Conversations { conversations, .. } => {
                    for c in conversations {
                        assert!(
                            c.members.iter().any(|m| m.user == user),
                            "foreign conversation listed"
                        );
                    }
                }
                _ => {}
            }
        }
    }
}

async fn run_script(script: &Script) {
    let store = Arc::new(SqliteStore::open_in_memory().expect("in-memory store"));
    let dyn_store: Arc<dyn ServerStore> = store.clone();
    let mut users = Vec::new();
    let mut seeded_tokens = Vec::new();
    for name in NAMES {
        users.push(
            auth::register(dyn_store.clone(), name.into(), PASSWORD.into())
                .await
                .expect("register"),
        );
        let ok = auth::login(
            dyn_store.clone(),
            name.into(),
            PASSWORD.into(),
            "seed".into(),
        )
        .await
        .expect("login");
        seeded_tokens.push(ok.token);
    }
    let seeded_convs: Vec<ConversationId> = [
        vec![users[0], users[1]],
        vec![users[0]],
        vec![users[1], users[2]],
    ]
    .iter()
    .map(|m| store.create_conversation("seed", m).expect("create").id)
    .collect();
    let config = ServerConfig {
        limits: Limits {
            max_body_bytes: usize::from(script.max_body).max(1),
            rate_per_sec: if script.burst == 0 { 0 } else { 1 },
            rate_burst: u32::from(script.burst),
            max_page: 4,
            max_title_bytes: 16,
            max_members: 3,
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    let mut h = Harness {
        server: InMemoryServer::start(config, dyn_store),
        auto_hello: script.auto_hello,
        learned: Arc::default(),
        seeded_tokens,
        seeded_convs: seeded_convs.clone(),
        conns: (0..CONNS).map(|_| None).collect(),
        closed: Vec::new(),
    };
    for op in script.ops.iter().take(MAX_OPS) {
        h.run(op).await;
    }
    for k in 0..CONNS {
        if h.conns[k].is_some() {
            h.barrier(k as u8).await;
            h.close(k).await;
        }
    }
    let Harness {
        server,
        closed: transcripts,
        ..
    } = h;
    server
        .stop()
        .await
        .expect("the server did not stop cleanly");
    check(&store, &transcripts, &seeded_convs);
}

// `cargo fuzz fmt server_frames <input>` prints an input as a `Script`.
fuzz_target!(|script: Script| {
    // One current-thread runtime for the process: every input still gets
    // its own store and server, but not a new blocking thread pool.
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
    }
    RUNTIME.with(|rt| rt.block_on(run_script(&script)));
});
