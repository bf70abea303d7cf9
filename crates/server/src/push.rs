//! What a committed write tells whom: the one push rule of the server,
//! used by the gateway's commit hook and by the simulation.
//!
//! - A new message (or action) goes to every connection of every member but
//!   the one that sent it (which gets the `ack`).
//! - A moved mark (delivered or read) of member `U` goes, as a `marks`
//!   frame, to every connection of `U`'s own account (its other devices
//!   learn its read mark), and to every *other* member `X` whose
//!   [`OthersMarks`] — the lowest marks among the members other than `X` —
//!   it changed. The frame carries `U`'s marks and the recipient's
//!   `others`.
//!
//! Why not `U`'s marks to everyone: in a conversation of N members, one
//! message makes every member report `received`, and pushing each report
//! to every member costs N² frames. A member only needs the others' lowest
//! marks (Success and Read of its own messages, PROTOCOL.md §8.3, §8.5),
//! and for all members but the lowest one that value only moves when the
//! conversation's lowest mark moves: the same N reports now cost O(N)
//! frames. Snapshots (`conversations`, `batch`) still carry every member's
//! marks.
//!
//! [`PushRule`] keeps, per conversation that had a mark move since the
//! process started, every member's marks (loaded from the store once, then
//! updated from each committed outcome, in commit order) and the `others`
//! value each member was last sent. It must see every committed write, in
//! commit order, and be dropped with the process (a restarted server starts
//! empty: its first push per conversation goes to every member). It keeps
//! at most [`MAX_VIEWS`] conversations, forgetting them all past that, with
//! the same effect as a restart.

use crate::store::{ServerStore, WriteOp, WriteOutcome};
use chatsync_protocol::{
    ConversationId, MemberMarks, OthersMarks, Seq, ServerFrame, UserId, WireMessage,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Who a [`Push`] goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Every connection of every member of the conversation, except the
    /// connection that submitted the write.
    MembersButOrigin,
    /// Every connection of these accounts, the submitting one included.
    Accounts(Vec<UserId>),
}

/// One frame to publish after a commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    /// Conversation of the write.
    pub conversation: ConversationId,
    /// Who gets it.
    pub to: Audience,
    /// The frame.
    pub frame: ServerFrame,
}

/// Conversations whose marks the rule keeps at most. Past it, every view is
/// dropped at once: each conversation's next push then goes to every
/// member, as after a restart, which is correct and only costs frames.
pub const MAX_VIEWS: usize = 100_000;

/// The push rule with its state (see the module docs).
pub struct PushRule {
    views: HashMap<ConversationId, View>,
    max_views: usize,
}

impl Default for PushRule {
    fn default() -> Self {
        Self::with_max_views(MAX_VIEWS)
    }
}

impl PushRule {
    /// An empty rule, as at process start.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty rule that keeps the marks of at most `max_views`
    /// conversations (see [`MAX_VIEWS`]).
    pub fn with_max_views(max_views: usize) -> Self {
        PushRule {
            views: HashMap::new(),
            max_views: max_views.max(1),
        }
    }

    /// The pushes a committed write causes, in order. `username` is the
    /// submitting account's name (for a mark, the member whose mark moved).
    /// A duplicate append, an unchanged mark or a rejected op pushes
    /// nothing. Reads the store (once per conversation) to learn every
    /// member's marks; if that read fails, the member's own account still
    /// gets its marks, and the next move in the conversation retries.
    pub fn pushes(
        &mut self,
        store: &dyn ServerStore,
        op: &WriteOp,
        outcome: &WriteOutcome,
        username: &str,
    ) -> Vec<Push> {
        match (op, outcome) {
            (
                WriteOp::Append {
                    sender,
                    id,
                    conversation,
                    body,
                    action,
                },
                WriteOutcome::Appended(a),
            ) if !a.duplicate => {
                let message = WireMessage {
                    id: *id,
                    conversation: *conversation,
                    seq: a.seq,
                    sender: *sender,
                    sender_name: username.to_string(),
                    body: body.clone(),
                    server_ts: a.server_ts,
                    action: action.clone(),
                };
                vec![Push {
                    conversation: *conversation,
                    to: Audience::MembersButOrigin,
                    frame: ServerFrame::Message { message },
                }]
            }
            (
                WriteOp::Delivered {
                    conversation, user, ..
                }
                | WriteOp::Read {
                    conversation, user, ..
                },
                WriteOutcome::Marks {
                    delivered,
                    read,
                    changed: true,
                },
            ) => {
                let marks = MemberMarks {
                    user: *user,
                    username: username.to_string(),
                    delivered: *delivered,
                    read: *read,
                };
                self.marks_moved(store, *conversation, marks)
            }
            _ => Vec::new(),
        }
    }

    fn marks_moved(
        &mut self,
        store: &dyn ServerStore,
        conversation: ConversationId,
        marks: MemberMarks,
    ) -> Vec<Push> {
        let user = marks.user;
        let frame = |others| ServerFrame::Marks {
            conversation,
            marks: marks.clone(),
            others,
        };
        if self.views.len() >= self.max_views && !self.views.contains_key(&conversation) {
            // Bounded memory: forget every view (see `MAX_VIEWS`).
            self.views.clear();
        }
        let view = match self.views.entry(conversation) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => match store.marks(conversation) {
                Ok(Some((members, _))) => e.insert(View::new(&members)),
                Ok(None) => return Vec::new(),
                Err(err) => {
                    tracing::error!(error = %err, "fan-out: could not read marks");
                    return vec![Push {
                        conversation,
                        to: Audience::Accounts(vec![user]),
                        frame: frame(None),
                    }];
                }
            },
        };
        let changed = view.update(user, marks.delivered, marks.read);
        // The member's own account: always (its marks moved).
        let own = view.others(user);
        view.sent(user, own);
        let mut out = vec![Push {
            conversation,
            to: Audience::Accounts(vec![user]),
            frame: frame(own),
        }];
        // Every other member whose lowest-of-the-others moved, grouped by
        // that value (at most four distinct ones: see `View::others`).
        let mut groups: Vec<(OthersMarks, Vec<UserId>)> = Vec::new();
        for x in changed {
            if x == user {
                continue;
            }
            let Some(others) = view.others(x) else {
                continue;
            };
            if !view.sent(x, Some(others)) {
                continue;
            }
            match groups.iter_mut().find(|(o, _)| *o == others) {
                Some((_, users)) => users.push(x),
                None => groups.push((others, vec![x])),
            }
        }
        out.extend(groups.into_iter().map(|(others, users)| Push {
            conversation,
            to: Audience::Accounts(users),
            frame: frame(Some(others)),
        }));
        out
    }
}

/// One member as the rule knows it.
struct Member {
    delivered: Seq,
    read: Seq,
    /// `others` last pushed to this member; `None` before the first push
    /// (and for a member with no other member).
    sent: Option<OthersMarks>,
}

/// Every member's marks in one conversation, ordered by mark so that the
/// lowest two of each kind are at hand. Members are kept in a `BTreeMap` so
/// that pushes leave in the same order in every run (the simulation replays
/// seeds).
struct View {
    members: BTreeMap<UserId, Member>,
    delivered: BTreeSet<(Seq, UserId)>,
    read: BTreeSet<(Seq, UserId)>,
    /// Nothing was pushed from this view yet: every member must be told.
    fresh: bool,
}

/// The two lowest entries of a mark order.
type Lowest = [Option<(Seq, UserId)>; 2];

fn lowest(set: &BTreeSet<(Seq, UserId)>) -> Lowest {
    let mut it = set.iter().copied();
    [it.next(), it.next()]
}

/// The lowest mark of `set` among members other than `x`.
fn lowest_but(set: &BTreeSet<(Seq, UserId)>, x: UserId) -> Option<Seq> {
    set.iter().find(|(_, u)| *u != x).map(|(s, _)| *s)
}

impl View {
    fn new(members: &[MemberMarks]) -> Self {
        let mut view = View {
            members: BTreeMap::new(),
            delivered: BTreeSet::new(),
            read: BTreeSet::new(),
            fresh: true,
        };
        for m in members {
            view.members.insert(
                m.user,
                Member {
                    delivered: m.delivered,
                    read: m.read,
                    sent: None,
                },
            );
            view.delivered.insert((m.delivered, m.user));
            view.read.insert((m.read, m.user));
        }
        view
    }

    /// The lowest marks among the members other than `x`; `None` when `x`
    /// is the only member. For every member it is one of the two lowest
    /// marks of each kind, so members get at most four distinct values.
    fn others(&self, x: UserId) -> Option<OthersMarks> {
        Some(OthersMarks {
            delivered: lowest_but(&self.delivered, x)?,
            read: lowest_but(&self.read, x)?,
        })
    }

    /// Records that `x` is told `others`; false if it already was.
    fn sent(&mut self, x: UserId, others: Option<OthersMarks>) -> bool {
        match self.members.get_mut(&x) {
            Some(m) if m.sent != others => {
                m.sent = others;
                true
            }
            _ => false,
        }
    }

    /// Moves `user`'s marks forward (never back: the view may already hold
    /// later values, read from the store after this commit) and returns
    /// the members whose [`View::others`] may have changed since it was
    /// last pushed.
    fn update(&mut self, user: UserId, delivered: Seq, read: Seq) -> Vec<UserId> {
        let before = (lowest(&self.delivered), lowest(&self.read));
        let m = self.members.entry(user).or_insert_with(|| {
            // Membership is fixed at creation, so the store listed every
            // member; this only guards against a store that did not.
            self.delivered.insert((Seq::ZERO, user));
            self.read.insert((Seq::ZERO, user));
            Member {
                delivered: Seq::ZERO,
                read: Seq::ZERO,
                sent: None,
            }
        });
        if delivered > m.delivered {
            self.delivered.remove(&(m.delivered, user));
            self.delivered.insert((delivered, user));
            m.delivered = delivered;
        }
        if read > m.read {
            self.read.remove(&(m.read, user));
            self.read.insert((read, user));
            m.read = read;
        }
        let after = (lowest(&self.delivered), lowest(&self.read));
        let min = |l: &Lowest| l[0].map(|(s, _)| s);
        if std::mem::take(&mut self.fresh)
            || min(&before.0) != min(&after.0)
            || min(&before.1) != min(&after.1)
        {
            return self.members.keys().copied().collect();
        }
        // The lowest value of each kind did not move, so `others(x)` did
        // not either for any `x` that is not one of the two lowest of a
        // kind, before or after: for such an `x` it is that lowest value.
        let mut candidates: Vec<UserId> = [before.0, before.1, after.0, after.1]
            .iter()
            .flatten()
            .flatten()
            .map(|(_, u)| *u)
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        candidates
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn member(user: UserId, delivered: u64, read: u64) -> MemberMarks {
        MemberMarks {
            user,
            username: String::new(),
            delivered: Seq(delivered),
            read: Seq(read),
        }
    }

    /// Who a push reaches, as a sorted list of accounts.
    fn reached(pushes: &[Push]) -> Vec<UserId> {
        let mut users: Vec<UserId> = pushes
            .iter()
            .flat_map(|p| match &p.to {
                Audience::Accounts(users) => users.clone(),
                Audience::MembersButOrigin => Vec::new(),
            })
            .collect();
        users.sort();
        users
    }

    /// With room for one conversation, touching a second forgets the
    /// first: its next push reaches every member again (as after a
    /// restart), where a remembered view reaches only the mover.
    #[test]
    fn past_max_views_a_forgotten_conversation_tells_every_member_again() {
        let store = crate::SqliteStore::open_in_memory().unwrap();
        let users: Vec<UserId> = ["a", "b", "c"]
            .iter()
            .map(|n| store.create_account(n, "h").unwrap())
            .collect();
        let mut all = users.clone();
        all.sort();
        let c1 = store.create_conversation("one", &users).unwrap().id;
        let c2 = store.create_conversation("two", &users).unwrap().id;
        let mut rule = PushRule::with_max_views(1);
        let moved = |rule: &mut PushRule, conversation, user, seq| {
            let op = WriteOp::Delivered {
                conversation,
                user,
                seq: Seq(seq),
            };
            let outcome = WriteOutcome::Marks {
                delivered: Seq(seq),
                read: Seq::ZERO,
                changed: true,
            };
            reached(&rule.pushes(&store, &op, &outcome, "x"))
        };
        // A new view tells everyone. Then a move reaches the mover and the
        // members whose `others` it moved: b to 3 lifts c's (min of a, b)
        // from 0 to 3; a to 6 leaves every `others` where it was.
        assert_eq!(moved(&mut rule, c1, users[0], 5), all);
        let mut b_and_c = vec![users[1], users[2]];
        b_and_c.sort();
        assert_eq!(moved(&mut rule, c1, users[1], 3), b_and_c);
        assert_eq!(moved(&mut rule, c1, users[0], 6), vec![users[0]]);
        // Another conversation: c1's view is dropped to make room.
        assert_eq!(moved(&mut rule, c2, users[0], 1), all);
        assert_eq!(rule.views.len(), 1);
        assert_eq!(moved(&mut rule, c1, users[0], 7), all);
    }

    /// Brute force: the lowest marks among the members other than `x`.
    fn reference(marks: &HashMap<UserId, (u64, u64)>, x: UserId) -> Option<OthersMarks> {
        let others = marks.iter().filter(|(u, _)| **u != x);
        Some(OthersMarks {
            delivered: Seq(others.clone().map(|(_, m)| m.0).min()?),
            read: Seq(others.map(|(_, m)| m.1).min()?),
        })
    }

    /// After any sequence of moves, every member was last sent exactly its
    /// brute-force `others` (so no change was missed), and a member was
    /// only ever sent a value different from its previous one.
    #[test]
    fn views_track_the_lowest_of_the_others() {
        let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for round in 0..200 {
            let n = 1 + (round % 7) as usize;
            let users: Vec<UserId> = (0..n)
                .map(|i| UserId(uuid::Uuid::from_u128(i as u128 + 1)))
                .collect();
            let mut truth: HashMap<UserId, (u64, u64)> =
                users.iter().map(|u| (*u, (0, 0))).collect();
            let start: Vec<MemberMarks> = users.iter().map(|u| member(*u, 0, 0)).collect();
            let mut view = View::new(&start);
            let mut told: HashMap<UserId, Option<OthersMarks>> = HashMap::new();
            for _ in 0..60 {
                let u = users[next(n as u64) as usize];
                let t = truth.get_mut(&u).unwrap();
                if next(2) == 0 {
                    t.0 = t.0.max(next(12));
                } else {
                    t.1 = t.1.max(next(12));
                    t.0 = t.0.max(t.1);
                }
                let (d, r) = *t;
                for x in view.update(u, Seq(d), Seq(r)) {
                    let others = view.others(x);
                    if view.sent(x, others) {
                        assert_ne!(told.get(&x).copied().flatten(), others);
                        told.insert(x, others);
                    }
                }
                let own = view.others(u);
                if view.sent(u, own) {
                    told.insert(u, own);
                }
                for x in &users {
                    let want = reference(&truth, *x);
                    if want.is_some() || told.contains_key(x) {
                        assert_eq!(told.get(x).copied().flatten(), want, "round {round}");
                    }
                }
            }
        }
    }
}
