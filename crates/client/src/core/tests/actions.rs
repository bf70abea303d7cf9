//! Edit, delete, react and read marks (issue 4) against the fake server.
//!
//! Each test checks what the server's history folds to (the rule every
//! member applies), what every member's storage shows, and that the view a
//! subscriber built from the published changes never differs from storage.

use super::harness::{conv_id, user_id, World};
use super::{ms, pair, sends};
use crate::core::{ActionError, Config};
use crate::model::{Failure, Item, PendingAction, Status};
use crate::store::ClientStore;
use chatsync_protocol::{
    ActionKind, ActionRef, ClientFrame, ErrorCode, MemberMarks, MessageId, OthersMarks, Refusal,
    Seq, ServerFrame, UserId,
};
use std::collections::BTreeMap;
use Status::{Failed, InFlight, Read, Sending, Success};

const A: usize = 0;
const B: usize = 1;

/// Reactions of an item as the fold writes them: emoji → users.
fn reactions(item: &Item) -> BTreeMap<String, Vec<UserId>> {
    item.reactions
        .iter()
        .map(|r| (r.emoji.clone(), r.users.clone()))
        .collect()
}

/// The `send` frames carrying an action, as (id, action, body).
fn action_sends(frames: &[ClientFrame]) -> Vec<(MessageId, ActionRef, String)> {
    frames
        .iter()
        .filter_map(|f| match f {
            ClientFrame::Send {
                id,
                body,
                action: Some(a),
                ..
            } => Some((*id, a.clone(), body.clone())),
            _ => None,
        })
        .collect()
}

/// The `read` frames, as (conversation index 0 assumed) seqs.
fn read_frames(frames: &[ClientFrame]) -> Vec<Seq> {
    frames
        .iter()
        .filter_map(|f| match f {
            ClientFrame::Read { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

fn thumbs(users: &[usize]) -> BTreeMap<String, Vec<UserId>> {
    let users = users.iter().map(|&u| user_id(u)).collect();
    BTreeMap::from([("👍".to_string(), users)])
}

// ---- edit ------------------------------------------------------------------

#[test]
fn two_edits_before_the_first_ack_end_with_the_last_text_everywhere() {
    let mut w = pair();
    let ab = conv_id(0);
    let m = w.send(A, ab, "helo").unwrap();
    // The message is on the link, unacknowledged: both edits are actions,
    // and the first left at once, so the second cannot rewrite it.
    let e1 = w.edit(A, m, "hello").unwrap().expect("an edit action");
    let e2 = w.edit(A, m, "hello!").unwrap().expect("an edit action");
    assert_ne!(e1, e2);
    assert_eq!(sends(&w.take_transmitted(A)), [m, e1, e2], "pipelined");
    let shown = w.item(A, m);
    assert_eq!((shown.body.as_str(), shown.edited), ("hello!", true));
    w.check_views();

    w.deliver_all_to_server(A);
    // The message's own ack arrives first: the view keeps the newest text.
    let ack = w.deliver_to_client(A).unwrap();
    assert!(matches!(ack, ServerFrame::Ack { id, .. } if id == m));
    assert_eq!(w.item(A, m).body, "hello!");
    w.check_views();

    // B gets the second edit before the first.
    w.deliver_to_client(B).unwrap();
    w.swap_to_client(B);
    w.run_until_idle();

    let server = &w.server.convs[&ab];
    assert_eq!(w.server.ids(ab), [m, e1, e2]);
    let folded = server.folded(m);
    assert_eq!((folded.body.as_str(), folded.edited), ("hello!", true));
    for c in [A, B] {
        let item = w.item(c, m);
        assert_eq!((item.body.as_str(), item.edited), ("hello!", true), "{c}");
        assert!(item.pending.is_empty(), "{c}: {:?}", item.pending);
    }
    assert_eq!(w.stored_history(A, e1), [Sending, InFlight, Success]);
    assert_eq!(w.stored_history(A, e2), [Sending, InFlight, Success]);
    assert_eq!(w.history(A, m), [Sending, InFlight, Success]);
    w.check_views();
}

#[test]
fn an_edit_of_a_message_never_transmitted_rewrites_it_in_place() {
    let mut w = pair();
    let ab = conv_id(0);
    w.set_network(A, false);
    let m = w.send(A, ab, "helo").unwrap();
    assert_eq!(w.edit(A, m, "hello").unwrap(), None);
    assert_eq!(w.edit(A, m, "hello!").unwrap(), None);
    let item = w.item(A, m);
    assert_eq!((item.body.as_str(), item.status), ("hello!", Sending));
    assert!(!item.edited, "nobody saw the first text");
    assert!(item.pending.is_empty());
    assert_eq!(w.clients[A].syncer.unconfirmed(), 1, "no action queued");
    w.check_views();

    w.set_network(A, true);
    w.run_until_idle();
    let frames = w.take_transmitted(A);
    let carrying: Vec<_> = frames
        .iter()
        .filter(|f| matches!(f, ClientFrame::Send { body, .. } if body == "hello!"))
        .collect();
    assert_eq!(carrying.len(), 1, "{frames:?}");
    assert!(matches!(
        carrying[0],
        ClientFrame::Send { id, action: None, .. } if *id == m
    ));
    assert_eq!(sends(&frames), [m]);
    assert_eq!(action_sends(&frames), [], "no edit action ever left");

    assert_eq!(w.server.ids(ab), [m]);
    let folded = w.server.convs[&ab].folded(m);
    assert_eq!((folded.body.as_str(), folded.edited), ("hello!", false));
    for c in [A, B] {
        let item = w.item(c, m);
        assert_eq!((item.body.as_str(), item.edited), ("hello!", false));
    }
    assert_eq!(w.history(A, m), [Sending, InFlight, Success]);
    w.check_views();
}

#[test]
fn an_edit_of_a_failed_message_rewrites_it_and_a_retry_sends_the_new_text() {
    let mut w = pair();
    let ab = conv_id(0);
    let m = w.send(A, ab, "bad words").unwrap();
    w.run_until_idle();
    assert_eq!(w.status(A, m), Failed);
    assert_eq!(w.edit(A, m, "kind words").unwrap(), None);
    assert_eq!(w.item(A, m).body, "kind words");
    w.retry(A, m).unwrap();
    w.run_until_idle();
    assert_eq!(w.server.ids(ab), [m]);
    assert_eq!(w.server.convs[&ab].folded(m).body, "kind words");
    assert_eq!(w.item(B, m).body, "kind words");
    assert_eq!(action_sends(&w.take_transmitted(A)), []);
    w.check_views();
}

// ---- delete -----------------------------------------------------------------

#[test]
fn a_delete_of_a_message_never_transmitted_never_reaches_the_server_across_restarts() {
    let mut w = pair();
    let ab = conv_id(0);
    let kept = w.send(A, ab, "kept").unwrap();
    w.run_until_idle();

    w.set_network(A, false);
    let doomed = w.send(A, ab, "oops").unwrap();
    let like = w.react(A, doomed, "👍", true).unwrap();
    w.restart(A); // killed with both queued, never transmitted
    assert_eq!(w.delete(A, doomed).unwrap(), None, "removed in place");
    for id in [doomed, like] {
        assert_eq!(w.clients[A].store.item(id).unwrap(), None, "{id}");
    }
    assert!(w.clients[A].removed.contains(&doomed));
    w.check_views();

    w.restart(A); // killed again, still offline
    let loaded = w.clients[A].store.load().unwrap();
    assert!(loaded.outbox.is_empty(), "{:?}", loaded.outbox);
    assert_eq!(w.clients[A].syncer.unconfirmed(), 0);

    w.set_network(A, true);
    w.run_until_idle();
    let ever = sends(&w.take_transmitted(A));
    assert!(!ever.contains(&doomed) && !ever.contains(&like), "{ever:?}");
    assert_eq!(w.server.ids(ab), [kept]);
    assert_eq!(w.clients[B].timeline(ab).len(), 1);
    assert_eq!(w.clients[A].timeline(ab).len(), 1);
    w.check_views();
}

#[test]
fn a_delete_of_a_transmitted_unacked_message_goes_out_after_it() {
    let mut w = pair();
    let ab = conv_id(0);
    let m = w.send(A, ab, "regret").unwrap();
    w.deliver_all_to_server(A); // stored on the server...
    w.cut(A); // ...the ack is lost with the connection.
    w.take_transmitted(A);

    let d = w.delete(A, m).unwrap().expect("it may be on the server");
    let item = w.item(A, m);
    assert!(item.deleted, "deleted in the view at once");
    assert_eq!(item.body, "");
    w.check_views();

    w.run_until_idle();
    assert_eq!(sends(&w.take_transmitted(A))[..2], [m, d], "after it");
    assert_eq!(w.server.ids(ab), [m, d]);
    let folded = w.server.convs[&ab].folded(m);
    assert!(folded.deleted);
    for c in [A, B] {
        let item = w.item(c, m);
        assert!(item.deleted, "{c}");
        assert_eq!(item.body, "", "{c}");
        assert!(item.pending.is_empty(), "{c}");
        assert_eq!(w.clients[c].timeline(ab).len(), 1, "a placeholder remains");
    }
    assert_eq!(w.stored_history(A, d), [Sending, InFlight, Success]);
    w.check_views();
}

// ---- react --------------------------------------------------------------------

#[test]
fn a_reaction_toggled_on_off_on_rapidly_ends_on_once_everywhere() {
    let mut w = pair();
    let ab = conv_id(0);
    let m = w.send(A, ab, "nice").unwrap();
    w.run_until_idle();

    let r1 = w.react(B, m, "👍", true).unwrap();
    let r2 = w.react(B, m, "👍", false).unwrap();
    assert_eq!(reactions(&w.item(B, m)), BTreeMap::new());
    let r3 = w.react(B, m, "👍", true).unwrap();
    assert_eq!(reactions(&w.item(B, m)), thumbs(&[B]), "at once");
    // Each left at once, so none could be rewritten.
    assert_eq!(sends(&w.take_transmitted(B)), [r1, r2, r3]);
    w.check_views();

    w.deliver_all_to_server(B);
    w.swap_to_client(A); // A learns of the "off" before the first "on"
    w.run_until_idle();
    let folded = w.server.convs[&ab].folded(m);
    assert_eq!(folded.reactions, thumbs(&[B]));
    for c in [A, B] {
        let item = w.item(c, m);
        assert_eq!(reactions(&item), thumbs(&[B]), "{c}");
        assert!(item.pending.is_empty(), "{c}");
    }
    w.check_views();
}

#[test]
fn a_queued_untransmitted_toggle_is_rewritten_not_duplicated() {
    let mut w = pair();
    let ab = conv_id(0);
    let m = w.send(A, ab, "nice").unwrap();
    w.run_until_idle();

    w.set_network(B, false);
    let r1 = w.react(B, m, "👍", true).unwrap();
    assert_eq!(w.react(B, m, "👍", false).unwrap(), r1, "rewritten");
    assert_eq!(reactions(&w.item(B, m)), BTreeMap::new());
    assert_eq!(w.react(B, m, "👍", true).unwrap(), r1, "rewritten");
    let party = w.react(B, m, "🎉", true).unwrap();
    assert_ne!(party, r1, "another emoji is another reaction");
    assert_eq!(w.item(B, m).pending.len(), 2);
    let mut expected = thumbs(&[B]);
    expected.insert("🎉".into(), vec![user_id(B)]);
    assert_eq!(reactions(&w.item(B, m)), expected);
    w.check_views();

    w.set_network(B, true);
    w.run_until_idle();
    let on = |target| ActionRef {
        target,
        kind: ActionKind::React { on: true },
    };
    assert_eq!(
        action_sends(&w.take_transmitted(B)),
        [(r1, on(m), "👍".into()), (party, on(m), "🎉".into())]
    );
    assert_eq!(w.server.ids(ab), [m, r1, party]);
    assert_eq!(w.server.convs[&ab].folded(m).reactions, expected);
    for c in [A, B] {
        assert_eq!(reactions(&w.item(c, m)), expected, "{c}");
    }
    w.check_views();
}

// ---- refusals -----------------------------------------------------------------

#[test]
fn a_refused_edit_fails_rolls_the_view_back_and_retry_and_discard_work() {
    let mut w = pair();
    let ab = conv_id(0);
    let m = w.send(A, ab, "hello").unwrap();
    w.run_until_idle();

    w.server.scripted.push_back(Refusal::permanent(
        ErrorCode::Internal,
        "edits are off today",
    ));
    let e = w.edit(A, m, "hello!").unwrap().unwrap();
    assert_eq!(w.item(A, m).body, "hello!", "shown at once");
    w.run_until_idle();

    let item = w.item(A, m);
    assert_eq!((item.body.as_str(), item.edited), ("hello", false));
    let failure = Failure {
        code: ErrorCode::Internal,
        message: "edits are off today".into(),
        retryable: false,
    };
    assert_eq!(
        item.pending,
        [PendingAction {
            id: e,
            kind: ActionKind::Edit,
            body: "hello!".into(),
            status: Failed,
            failure: Some(failure),
        }]
    );
    assert_eq!(w.stored_history(A, e), [Sending, Failed]);
    assert_eq!(
        w.history(A, m),
        [Sending, InFlight, Success],
        "the message is fine"
    );
    assert_eq!(w.item(B, m).body, "hello");
    w.check_views();

    // Retry, on the action's id.
    w.retry(A, e).unwrap();
    assert_eq!(w.item(A, m).body, "hello!", "shown again");
    assert_eq!(w.item(A, m).pending[0].status, Sending);
    w.check_views();
    w.run_until_idle();
    assert_eq!(w.server.convs[&ab].folded(m).body, "hello!");
    for c in [A, B] {
        let item = w.item(c, m);
        assert_eq!((item.body.as_str(), item.edited), ("hello!", true), "{c}");
        assert!(item.pending.is_empty(), "{c}");
    }
    assert_eq!(
        w.stored_history(A, e),
        [Sending, Failed, Sending, InFlight, Success]
    );

    // Discard, on the action's id.
    w.server
        .scripted
        .push_back(Refusal::permanent(ErrorCode::Internal, "no"));
    let e2 = w.edit(A, m, "hello?").unwrap().unwrap();
    w.run_until_idle();
    assert_eq!(w.status(A, e2), Failed);
    assert_eq!(w.retry(A, m), Err(ActionError::NotFound(m)));
    w.discard(A, e2).unwrap();
    let item = w.item(A, m);
    assert_eq!(item.body, "hello!");
    assert!(item.pending.is_empty());
    assert_eq!(w.clients[A].store.item(e2).unwrap(), None);
    assert_eq!(w.clients[A].syncer.unconfirmed(), 0);
    assert!(w.server.message(e2).is_none());
    w.check_views();
}

#[test]
fn a_refused_delete_or_reaction_rolls_the_view_back() {
    let mut w = pair();
    let ab = conv_id(0);
    let m = w.send(A, ab, "keep me").unwrap();
    w.run_until_idle();

    w.server
        .scripted
        .push_back(Refusal::permanent(ErrorCode::Internal, "not now"));
    let d = w.delete(A, m).unwrap().unwrap();
    assert!(w.item(A, m).deleted);
    w.run_until_idle();
    let item = w.item(A, m);
    assert!(!item.deleted);
    assert_eq!(item.body, "keep me");
    assert_eq!(item.pending.len(), 1);
    assert_eq!((item.pending[0].id, item.pending[0].status), (d, Failed));
    w.check_views();
    w.discard(A, d).unwrap();

    w.server
        .scripted
        .push_back(Refusal::permanent(ErrorCode::Internal, "not now"));
    let r = w.react(B, m, "👍", true).unwrap();
    assert_eq!(reactions(&w.item(B, m)), thumbs(&[B]));
    w.run_until_idle();
    assert_eq!(reactions(&w.item(B, m)), BTreeMap::new(), "rolled back");
    assert_eq!(w.status(B, r), Failed);
    w.check_views();
    w.retry(B, r).unwrap();
    w.run_until_idle();
    for c in [A, B] {
        assert_eq!(reactions(&w.item(c, m)), thumbs(&[B]), "{c}");
    }
    assert_eq!(w.server.ids(ab), [m, r]);
    w.check_views();
}

#[test]
fn actions_the_server_could_only_refuse_are_refused_at_once() {
    let mut w = pair();
    let ab = conv_id(0);
    let theirs = w.send(B, ab, "mine").unwrap();
    let mine = w.send(A, ab, "gone soon").unwrap();
    w.run_until_idle();
    let d = w.delete(A, mine).unwrap().unwrap();
    w.run_until_idle();
    w.take_transmitted(A);

    let drains = w.clients[A].drains.len();
    assert_eq!(w.edit(A, theirs, "yours"), Err(ActionError::NotAuthor));
    assert_eq!(w.delete(A, theirs), Err(ActionError::NotAuthor));
    assert_eq!(w.edit(A, mine, "back"), Err(ActionError::Deleted));
    assert_eq!(w.react(A, mine, "👍", true), Err(ActionError::Deleted));
    assert_eq!(w.react(A, d, "👍", true), Err(ActionError::NotAMessage(d)));
    assert_eq!(w.clients[A].drains.len(), drains, "nothing stored or sent");
    assert_eq!(w.clients[A].syncer.unconfirmed(), 0);
    assert_eq!(w.take_transmitted(A), []);
    assert_eq!(w.item(A, theirs).body, "mine");

    // Reacting to someone else's message is fine.
    w.react(A, theirs, "👍", true).unwrap();
    w.run_until_idle();
    assert_eq!(reactions(&w.item(B, theirs)), thumbs(&[A]));
}

// ---- read marks ----------------------------------------------------------------

#[test]
fn mark_read_only_moves_forward_and_collapses_while_offline() {
    let mut w = pair();
    let ab = conv_id(0);
    for i in 0..3 {
        w.send(B, ab, &format!("b{i}")).unwrap();
    }
    w.run_until_idle();
    let mine = |w: &World| {
        let conv = w.clients[A].stored_conversation(ab).unwrap();
        conv.members
            .iter()
            .find(|m| m.user == user_id(A))
            .unwrap()
            .read
    };

    w.set_network(A, false);
    w.take_transmitted(A);
    for seq in [1, 3, 2] {
        w.mark_read(A, ab, Seq(seq)).unwrap();
    }
    assert_eq!(mine(&w), Seq(3), "stored at once, never moved back");
    w.set_network(A, true);
    w.run_until_idle();
    assert_eq!(read_frames(&w.take_transmitted(A)), [Seq(3)], "one frame");
    assert_eq!(w.server.convs[&ab].read[&user_id(A)], Seq(3));

    w.mark_read(A, ab, Seq(2)).unwrap();
    w.mark_read(A, ab, Seq(3)).unwrap();
    assert_eq!(read_frames(&w.take_transmitted(A)), [], "nothing new");
    assert_eq!(mine(&w), Seq(3));

    // Beyond what exists: clamped to the newest message.
    w.mark_read(A, ab, Seq(99)).unwrap();
    assert_eq!(mine(&w), Seq(3));
    assert_eq!(
        w.mark_read(A, conv_id(7), Seq(1)),
        Err(ActionError::UnknownConversation(conv_id(7)))
    );
    // B is told, and A's own messages never count as unread for A.
    let a = w.send(A, ab, "a").unwrap();
    w.run_until_idle();
    let conv_b = w.clients[B].stored_conversation(ab).unwrap();
    let a_marks = conv_b
        .members
        .iter()
        .find(|m| m.user == user_id(A))
        .unwrap();
    assert_eq!(a_marks.read, Seq(3));
    assert_eq!(w.clients[A].store.unread(ab, Seq(3)).unwrap(), 0);
    assert_eq!(w.clients[B].store.unread(ab, Seq::ZERO).unwrap(), 1);
    assert_eq!(w.item(A, a).seq, Some(Seq(4)));
}

#[test]
fn a_read_mark_from_a_stale_device_does_not_move_the_mark_back() {
    // Clients 0 and 1 are two devices of user 0; client 2 is user 1.
    let mut w = World::with_devices(2, &[0, 0, 1], &[&[0, 1]], Config::default()).start();
    let ab = conv_id(0);
    let (d0, d1, b) = (0, 1, 2);
    let sent: Vec<_> = (0..3)
        .map(|i| w.send(b, ab, &format!("b{i}")).unwrap())
        .collect();
    w.run_until_idle();

    w.mark_read(d0, ab, Seq(3)).unwrap();
    w.deliver_all_to_server(d0); // the server has 3 and tells everyone...
    w.mark_read(d1, ab, Seq(2)).unwrap(); // ...but d1 has not heard yet
    assert_eq!(read_frames(&w.take_transmitted(d1)), [Seq(2)]);
    w.deliver_all_to_server(d1);
    assert_eq!(w.server.convs[&ab].read[&user_id(0)], Seq(3), "kept");
    w.run_until_idle();

    assert_eq!(w.server.convs[&ab].read[&user_id(0)], Seq(3));
    for c in [d0, d1, b] {
        let conv = w.clients[c].stored_conversation(ab).unwrap();
        let marks = conv.members.iter().find(|m| m.user == user_id(0)).unwrap();
        assert_eq!(marks.read, Seq(3), "client {c}");
    }
    for id in &sent {
        assert_eq!(w.history(b, *id), [Sending, InFlight, Success, Read]);
    }
    // A stale marks frame changes nothing either.
    let drains = w.clients[b].drains.len();
    let stale = MemberMarks {
        user: user_id(0),
        username: "user0".into(),
        delivered: Seq(1),
        read: Seq(1),
    };
    w.inject(
        b,
        ServerFrame::Marks {
            conversation: ab,
            marks: stale,
            others: Some(OthersMarks {
                delivered: Seq(1),
                read: Seq(1),
            }),
        },
    );
    assert!(w.clients[b].drains.len() > drains);
    for id in &sent {
        assert_eq!(w.status(b, *id), Read);
    }
    let conv = w.clients[b].stored_conversation(ab).unwrap();
    let marks = conv.members.iter().find(|m| m.user == user_id(0)).unwrap();
    assert_eq!((marks.delivered, marks.read), (Seq(3), Seq(3)));
    w.check_views();
}

#[test]
fn an_own_message_becomes_read_once_every_other_member_read_it() {
    let mut w = World::new(3, 3, &[&[0, 1, 2]], Config::default()).start();
    let abc = conv_id(0);
    let (a, b, c) = (0, 1, 2);
    let m1 = w.send(a, abc, "one").unwrap();
    let m2 = w.send(a, abc, "two").unwrap();
    w.run_until_idle();
    assert_eq!(w.status(a, m2), Success);

    w.mark_read(b, abc, Seq(2)).unwrap();
    w.run_until_idle();
    assert_eq!(w.status(a, m1), Success, "c has not read it");
    w.mark_read(c, abc, Seq(1)).unwrap();
    w.run_until_idle();
    assert_eq!(w.history(a, m1), [Sending, InFlight, Success, Read]);
    assert_eq!(w.history(a, m2), [Sending, InFlight, Success]);
    w.mark_read(c, abc, Seq(2)).unwrap();
    w.run_until_idle();
    assert_eq!(w.history(a, m2), [Sending, InFlight, Success, Read]);

    // A repeated ack or delivery report never moves it back.
    w.inject(
        a,
        ServerFrame::Ack {
            id: m2,
            conversation: abc,
            seq: Seq(2),
            server_ts: 0,
        },
    );
    assert_eq!(w.status(a, m2), Read);
    assert_eq!(w.history(a, m2), [Sending, InFlight, Success, Read]);

    // The others' messages are never Read on their side: only own ones.
    let theirs = w.send(b, abc, "three").unwrap();
    w.run_until_idle();
    w.mark_read(a, abc, Seq(3)).unwrap();
    w.run_until_idle();
    assert_eq!(w.status(a, theirs), Success);
    assert_eq!(w.status(b, theirs), Success, "c has not read it");
    w.check_views();
}

#[test]
fn an_ack_arriving_with_the_read_marks_goes_straight_to_read() {
    let mut w = pair();
    let ab = conv_id(0);
    let m = w.send(A, ab, "hi").unwrap();
    w.deliver_all_to_server(A); // stored...
    w.cut(A); // ...the ack is lost
    w.flush(); // B stores it
    w.mark_read(B, ab, Seq(1)).unwrap();
    w.flush();
    assert_eq!(w.server.convs[&ab].read[&user_id(B)], Seq(1));

    w.run_until_idle(); // A reconnects: marks, then the original ack
    assert_eq!(w.history(A, m), [Sending, Read]);
    assert_eq!(w.status(A, m), Read);
    assert_eq!(w.stored_history(A, m), [Sending, Read]);
    w.check_views();
}

#[test]
fn a_restarted_syncer_still_moves_success_to_read() {
    let mut w = pair();
    let ab = conv_id(0);
    let m = w.send(A, ab, "hi").unwrap();
    w.run_until_idle();
    assert_eq!(w.status(A, m), Success);
    w.restart(A);
    w.run_until_idle();
    w.mark_read(B, ab, Seq(1)).unwrap();
    w.run_until_idle();
    assert_eq!(w.status(A, m), Read);
    w.check_views();
}

// ---- many devices ---------------------------------------------------------------

#[test]
fn two_devices_of_one_user_see_every_message_once_as_their_own() {
    // Clients 0 and 1 are two devices of user 0; client 2 is user 1.
    let mut w = World::with_devices(2, &[0, 0, 1], &[&[0, 1]], Config::default()).start();
    let ab = conv_id(0);
    let (d0, d1, b) = (0, 1, 2);
    let m = w.send(d0, ab, "from the phone").unwrap();
    let theirs = w.send(b, ab, "hello").unwrap();
    w.run_until_idle();

    for c in [d0, d1] {
        let timeline = w.clients[c].timeline(ab);
        assert_eq!(
            timeline.iter().map(|i| i.id).collect::<Vec<_>>(),
            [m, theirs]
        );
        assert!(timeline[0].own, "client {c}");
        assert_eq!(timeline[0].sender, user_id(0));
        assert_eq!(timeline[0].status, Success, "client {c}");
        assert!(!timeline[1].own);
    }
    // On the other device it arrives confirmed (and B's delivery report
    // after it): it was never Sending there.
    assert_eq!(w.history(d1, m), [InFlight, Success]);
    // Own messages are never unread, on either device.
    for c in [d0, d1] {
        assert_eq!(w.clients[c].store.unread(ab, Seq::ZERO).unwrap(), 1, "{c}");
    }

    // The laptop edits what the phone sent: same account, same author.
    let e = w
        .edit(d1, m, "from the laptop")
        .unwrap()
        .expect("an action");
    w.react(d0, theirs, "👍", true).unwrap();
    w.run_until_idle();
    assert_eq!(w.server.convs[&ab].folded(m).body, "from the laptop");
    for c in [d0, d1, b] {
        let item = w.item(c, m);
        assert_eq!(
            (item.body.as_str(), item.edited),
            ("from the laptop", true),
            "{c}"
        );
        assert_eq!(reactions(&w.item(c, theirs)), thumbs(&[0]), "{c}");
        assert_eq!(w.clients[c].timeline(ab).len(), 2, "{c}");
    }
    assert_eq!(w.stored_history(d1, e), [Sending, InFlight, Success]);

    // The other member reads: both devices show Read.
    w.mark_read(b, ab, Seq(2)).unwrap();
    w.run_until_idle();
    for c in [d0, d1] {
        assert_eq!(w.status(c, m), Read, "client {c}");
    }
    // A delete from the phone reaches the laptop.
    w.delete(d0, m).unwrap().expect("an action");
    w.run_until_idle();
    for c in [d0, d1, b] {
        assert!(w.item(c, m).deleted, "{c}");
    }
    w.check_views();
}

#[test]
fn pending_actions_stay_in_the_view_when_their_message_changes() {
    let mut w = pair();
    let ab = conv_id(0);
    w.set_network(A, false);
    let m = w.send(A, ab, "helo").unwrap();
    let like = w.react(A, m, "👍", true).unwrap();
    assert_eq!(w.edit(A, m, "hello").unwrap(), None, "in place");
    let item = w.item(A, m);
    assert_eq!(item.body, "hello");
    assert_eq!(reactions(&item), thumbs(&[A]));
    w.check_views();

    // The message's ack comes before the reaction's.
    w.set_network(A, true);
    w.run_until_idle();
    assert_eq!(w.server.ids(ab), [m, like]);
    w.check_views();

    // A Failed message with a refused action on it, retried.
    let bad = w.send(A, ab, "bad one").unwrap();
    let on_bad = w.react(A, bad, "👍", true).unwrap();
    w.run_until_idle();
    assert_eq!((w.status(A, bad), w.status(A, on_bad)), (Failed, Failed));
    w.check_views();
    assert_eq!(w.edit(A, bad, "good one").unwrap(), None);
    w.check_views();
    w.retry(A, bad).unwrap();
    w.check_views();
    w.retry(A, on_bad).unwrap();
    w.run_until_idle();
    assert_eq!(w.server.ids(ab), [m, like, bad, on_bad]);
    assert_eq!(reactions(&w.item(B, bad)), thumbs(&[A]));
    w.check_views();
}

#[test]
fn a_message_stored_again_after_a_restart_is_shown_as_storage_has_it() {
    let mut w = pair();
    let ab = conv_id(0);
    let theirs = w.send(B, ab, "first").unwrap();
    w.deliver_all_to_server(B);
    w.skip(ms(5_000));
    let mine = w.send(A, ab, "second").unwrap();
    w.drop_to_client(A).unwrap(); // B's message never reaches A
    w.skip(ms(5_000)); // the server stores it later than it was written
    w.deliver_all_to_server(A);
    w.deliver_all_to_client(A); // A's own ack: stored above the gap
    w.cut(A); // before the gap is filled
    assert_eq!(w.item(A, mine).seq, Some(Seq(2)));
    assert_eq!(w.stored_conversation_cursor(A), Seq(0));

    w.restart(A); // what was above the cursor is fetched again
    w.run_until_idle();
    assert_eq!(w.server.ids(ab), [theirs, mine]);
    let item = w.item(A, mine);
    assert_eq!(item.created_at, 5_000, "the device's time, as stored");
    assert_eq!(item.local_seq, 1);
    w.check_views();
}

#[test]
fn a_read_mark_never_covers_what_the_device_has_not_stored() {
    let mut w = pair();
    let ab = conv_id(0);
    w.set_network(B, false);
    let first = w.send(A, ab, "first").unwrap();
    let second = w.send(A, ab, "second").unwrap();
    w.run_until_idle();

    // B comes back: the listing tells it the conversation has 2 messages,
    // and its catch-up batch is on its way when the user opens it.
    w.set_network(B, true);
    w.advance(Config::default().reconnect_cap);
    w.deliver_all_to_server(B);
    w.deliver_all_to_client(B);
    assert_eq!(w.stored_conversation_cursor(B), Seq(0));
    w.mark_read(B, ab, Seq(2)).unwrap();
    w.mark_read(B, ab, Seq(u64::MAX)).unwrap();
    w.deliver_all_to_server(B); // sync, then any read mark
    w.deliver_all_to_client(A);
    let server = &w.server.convs[&ab];
    let b = user_id(B);
    assert_eq!(
        server.delivered.get(&b).copied().unwrap_or_default(),
        Seq(0)
    );
    assert_eq!(server.read.get(&b).copied().unwrap_or_default(), Seq(0));
    assert_eq!(w.status(A, first), InFlight, "B has not stored it");

    // Once they are stored, the same call counts.
    w.run_until_idle();
    assert_eq!(w.stored_conversation_cursor(B), Seq(2));
    w.mark_read(B, ab, Seq(2)).unwrap();
    w.run_until_idle();
    assert_eq!(w.history(A, first), [Sending, InFlight, Success, Read]);
    assert_eq!(w.status(A, second), Read);
    w.check_views();
}

#[test]
fn a_refusal_of_an_older_copy_does_not_fail_the_retried_message() {
    let ack_timeout = Config::default().ack_timeout;
    let mut w = pair();
    let ab = conv_id(0);
    let m = w.send(A, ab, "bad words").unwrap();
    w.deliver_all_to_server(A); // refused; the answer is slow...
    w.advance(ack_timeout); // ...so the message is sent again
    w.deliver_to_client(A).unwrap(); // the first refusal
    assert_eq!(w.status(A, m), Sending, "the second copy decides");
    w.deliver_all_to_server(A);
    w.deliver_all_to_client(A); // the second refusal
    assert_eq!(w.status(A, m), Failed);

    // Fixed in place and retried: nothing older can answer it now.
    assert_eq!(w.edit(A, m, "kind words").unwrap(), None);
    w.retry(A, m).unwrap();
    w.run_until_idle();
    assert_eq!(w.server.ids(ab), [m]);
    assert_eq!(w.server.message(m).unwrap().body, "kind words");
    assert_eq!(
        w.history(A, m),
        [Sending, Failed, Sending, InFlight, Success]
    );
    assert_eq!(w.item(A, m).body, "kind words");
    w.check_views();
}
