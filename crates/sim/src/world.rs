//! The simulated world: devices, the server, the links between them, one
//! virtual clock and one event queue, all driven by one seeded generator.
//!
//! Events are kept in a `BTreeMap` keyed by (virtual instant, insertion
//! number), so two runs of the same seed process exactly the same events
//! in exactly the same order. Nothing reads the wall clock, and nothing
//! iterates a hash map where the order could change what happens.

use crate::checker::{self, History};
use crate::client::SimClient;
use crate::link::{Link, Profile};
use crate::server::{ConnId, Out, Sabotage, SimServer};
use crate::workload::Workload;
use chatsync_client::core::{Config, Identity, Syncer};
use chatsync_protocol::{ClientFrame, ConversationId, Limits, MessageId, ServerFrame, UserId};
use fastrand::Rng;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The shape of a run. [`SimConfig::default`] is what CI runs per seed.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of accounts.
    pub users: usize,
    /// The account of each device.
    pub devices: Vec<usize>,
    /// Members (account indices) of each conversation created at set-up.
    pub conversations: Vec<Vec<usize>>,
    /// Workload operations (actions and faults) before healing.
    pub ops: usize,
    /// Bound on virtual time from healing until the world must be idle.
    pub settle: Duration,
    /// A planted defect (the checker must notice it).
    pub sabotage: Option<Sabotage>,
    /// Inject failed group commits (retried in place, as the real
    /// committer does; see the `failed_commit_keeps_order` test).
    pub commit_failures: bool,
    /// Record a trace of every event.
    pub trace: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            users: 3,
            devices: vec![0, 0, 1, 2],
            conversations: vec![vec![0, 1, 2], vec![0, 1]],
            ops: 60,
            settle: Duration::from_secs(600),
            sabotage: None,
            commit_failures: true,
            trace: false,
        }
    }
}

/// What one run found.
#[derive(Debug, Default)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Every broken invariant, with details; empty when the run passed.
    pub violations: Vec<String>,
    /// The event trace, when asked for.
    pub trace: Vec<String>,
    /// Events processed.
    pub events: u64,
    /// Messages and actions the workload queued.
    pub queued: usize,
    /// Faults injected.
    pub faults: usize,
    /// Virtual time the run took.
    pub virtual_time: Duration,
}

#[derive(Debug)]
enum Ev {
    Work,
    Heal,
    Hello { conn: ConnId },
    ToServer { conn: ConnId, frame: ClientFrame },
    ToClient { conn: ConnId, frame: ServerFrame },
    ConnectFailed { client: usize, conn: ConnId },
    Closed { client: usize, conn: ConnId },
    ServerSees { conn: ConnId },
    Timer { client: usize },
    Commit,
    ServerUp { limits: Limits },
    ClientUp { client: usize },
}

/// Short names for ids in traces and reports (the server's ids are random,
/// so they are never printed raw).
#[derive(Debug, Default)]
pub struct Names {
    users: BTreeMap<UserId, usize>,
    convs: BTreeMap<ConversationId, usize>,
    msgs: BTreeMap<MessageId, usize>,
}

impl Names {
    /// `u0`, `u1`…
    pub fn user(&self, id: UserId) -> String {
        self.users
            .get(&id)
            .map_or_else(|| "u?".into(), |n| format!("u{n}"))
    }
    /// `c0`, `c1`…
    pub fn conv(&self, id: ConversationId) -> String {
        self.convs
            .get(&id)
            .map_or_else(|| "c?".into(), |n| format!("c{n}"))
    }
    /// `m0`, `m1`…
    pub fn msg(&self, id: MessageId) -> String {
        self.msgs
            .get(&id)
            .map_or_else(|| "m?".into(), |n| format!("m{n}"))
    }
    fn add_conv(&mut self, id: ConversationId) {
        let n = self.convs.len();
        self.convs.entry(id).or_insert(n);
    }
}

/// The world. See the module docs.
pub struct World {
    /// Shape of the run.
    pub cfg: SimConfig,
    /// The one source of randomness.
    pub rng: Rng,
    base: Instant,
    /// Virtual now.
    pub now: Instant,
    events: BTreeMap<(Instant, u64), Ev>,
    next_event: u64,
    /// The server.
    pub server: SimServer,
    commit_scheduled: bool,
    /// The devices.
    pub clients: Vec<SimClient>,
    links: BTreeMap<ConnId, (usize, Link)>,
    next_conn: ConnId,
    /// Account ids and names, by index.
    pub users: Vec<(UserId, String)>,
    /// Whether server → client frames may be dropped and reordered.
    pub hostile: bool,
    net_down_until: Vec<Option<Instant>>,
    /// What happened, for the checker.
    pub history: History,
    /// Short names for the trace.
    pub names: Names,
    trace: Option<Vec<String>>,
    /// Set once faults stopped.
    pub healed: bool,
    workload: Workload,
    next_msg: usize,
    events_done: u64,
    faults: usize,
}

/// Runs one seed end to end and checks every invariant.
pub fn run(seed: u64, cfg: &SimConfig) -> Report {
    let mut w = match World::new(seed, cfg.clone()) {
        Ok(w) => w,
        Err(e) => {
            return Report {
                seed,
                violations: vec![format!("set-up failed: {e}")],
                ..Report::default()
            }
        }
    };
    w.run();
    Report {
        seed,
        violations: std::mem::take(&mut w.history.violations),
        trace: w.trace.take().unwrap_or_default(),
        events: w.events_done,
        queued: w.history.sent.len(),
        faults: w.faults,
        virtual_time: w.now - w.base,
    }
}

impl World {
    /// A world for `seed`: accounts, devices and conversations set up; the
    /// devices about to connect.
    pub fn new(seed: u64, cfg: SimConfig) -> Result<World, chatsync_server::ServerError> {
        let mut rng = Rng::with_seed(seed);
        let base = Instant::now();
        let hostile = rng.f64() < 0.25;
        let limits = random_limits(&mut rng);
        let mut server = SimServer::new(limits)?;
        server.sabotage = cfg.sabotage;
        let mut names = Names::default();
        let mut users = Vec::new();
        for u in 0..cfg.users {
            let tokens: Vec<[u8; 32]> = cfg
                .devices
                .iter()
                .enumerate()
                .filter(|(_, &owner)| owner == u)
                .map(|(d, _)| token(d))
                .collect();
            let name = format!("u{u}");
            let id = server.create_account(&name, &tokens)?;
            names.users.insert(id, u);
            users.push((id, name));
        }
        for (i, members) in cfg.conversations.iter().enumerate() {
            let ids: Vec<UserId> = members.iter().map(|&m| users[m].0).collect();
            let info = server.create_conversation(&format!("conv {i}"), &ids)?;
            names.add_conv(info.id);
        }
        let mut clients = Vec::new();
        for (d, &u) in cfg.devices.iter().enumerate() {
            let identity = Identity {
                user: users[u].0,
                username: users[u].1.clone(),
            };
            let config = random_config(&mut rng);
            let mut c = SimClient::new(base, u, identity, token(d), config);
            c.sabotage = cfg.sabotage;
            clients.push(c);
        }
        let workload = Workload::new(cfg.ops);
        let mut w = World {
            trace: cfg.trace.then(Vec::new),
            net_down_until: vec![None; clients.len()],
            cfg,
            rng,
            base,
            now: base,
            events: BTreeMap::new(),
            next_event: 0,
            server,
            commit_scheduled: false,
            clients,
            links: BTreeMap::new(),
            next_conn: 1,
            users,
            hostile,
            history: History::default(),
            names,
            healed: false,
            workload,
            next_msg: 0,
            events_done: 0,
            faults: 0,
        };
        let (body, page) = (w.server.limits.max_body_bytes, w.server.limits.max_page);
        w.log(|| format!("seed {seed}: hostile={hostile}, max_body_bytes {body}, max_page {page}"));
        for c in 0..w.clients.len() {
            let config = format!("{:?}", w.clients[c].config);
            w.log(|| format!("d{c}: {config}"));
            w.after_input(c);
        }
        w.schedule(Duration::from_millis(300), Ev::Work);
        Ok(w)
    }

    // ---- the event loop -------------------------------------------------

    fn schedule(&mut self, after: Duration, ev: Ev) {
        self.schedule_at(self.now + after, ev);
    }

    fn schedule_at(&mut self, at: Instant, ev: Ev) {
        let at = at.max(self.now);
        self.events.insert((at, self.next_event), ev);
        self.next_event += 1;
    }

    /// Runs the workload, heals, runs until idle (bounded), then checks.
    fn run(&mut self) {
        let mut deadline = None;
        while let Some(((at, _), ev)) = self.events.pop_first() {
            if deadline.is_some_and(|d| at > d) {
                self.events.insert((at, 0), ev);
                break;
            }
            self.now = at;
            self.events_done += 1;
            let heal = matches!(ev, Ev::Heal);
            self.dispatch(ev);
            if heal {
                deadline = Some(self.now + self.cfg.settle);
            }
        }
        if !self.events.is_empty() {
            let pending: Vec<String> = self
                .events
                .values()
                .take(5)
                .map(|e| format!("{e:?}").chars().take(120).collect())
                .collect();
            self.history.violation(format!(
                "no stuck message / settling: the world is still busy {:?} after healing; next events: {pending:?}",
                self.cfg.settle
            ));
        }
        checker::final_check(self);
    }

    /// Milliseconds of virtual time since the start.
    pub fn ms(&self) -> u64 {
        (self.now - self.base).as_millis() as u64
    }

    /// Adds a trace line, when tracing.
    pub fn log(&mut self, line: impl FnOnce() -> String) {
        if self.trace.is_some() {
            let text = format!("{:>7}ms {}", self.ms(), line());
            if let Some(t) = self.trace.as_mut() {
                t.push(text);
            }
        }
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Work => {
                let mut workload = std::mem::replace(&mut self.workload, Workload::new(0));
                let more = workload.step(self);
                self.workload = workload;
                if more {
                    let gap = Duration::from_millis(self.rng.u64(0..=400));
                    self.schedule(gap, Ev::Work);
                } else {
                    self.schedule(Duration::from_secs(1), Ev::Heal);
                }
            }
            Ev::Heal => self.heal(),
            Ev::Hello { conn } => self.on_hello(conn),
            Ev::ToServer { conn, frame } => self.on_to_server(conn, frame),
            Ev::ToClient { conn, frame } => self.on_to_client(conn, frame),
            Ev::ConnectFailed { client, conn } | Ev::Closed { client, conn } => {
                let c = &mut self.clients[client];
                if c.conn == Some(conn) && c.syncer.is_some() {
                    c.conn = None;
                    c.online = false;
                    self.log(|| format!("d{client} connection {conn} lost"));
                    self.input(client, |s, now| s.handle_disconnected(now));
                }
            }
            Ev::ServerSees { conn } => self.server.detach(conn),
            Ev::Timer { client } => {
                let now = self.now;
                let c = &mut self.clients[client];
                c.timer = None;
                let due = c
                    .syncer
                    .as_ref()
                    .and_then(Syncer::poll_timeout)
                    .is_some_and(|t| t <= now);
                if due {
                    self.input(client, |s, now| s.handle_timeout(now));
                } else {
                    self.arm_timer(client);
                }
            }
            Ev::Commit => {
                self.commit_scheduled = false;
                if self.server.up {
                    let mut out = Out::new();
                    self.server.commit(&mut out);
                    self.learn_conversations();
                    self.log(|| "server: commit".to_string());
                    self.emit(out);
                    // A failed batch stays queued and is retried in place.
                    if self.server.has_queued() {
                        self.commit_scheduled = true;
                        let fsync = Duration::from_millis(self.rng.u64(1..=12));
                        self.schedule(fsync, Ev::Commit);
                    }
                }
            }
            Ev::ServerUp { limits } => {
                if !self.server.up {
                    self.log(|| format!("server: up, max_body_bytes {}", limits.max_body_bytes));
                    self.server.restart(limits);
                }
            }
            Ev::ClientUp { client } => {
                if self.clients[client].syncer.is_none() {
                    self.log(|| format!("d{client}: restarts from storage"));
                    let now = self.now;
                    self.clients[client].start(now);
                    self.after_input(client);
                }
            }
        }
    }

    fn on_hello(&mut self, conn: ConnId) {
        let Some((client, link)) = self.links.get(&conn) else {
            return;
        };
        let client = *client;
        if !link.up_open(self.now) {
            return; // cut before the handshake completed: Closed follows
        }
        if !self.server.up {
            let after = link.profile.latency;
            self.schedule(after, Ev::ConnectFailed { client, conn });
            return;
        }
        let token = self.clients[client].token;
        let mut out = Out::new();
        self.server.hello(conn, &token, &mut out);
        self.log(|| format!("server: hello from d{client} on {conn}"));
        self.emit(out);
    }

    fn on_to_server(&mut self, conn: ConnId, frame: ClientFrame) {
        let Some((client, link)) = self.links.get(&conn) else {
            return;
        };
        let client = *client;
        if !link.up_open(self.now) || !self.server.up || !self.server.is_attached(conn) {
            let text = self.fmt_client(&frame);
            self.log(|| format!("d{client} -> server LOST {text}"));
            return;
        }
        if self.trace.is_some() {
            let text = self.fmt_client(&frame);
            self.log(|| format!("d{client} -> server {text}"));
        }
        let create = matches!(frame, ClientFrame::CreateConversation { .. });
        let mut out = Out::new();
        self.server.handle(conn, frame, &mut out);
        if create {
            self.learn_conversations();
        }
        self.emit(out);
        if self.server.has_queued() && !self.commit_scheduled {
            self.commit_scheduled = true;
            let fsync = Duration::from_millis(self.rng.u64(1..=12));
            self.schedule(fsync, Ev::Commit);
        }
    }

    fn on_to_client(&mut self, conn: ConnId, frame: ServerFrame) {
        let Some((client, link)) = self.links.get(&conn) else {
            return;
        };
        let client = *client;
        let open = link.down_open(self.now);
        let c = &self.clients[client];
        if !open || c.conn != Some(conn) || c.syncer.is_none() {
            return;
        }
        if self.trace.is_some() {
            let text = self.fmt_server(&frame);
            self.log(|| format!("server -> d{client} {text}"));
        }
        match frame {
            ServerFrame::Welcome { limits, .. } => {
                self.clients[client].online = true;
                self.input(client, |s, now| s.handle_connected(now, limits));
            }
            ServerFrame::Error { req: None, .. } if !self.clients[client].online => {
                // A refused hello: the server closes the connection.
                self.history
                    .violation(format!("d{client}: hello refused: {frame:?}"));
            }
            frame => {
                if self.clients[client].online {
                    self.input(client, |s, now| s.handle_frame(now, frame));
                }
            }
        }
    }

    // ---- devices ----------------------------------------------------------

    /// Feeds an input to device `client`'s syncer, then drains it.
    pub fn input(&mut self, client: usize, f: impl FnOnce(&mut Syncer, Instant)) {
        let now = self.now;
        if let Some(s) = self.clients[client].syncer.as_mut() {
            f(s, now);
        }
        self.after_input(client);
    }

    /// Drains device `client` per the calling contract and routes what it
    /// produced: status changes to the checker, frames to its link, a
    /// connection request to the network; then re-arms its timer.
    pub fn after_input(&mut self, client: usize) {
        let drained = self.clients[client].drain();
        if drained.rejected {
            self.history
                .violation(format!("d{client}: the session was rejected"));
        }
        checker::on_changes(self, client, &drained.changes);
        for frame in drained.frames {
            self.transmit(client, frame);
        }
        if drained.connect {
            self.connect(client);
        }
        self.arm_timer(client);
    }

    fn arm_timer(&mut self, client: usize) {
        let c = &self.clients[client];
        let next = c.syncer.as_ref().and_then(Syncer::poll_timeout);
        if next.is_some() && next != c.timer {
            self.clients[client].timer = next;
            if let Some(at) = next {
                self.schedule_at(at, Ev::Timer { client });
            }
        }
    }

    fn transmit(&mut self, client: usize, frame: ClientFrame) {
        let c = &self.clients[client];
        let (Some(conn), true) = (c.conn, c.online) else {
            self.history.violation(format!(
                "d{client}: the syncer transmitted while offline: {frame:?}"
            ));
            return;
        };
        let Some((_, link)) = self.links.get_mut(&conn) else {
            return;
        };
        let at = link.up(self.now, &mut self.rng);
        if self.trace.is_some() {
            let text = self.fmt_client(&frame);
            let eta = at - self.now;
            self.log(|| format!("d{client} transmits {text} (arrives in {eta:?})"));
        }
        self.schedule_at(at, Ev::ToServer { conn, frame });
    }

    fn connect(&mut self, client: usize) {
        let conn = self.next_conn;
        self.next_conn += 1;
        let profile = if self.healed {
            Profile::perfect()
        } else {
            Profile::random(&mut self.rng, self.hostile)
        };
        let mut link = Link::new(self.now, profile);
        let c = &mut self.clients[client];
        c.conn = Some(conn);
        c.online = false;
        let down = self.net_down_until[client].is_some_and(|t| t > self.now);
        if down {
            // No route: the attempt times out.
            let after = Duration::from_millis(self.rng.u64(300..=3000));
            self.schedule(after, Ev::ConnectFailed { client, conn });
        } else {
            // TCP and WebSocket handshakes, then hello.
            let at = link.up(self.now, &mut self.rng) + link.profile.latency * 2;
            self.schedule_at(at, Ev::Hello { conn });
        }
        self.log(|| format!("d{client}: connecting ({conn})"));
        self.links.insert(conn, (client, link));
    }

    fn emit(&mut self, out: Out) {
        for (conn, frame) in out {
            let Some((_, link)) = self.links.get_mut(&conn) else {
                continue;
            };
            let reliable = matches!(frame, ServerFrame::Welcome { .. });
            if let Some(at) = link.down(self.now, &mut self.rng, reliable) {
                self.schedule_at(at, Ev::ToClient { conn, frame });
            }
        }
    }

    // ---- faults -------------------------------------------------------------

    /// Cuts connection `conn`; its device notices after `detect`.
    pub fn cut(&mut self, conn: ConnId, detect: Duration) {
        let Some((client, link)) = self.links.get_mut(&conn) else {
            return;
        };
        if link.is_cut() {
            return;
        }
        let client = *client;
        let grace = link.profile.latency.mul_f64(self.rng.f64() * 2.0);
        let server_sees = link.cut(self.now, grace);
        self.faults += 1;
        self.schedule_at(
            server_sees + Duration::from_millis(1),
            Ev::ServerSees { conn },
        );
        self.schedule(detect, Ev::Closed { client, conn });
        self.log(|| format!("FAULT: connection {conn} of d{client} cut, noticed in {detect:?}"));
    }

    /// How long a device takes to notice a dead connection: at once (a
    /// reset) or after the driver's silence timeout.
    pub fn random_detect(&mut self) -> Duration {
        if self.rng.f64() < 0.7 {
            Duration::from_millis(self.rng.u64(1..=300))
        } else {
            Duration::from_millis(self.rng.u64(1000..=30_000))
        }
    }

    /// The current connection of device `client`, if any.
    pub fn conn_of(&self, client: usize) -> Option<ConnId> {
        self.clients[client].conn
    }

    /// Device `client` loses the network for `dur`.
    pub fn partition(&mut self, client: usize, dur: Duration) {
        self.net_down_until[client] = Some(self.now + dur);
        self.log(|| format!("FAULT: d{client} offline for {dur:?}"));
        self.faults += 1;
        if let Some(conn) = self.conn_of(client) {
            let detect = self.random_detect();
            self.cut(conn, detect);
        }
    }

    /// Device `client` is killed and restarts after `down`.
    pub fn crash_client(&mut self, client: usize, down: Duration) {
        self.log(|| format!("FAULT: d{client} killed, restarts in {down:?}"));
        self.faults += 1;
        if let Some(conn) = self.conn_of(client) {
            self.cut(conn, Duration::ZERO);
        }
        self.clients[client].crash();
        self.schedule(down, Ev::ClientUp { client });
    }

    /// The server is killed and restarts after `down` with `limits`.
    pub fn crash_server(&mut self, down: Duration, limits: Limits) {
        if !self.server.up {
            return;
        }
        self.log(|| format!("FAULT: server killed, restarts in {down:?}"));
        self.faults += 1;
        for conn in self.server.crash() {
            if let Some((_, link)) = self.links.get_mut(&conn) {
                link.cut(self.now, Duration::ZERO);
                let client = self.links[&conn].0;
                let detect = Duration::from_millis(self.rng.u64(1..=200));
                self.schedule(detect, Ev::Closed { client, conn });
            }
        }
        self.schedule(down, Ev::ServerUp { limits });
    }

    /// The server's next group commit fails.
    pub fn fail_commit(&mut self) {
        self.log(|| "FAULT: the next commit fails".to_string());
        self.faults += 1;
        self.server.fail_next_commit = true;
    }

    /// The path of device `client`'s connection stalls for `dur`.
    pub fn stall(&mut self, client: usize, dur: Duration) {
        if let Some(conn) = self.conn_of(client) {
            if let Some((_, link)) = self.links.get_mut(&conn) {
                link.stall(self.now + dur);
                self.faults += 1;
                self.log(|| format!("FAULT: d{client}'s path stalls for {dur:?}"));
            }
        }
    }

    /// Stops every fault: the server and every device up, the network
    /// perfect. In the hostile mode every connection is also cut once, since
    /// frames eaten without a disconnect are only recovered by a reconnect.
    fn heal(&mut self) {
        self.healed = true;
        self.log(|| "HEAL".to_string());
        if !self.server.up {
            let limits = self.server.limits.clone();
            self.server.restart(limits);
        }
        for client in 0..self.clients.len() {
            self.net_down_until[client] = None;
            if self.clients[client].syncer.is_none() {
                let now = self.now;
                self.clients[client].start(now);
                self.after_input(client);
            }
        }
        for (_, link) in self.links.values_mut() {
            link.heal();
        }
        if self.hostile {
            let conns: Vec<ConnId> = self.clients.iter().filter_map(|c| c.conn).collect();
            for conn in conns {
                self.cut(conn, Duration::from_millis(1));
            }
        }
    }

    // ---- helpers for the workload ------------------------------------------

    /// A new message id: a UUIDv7 made from virtual time and the generator.
    pub fn new_id(&mut self) -> MessageId {
        let mut bytes = [0u8; 10];
        for b in &mut bytes {
            *b = self.rng.u8(..);
        }
        let ms = 1_700_000_000_000 + self.ms();
        let id = MessageId(uuid::Builder::from_unix_timestamp_millis(ms, &bytes).into_uuid());
        self.names.msgs.insert(id, self.next_msg);
        self.next_msg += 1;
        id
    }

    /// Records a conversation created during the run.
    pub fn learn_conversations(&mut self) {
        for c in self.server.conversations() {
            self.names.add_conv(c);
        }
    }

    /// Milliseconds since the epoch, virtual.
    pub fn epoch_ms(&self) -> i64 {
        1_700_000_000_000 + self.ms() as i64
    }

    fn fmt_client(&self, f: &ClientFrame) -> String {
        let n = &self.names;
        match f {
            ClientFrame::Send {
                id,
                conversation,
                body,
                action,
            } => format!(
                "send {} {} {:?}{}",
                n.msg(*id),
                n.conv(*conversation),
                clip(body),
                action.as_ref().map_or(String::new(), |a| format!(
                    " {:?} {}",
                    a.kind,
                    n.msg(a.target)
                ))
            ),
            ClientFrame::Received { conversation, seq } => {
                format!("received {} {seq}", n.conv(*conversation))
            }
            ClientFrame::Read { conversation, seq } => {
                format!("read {} {seq}", n.conv(*conversation))
            }
            ClientFrame::Sync {
                req,
                conversation,
                after,
                limit,
            } => format!(
                "sync#{req} {} after {after} limit {limit}",
                n.conv(*conversation)
            ),
            ClientFrame::ListConversations { req } => format!("list#{req}"),
            ClientFrame::CreateConversation { req, members, .. } => {
                format!("create#{req} {members:?}")
            }
            other => format!("{other:?}"),
        }
    }

    fn fmt_server(&self, f: &ServerFrame) -> String {
        let n = &self.names;
        let wire = |m: &chatsync_protocol::WireMessage| {
            let mut s = format!(
                "{}@{}:{} by {} {:?}",
                n.msg(m.id),
                n.conv(m.conversation),
                m.seq,
                n.user(m.sender),
                clip(&m.body)
            );
            if let Some(a) = &m.action {
                let _ = write!(s, " {:?} {}", a.kind, n.msg(a.target));
            }
            s
        };
        match f {
            ServerFrame::Ack {
                id,
                conversation,
                seq,
                ..
            } => format!("ack {} {}:{seq}", n.msg(*id), n.conv(*conversation)),
            ServerFrame::Refused { id, refusal } => {
                format!("refused {} {:?}", n.msg(*id), refusal.code)
            }
            ServerFrame::Message { message } => format!("message {}", wire(message)),
            ServerFrame::Marks {
                conversation,
                marks,
                others,
            } => format!(
                "marks {} {} delivered {} read {}{}",
                n.conv(*conversation),
                n.user(marks.user),
                marks.delivered,
                marks.read,
                others.map_or(String::new(), |o| format!(
                    " others delivered {} read {}",
                    o.delivered, o.read
                ))
            ),
            ServerFrame::Batch {
                req,
                conversation,
                messages,
                last_seq,
                ..
            } => format!(
                "batch#{req} {} last {last_seq} [{}]",
                n.conv(*conversation),
                messages.iter().map(wire).collect::<Vec<_>>().join(", ")
            ),
            ServerFrame::Conversation { req, conversation } => {
                format!("conversation {:?} {}", req, n.conv(conversation.id))
            }
            ServerFrame::Conversations { req, conversations } => format!(
                "conversations#{req} [{}]",
                conversations
                    .iter()
                    .map(|c| format!("{} last {}", n.conv(c.id), c.last_seq))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ServerFrame::Welcome { .. } => "welcome".to_string(),
            other => format!("{other:?}"),
        }
    }
}

fn clip(s: &str) -> String {
    if s.len() <= 24 {
        s.to_string()
    } else {
        format!(
            "{}…({} bytes)",
            s.chars().take(12).collect::<String>(),
            s.len()
        )
    }
}

/// Session token of device `d` (what the server stores is its hash; the
/// simulation uses the bytes directly).
fn token(d: usize) -> [u8; 32] {
    let mut t = [0u8; 32];
    t[0] = 0xD0;
    t[1] = d as u8;
    t
}

/// Server limits of a run: sometimes a low body limit, so that refusals
/// (`too_large`) happen; small pages, so that catch-up pages.
pub fn random_limits(rng: &mut Rng) -> Limits {
    Limits {
        max_body_bytes: if rng.f64() < 0.3 { 48 } else { 4096 },
        max_page: rng.u32(2..=8),
        // The rate gate is not modelled; say so to the clients.
        rate_per_sec: 0,
        ..Limits::default()
    }
}

// Every field is set today; the update keeps the simulation compiling when
// the syncer grows a tunable (it then runs with its default).
#[allow(clippy::needless_update)]
fn random_config(rng: &mut Rng) -> Config {
    Config {
        reconnect_base: Duration::from_millis(rng.u64(50..=300)),
        reconnect_cap: Duration::from_millis(rng.u64(1000..=5000)),
        ack_timeout: Duration::from_millis(rng.u64(400..=4000)),
        window: [1, 3, 1024][rng.usize(0..3)],
        sync_page: rng.u32(1..=6),
        retry_budget: 20,
        seed: rng.u64(..),
        ..Config::default()
    }
}
