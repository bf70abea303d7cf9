//! The event loop: terminal input, the client's timeline changes, its
//! connection state and events go into the [`App`]; the app's actions are
//! carried out with the [`Client`]; then the screen is drawn.
//!
//! Subscriptions are polled directly (no forwarding task), so a message is
//! on screen in the same step as the `send` that stored it.

use crate::app::window::PAGE;
use crate::app::{Action, App, Summary};
use crate::view;
use anyhow::Context;
use chatsync_client::core::Event;
use chatsync_client::{Client, ClientError, ConnectionState, Conversation, TimelineChange};
use chatsync_protocol::{ConversationId, ConversationInfo, MessageId, Seq};
use ratatui::backend::Backend;
use ratatui::crossterm::event::{self as ct, Event as CtEvent};
use ratatui::Terminal;
use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, watch};

/// A terminal event and when it was read.
pub type Input = (Instant, CtEvent);

/// Reads terminal events on a thread of its own, stamped with the time
/// they were read. Stops once the receiver is dropped.
pub fn spawn_input() -> mpsc::UnboundedReceiver<Input> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while !tx.is_closed() {
            match ct::poll(Duration::from_millis(200)) {
                Ok(true) => match ct::read() {
                    Ok(ev) => {
                        if tx.send((Instant::now(), ev)).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                },
                Ok(false) => {}
                Err(_) => break,
            }
        }
    });
    rx
}

/// Work finished in the background.
enum Done {
    Created(Result<ConversationInfo, ClientError>),
}

/// Keystroke-to-screen measurement of sent messages.
struct Timing {
    file: File,
    pending: Option<(Instant, MessageId)>,
}

/// The terminal client bound to a client and a terminal.
pub struct Session<B: Backend> {
    client: Client,
    /// The application state.
    pub app: App,
    terminal: Terminal<B>,
    subs: Vec<(ConversationId, mpsc::UnboundedReceiver<TimelineChange>)>,
    conn: watch::Receiver<ConnectionState>,
    events: broadcast::Receiver<Event>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    dirty: HashSet<ConversationId>,
    reload_list: bool,
    key_at: Option<Instant>,
    timing: Option<Timing>,
}

impl<B: Backend> Session<B> {
    /// Binds the app to `client`, drawing on `terminal`.
    pub async fn new(client: Client, terminal: Terminal<B>) -> anyhow::Result<Self> {
        let now = Instant::now();
        let mut app = App::new(client.user(), client.username(), now);
        let conn = client.connection();
        app.set_connection(*conn.borrow(), now);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Ok(Session {
            events: client.events(),
            client,
            app,
            terminal,
            subs: Vec::new(),
            conn,
            done_tx,
            done_rx,
            dirty: HashSet::new(),
            reload_list: true,
            key_at: None,
            timing: None,
        })
    }

    /// Appends keystroke-to-screen times of sent messages to `path`.
    pub fn log_timings(&mut self, path: &Path) -> anyhow::Result<()> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        self.timing = Some(Timing {
            file,
            pending: None,
        });
        Ok(())
    }

    /// The terminal (tests read its buffer).
    pub fn terminal(&self) -> &Terminal<B> {
        &self.terminal
    }

    /// Runs until the person quits or the input ends.
    pub async fn run(mut self, mut input: mpsc::UnboundedReceiver<Input>) -> anyhow::Result<()> {
        self.step().await?;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        while !self.app.quit {
            tokio::select! {
                ev = input.recv() => match ev {
                    Some((at, ev)) => {
                        self.on_input(ev, at);
                        // Take the rest of a burst (a paste, fast typing) at once.
                        while let Ok((at, ev)) = input.try_recv() {
                            self.perform().await?;
                            self.on_input(ev, at);
                        }
                    }
                    None => break,
                },
                (conv, change) = next_change(&mut self.subs) => {
                    self.dirty.insert(conv);
                    self.app.apply(conv, change);
                }
                Some(done) = self.done_rx.recv() => self.on_done(done),
                _ = tick.tick() => {}
            }
            self.step().await?;
        }
        Ok(())
    }

    /// Feeds one terminal event to the app, then does everything that
    /// follows and draws (what the loop does for each event).
    pub async fn handle(&mut self, ev: CtEvent) -> anyhow::Result<()> {
        self.on_input(ev, Instant::now());
        self.step().await
    }

    fn on_input(&mut self, ev: CtEvent, at: Instant) {
        match ev {
            CtEvent::Key(key) => {
                self.key_at = Some(at);
                self.app.key(key, at);
            }
            CtEvent::Paste(text) => self.app.paste(&text),
            _ => {} // a resize is picked up by the next draw
        }
    }

    /// Carries out pending actions, applies what the client reported,
    /// draws; then loads what the view needs and refreshes the list.
    pub async fn step(&mut self) -> anyhow::Result<()> {
        self.perform().await?;
        self.drain();
        self.draw()?;
        self.app.after_draw();
        if self.perform().await? {
            self.drain();
            self.draw()?;
            self.app.after_draw();
        }
        if self.update_summaries().await? {
            self.draw()?;
        }
        Ok(())
    }

    /// Draws the screen now.
    pub fn draw(&mut self) -> anyhow::Result<()> {
        let now = Instant::now();
        let app = &mut self.app;
        self.terminal
            .draw(|f| view::draw(f, app, now))
            .map_err(|e| anyhow::anyhow!("cannot draw: {e}"))?;
        if let Some(t) = self.timing.as_mut() {
            if let Some((at, id)) = t.pending {
                let shown = self.app.open.as_ref().and_then(|o| {
                    let i = o.window.index_of(id)?;
                    Some(o.window.items()[i].status)
                });
                if let Some(status) = shown {
                    t.pending = None;
                    let us = at.elapsed().as_micros();
                    let status = view::style::name(status);
                    writeln!(
                        t.file,
                        "keystroke_to_screen_us={us} status={status} id={id}"
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Applies every timeline change already reported.
    fn drain_changes(&mut self) {
        for (conv, rx) in &mut self.subs {
            while let Ok(change) = rx.try_recv() {
                self.dirty.insert(*conv);
                self.app.apply(*conv, change);
            }
        }
    }

    /// Applies every change, state and event already reported.
    fn drain(&mut self) {
        self.drain_changes();
        if self.conn.has_changed().unwrap_or(false) {
            let state = *self.conn.borrow_and_update();
            self.app.set_connection(state, Instant::now());
            if state == ConnectionState::Connected {
                self.reload_list = true;
                let client = self.client.clone();
                tokio::spawn(async move {
                    // The answer updates storage; the events that follow
                    // refresh the list.
                    let _ = client.refresh_conversations().await;
                });
            }
        }
        loop {
            match self.events.try_recv() {
                Ok(Event::ConversationUpdated(id)) => {
                    if !self.subs.iter().any(|(c, _)| *c == id) {
                        self.reload_list = true;
                    }
                    self.dirty.insert(id);
                }
                Ok(Event::SessionRejected(_)) => self.app.session_rejected = true,
                Ok(_) => {}
                Err(broadcast::error::TryRecvError::Lagged(_)) => self.reload_list = true,
                Err(_) => break,
            }
        }
        while let Ok(done) = self.done_rx.try_recv() {
            self.on_done(done);
        }
    }

    fn on_done(&mut self, done: Done) {
        let now = Instant::now();
        match done {
            Done::Created(Ok(info)) => {
                self.reload_list = true;
                self.app.notify(format!("created #{}", info.title), now);
            }
            Done::Created(Err(e)) => self.app.notify(format!("not created: {e}"), now),
        }
    }

    /// Carries out the app's actions; true when there were any.
    async fn perform(&mut self) -> anyhow::Result<bool> {
        let mut any = false;
        loop {
            let actions = self.app.take_actions();
            if actions.is_empty() {
                return Ok(any);
            }
            any = true;
            for action in actions {
                match self.act(action).await {
                    Ok(()) => {}
                    Err(ClientError::Closed) => {
                        anyhow::bail!("the client stopped (see the log for why)")
                    }
                    Err(e) => self.app.notify(e.to_string(), Instant::now()),
                }
                // The client published what the action changed before it
                // answered: apply it now, so that the next key (a second
                // toggle of a reaction in the same burst) sees it.
                self.drain_changes();
            }
        }
    }

    async fn act(&mut self, action: Action) -> Result<(), ClientError> {
        let client = &self.client;
        match action {
            Action::Open(id) | Action::Reload(id) => {
                let items = client.page(id, None, PAGE).await?;
                self.app.opened(id, items);
            }
            Action::Send { conversation, body } => {
                match client.send(conversation, body.clone()).await {
                    Ok(id) => {
                        if let (Some(t), Some(at)) = (self.timing.as_mut(), self.key_at) {
                            t.pending = Some((at, id));
                        }
                    }
                    Err(ClientError::Closed) => return Err(ClientError::Closed),
                    Err(e) => self.app.send_refused(body, &e.to_string(), Instant::now()),
                }
            }
            Action::Retry(id) => client.retry(id).await?,
            Action::Discard(id) => client.discard(id).await?,
            Action::Edit { message, body } => match client.edit(message, body.clone()).await {
                Ok(_) => {}
                Err(ClientError::Closed) => return Err(ClientError::Closed),
                Err(e) => self
                    .app
                    .edit_refused(message, body, &e.to_string(), Instant::now()),
            },
            Action::Delete(message) => match client.delete(message).await {
                Ok(_) => {}
                Err(ClientError::Closed) => return Err(ClientError::Closed),
                Err(e) => self.app.notify(format!("not deleted: {e}"), Instant::now()),
            },
            Action::React { message, emoji, on } => match client.react(message, &emoji, on).await {
                Ok(_) => {}
                Err(ClientError::Closed) => return Err(ClientError::Closed),
                Err(e) => {
                    let what = if on {
                        "reaction not set"
                    } else {
                        "reaction not removed"
                    };
                    self.app.notify(format!("{what}: {e}"), Instant::now());
                }
            },
            Action::LoadOlder {
                conversation,
                before,
            } => {
                let page = client.page(conversation, Some(before), PAGE).await?;
                self.app.older_loaded(conversation, page, PAGE);
            }
            Action::LoadNewer {
                conversation,
                before,
            } => {
                let mut page = client.page(conversation, Some(before), PAGE).await?;
                let reached_end = page
                    .iter()
                    .filter_map(|i| i.seq)
                    .max()
                    .is_none_or(|s| s.0.saturating_add(1) < before.0);
                if reached_end {
                    page.extend(client.page(conversation, None, PAGE).await?);
                }
                self.app.newer_loaded(conversation, page, reached_end);
            }
            Action::MarkRead { conversation, seq } => {
                client.mark_read(conversation, seq).await?;
                self.dirty.insert(conversation);
            }
            Action::Create { title, members } => {
                let client = client.clone();
                let done = self.done_tx.clone();
                tokio::spawn(async move {
                    let members: Vec<&str> = members.iter().map(String::as_str).collect();
                    let r = tokio::time::timeout(
                        Duration::from_secs(15),
                        client.create_conversation(&title, &members),
                    )
                    .await
                    .unwrap_or_else(|_| {
                        Err(ClientError::Timeout("creating the conversation".into()))
                    });
                    let _ = done.send(Done::Created(r));
                });
            }
            Action::ReconnectNow => client.reconnect_now().await?,
        }
        Ok(())
    }

    /// Reloads the conversation list or the summaries that changed; true
    /// when something changed.
    async fn update_summaries(&mut self) -> anyhow::Result<bool> {
        let reload = std::mem::take(&mut self.reload_list);
        if !reload && self.dirty.is_empty() {
            return Ok(false);
        }
        let dirty = std::mem::take(&mut self.dirty);
        let convs = self.client.conversations().await?;
        let mut changed = false;
        let mut all = Vec::new();
        for c in &convs {
            if !self.subs.iter().any(|(id, _)| *id == c.id) {
                let timeline = self.client.subscribe(c.id, 0).await?;
                self.subs.push((c.id, timeline.changes));
            }
            let me = self.client.user();
            let mark = c.members.iter().find(|m| m.user == me);
            let mark = mark.map_or(Seq::ZERO, |m| m.read);
            self.app.read_stored(c.id, mark, c.cursor);
            if reload {
                all.push(self.summary(c).await?);
            } else if dirty.contains(&c.id) {
                let s = self.summary(c).await?;
                changed |= self.app.set_summary(s);
            }
        }
        if reload {
            self.app.set_conversations(all);
            changed = true;
        }
        Ok(changed)
    }

    async fn summary(&self, c: &Conversation) -> Result<Summary, ClientError> {
        let last = self.client.page(c.id, None, 1).await?.pop();
        let unread = self.client.unread(c.id).await?;
        Ok(Summary {
            id: c.id,
            title: c.title.clone(),
            members: c.members.iter().map(|m| m.username.clone()).collect(),
            last,
            unread: usize::try_from(unread).unwrap_or(usize::MAX),
        })
    }
}

/// The next change of any subscription.
async fn next_change(
    subs: &mut [(ConversationId, mpsc::UnboundedReceiver<TimelineChange>)],
) -> (ConversationId, TimelineChange) {
    std::future::poll_fn(|cx| {
        for (conv, rx) in subs.iter_mut() {
            if let Poll::Ready(Some(change)) = rx.poll_recv(cx) {
                return Poll::Ready((*conv, change));
            }
        }
        Poll::Pending
    })
    .await
}
