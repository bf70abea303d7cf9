//! Tests of the syncer core against a fake server, on virtual time.
//!
//! Each test drives a [`harness::World`] and asserts the exact sequence of
//! statuses a message went through, what was stored and what was sent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod actions;
mod harness;
mod properties;

use super::{ActionError, Config, Event};
use crate::model::{sort_timeline, Failure, Item, Status};
use crate::store::ClientStore;
use chatsync_protocol::{ClientFrame, ErrorCode, MessageId, Refusal, Seq, ServerFrame};
use harness::{conv_id, World};
use std::time::Duration;
use Status::{Failed, InFlight, Sending, Success};

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

/// Users A and B, each with a device, in conversation 0; both connected.
fn pair() -> World {
    pair_with(Config::default())
}

fn pair_with(config: Config) -> World {
    World::new(2, 2, &[&[A, B]], config).start()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Ids of the `send` frames among `frames`, in order.
fn sends(frames: &[ClientFrame]) -> Vec<MessageId> {
    frames
        .iter()
        .filter_map(|f| match f {
            ClientFrame::Send { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn ids(items: &[Item]) -> Vec<MessageId> {
    items.iter().map(|i| i.id).collect()
}

// ---- status transitions ---------------------------------------------------

#[test]
fn an_ack_moves_sending_to_in_flight_with_the_servers_seq() {
    let mut w = pair();
    let ab = conv_id(0);
    let id = w.send(A, ab, "hello").unwrap();
    assert_eq!(w.history(A, id), [Sending]);
    assert_eq!(w.status(A, id), Sending, "stored before send returned");

    w.deliver_all_to_server(A);
    let ack = w.deliver_to_client(A).unwrap();
    assert!(matches!(ack, ServerFrame::Ack { id: acked, .. } if acked == id));
    assert_eq!(w.history(A, id), [Sending, InFlight]);
    let item = w.item(A, id);
    assert_eq!((item.status, item.seq), (InFlight, Some(Seq(1))));
    assert!(item.server_ts.is_some());
}

#[test]
fn in_flight_becomes_success_only_once_every_other_member_has_it() {
    let mut w = World::new(3, 3, &[&[A, B, C]], Config::default()).start();
    let abc = conv_id(0);
    let id = w.send(A, abc, "to both").unwrap();
    w.deliver_all_to_server(A);
    w.deliver_all_to_client(A);
    assert_eq!(w.history(A, id), [Sending, InFlight]);

    // B stores it and reports it: not enough, C has not.
    w.deliver_all_to_client(B);
    w.deliver_all_to_server(B);
    w.deliver_all_to_client(A);
    assert_eq!(w.status(A, id), InFlight);

    w.deliver_all_to_client(C);
    w.deliver_all_to_server(C);
    w.deliver_all_to_client(A);
    assert_eq!(w.history(A, id), [Sending, InFlight, Success]);
    assert_eq!(w.status(A, id), Success);
}

/// The current push rule: A hears nothing of B's report (the lowest mark
/// of A's others, C's, did not move) and never learns B's mark live; C's
/// report moves it, and `others` alone makes the message Success, then
/// Read. The same steps against a server that pushes every member's marks
/// to everyone (the rule before `others`) give the same statuses.
#[test]
fn the_others_lowest_marks_drive_success_and_read() {
    for summary in [true, false] {
        let mut w = World::new(3, 3, &[&[A, B, C]], Config::default());
        w.server.summary_marks = summary;
        let mut w = w.start();
        let abc = conv_id(0);
        let id = w.send(A, abc, "to both").unwrap();
        w.deliver_all_to_server(A);
        w.deliver_all_to_client(A);
        assert_eq!(w.history(A, id), [Sending, InFlight]);

        w.deliver_all_to_client(B);
        w.deliver_all_to_server(B);
        let heard: Vec<ServerFrame> = std::iter::from_fn(|| w.deliver_to_client(A)).collect();
        assert_eq!(heard.len(), usize::from(!summary), "{heard:?}");
        assert_eq!(w.status(A, id), InFlight);

        w.deliver_all_to_client(C);
        w.deliver_all_to_server(C);
        let heard: Vec<ServerFrame> = std::iter::from_fn(|| w.deliver_to_client(A)).collect();
        assert_eq!(heard.len(), 1, "{heard:?}");
        assert_eq!(
            matches!(&heard[0], ServerFrame::Marks { others: Some(o), .. } if o.delivered == Seq(1)),
            summary,
            "{heard:?}"
        );
        assert_eq!(w.history(A, id), [Sending, InFlight, Success]);
        let b_as_a_knows = |w: &World| {
            w.clients[A]
                .store
                .conversations()
                .unwrap()
                .into_iter()
                .flat_map(|c| c.members)
                .find(|m| m.user == harness::user_id(B))
                .unwrap()
                .delivered
        };
        assert_eq!(b_as_a_knows(&w), if summary { Seq::ZERO } else { Seq(1) });

        w.mark_read(B, abc, Seq(1)).unwrap();
        w.mark_read(C, abc, Seq(1)).unwrap();
        w.run_until_idle();
        assert_eq!(w.history(A, id), [Sending, InFlight, Success, Status::Read]);
        w.check_views();
    }
}

#[test]
fn sending_goes_straight_to_success_when_the_ack_comes_after_the_delivery() {
    let mut w = pair();
    let ab = conv_id(0);
    let id = w.send(A, ab, "hi").unwrap();
    w.deliver_all_to_server(A); // stored on the server...
    w.cut(A); // ...but the ack is lost with the connection.
    w.flush(); // B gets it and reports it delivered while A is away.
    assert_eq!(w.server.convs[&ab].delivered[&harness::user_id(B)], Seq(1));

    w.run_until_idle(); // A reconnects, resends, gets the original ack.
    assert_eq!(w.history(A, id), [Sending, Success]);
    assert_eq!(w.status(A, id), Success);
    assert_eq!(w.server.ids(ab), [id], "the resend was deduplicated");
}

#[test]
fn a_permanent_refusal_fails_the_message_with_code_message_and_retryable() {
    let mut w = pair();
    let ab = conv_id(0);
    w.server.scripted.push_back(Refusal::permanent(
        ErrorCode::NotMember,
        "you left this conversation",
    ));
    let refused = w.send(A, ab, "hello?").unwrap();
    let later = w.send(A, ab, "still there?").unwrap();
    w.run_until_idle();

    assert_eq!(w.history(A, refused), [Sending, Failed]);
    let item = w.item(A, refused);
    assert_eq!(item.status, Failed);
    assert_eq!(item.seq, None);
    assert_eq!(
        item.failure,
        Some(Failure {
            code: ErrorCode::NotMember,
            message: "you left this conversation".into(),
            retryable: false,
        })
    );
    // It does not block the next one.
    assert_eq!(w.history(A, later), [Sending, InFlight, Success]);
    assert_eq!(w.server.ids(ab), [later]);
    assert!(w.clients[A].syncer.sending().is_empty());
    assert_eq!(w.clients[A].syncer.unconfirmed(), 1);
}

#[test]
fn retry_keeps_the_id_and_moves_the_message_after_the_other_local_ones() {
    let mut w = pair();
    let ab = conv_id(0);
    w.server
        .scripted
        .push_back(Refusal::permanent(ErrorCode::Internal, "try again"));
    let first = w.send(A, ab, "first").unwrap();
    w.run_until_idle();
    assert_eq!(w.status(A, first), Failed);

    w.set_network(A, false);
    let second = w.send(A, ab, "second").unwrap();
    let third = w.send(A, ab, "third").unwrap();
    assert_eq!(ids(&w.clients[A].timeline(ab)), [first, second, third]);

    w.retry(A, first).unwrap();
    let item = w.item(A, first);
    assert_eq!((item.status, item.failure.clone()), (Sending, None));
    assert_eq!(ids(&w.clients[A].timeline(ab)), [second, third, first]);
    assert_eq!(w.history(A, first), [Sending, Failed, Sending]);

    w.set_network(A, true);
    w.run_until_idle();
    assert_eq!(
        w.server.ids(ab),
        [second, third, first],
        "same id, new place"
    );
    assert_eq!(
        w.history(A, first),
        [Sending, Failed, Sending, InFlight, Success]
    );
    assert_eq!(w.clients[A].timeline(ab).len(), 3);
    assert_eq!(w.clients[B].timeline(ab).len(), 3);
}

// ---- statuses never move back ------------------------------------------------

#[test]
fn a_repeated_ack_changes_nothing() {
    let mut w = pair();
    let ab = conv_id(0);
    let id = w.send(A, ab, "once").unwrap();
    w.deliver_all_to_server(A);
    w.dup_to_client(A); // the ack again, after the echo
    w.deliver_all_to_client(A);
    assert_eq!(w.history(A, id), [Sending, InFlight]);
    assert_eq!(w.status(A, id), InFlight);
    assert_eq!(w.clients[A].timeline(ab).len(), 1);
}

#[test]
fn a_late_ack_after_success_changes_nothing() {
    let mut w = pair();
    let ab = conv_id(0);
    let id = w.send(A, ab, "hi").unwrap();
    w.deliver_all_to_server(A);
    let ack = w.clients[A].to_client.front().cloned().unwrap();
    let echo = w.clients[A].to_client.get(1).cloned().unwrap();
    w.run_until_idle();
    assert_eq!(w.history(A, id), [Sending, InFlight, Success]);

    let drains = w.clients[A].drains.len();
    w.inject(A, ack);
    w.inject(A, echo);
    assert_eq!(w.clients[A].drains.len(), drains, "no output at all");
    assert_eq!(w.status(A, id), Success);
    assert_eq!(w.history(A, id), [Sending, InFlight, Success]);
}

#[test]
fn an_ack_after_the_echo_changes_nothing() {
    let mut w = pair();
    let ab = conv_id(0);
    let id = w.send(A, ab, "hi").unwrap();
    w.deliver_all_to_server(A);
    w.swap_to_client(A);
    let echo = w.deliver_to_client(A).unwrap();
    assert!(matches!(echo, ServerFrame::Message { .. }));
    assert_eq!(w.history(A, id), [Sending, InFlight]);

    let drains = w.clients[A].drains.len();
    let ack = w.deliver_to_client(A).unwrap();
    assert!(matches!(ack, ServerFrame::Ack { .. }));
    assert_eq!(w.clients[A].drains.len(), drains, "no output at all");
    assert_eq!(w.item(A, id).seq, Some(Seq(1)));
    assert_eq!(w.clients[A].syncer.unconfirmed(), 0);
}

#[test]
fn a_refusal_for_a_confirmed_message_changes_nothing() {
    let mut w = pair();
    let ab = conv_id(0);
    let id = w.send(A, ab, "hi").unwrap();
    w.deliver_all_to_server(A);
    w.deliver_all_to_client(A);
    assert_eq!(w.status(A, id), InFlight);

    let drains = w.clients[A].drains.len();
    let refusal = Refusal::permanent(ErrorCode::TooLarge, "too late");
    w.inject(A, ServerFrame::Refused { id, refusal });
    assert_eq!(w.clients[A].drains.len(), drains, "no output at all");
    assert_eq!(w.status(A, id), InFlight);

    w.run_until_idle();
    assert_eq!(w.status(A, id), Success);
    let drains = w.clients[A].drains.len();
    let refusal = Refusal::transient(ErrorCode::RateLimited, "slow", Some(5));
    w.inject(A, ServerFrame::Refused { id, refusal });
    assert_eq!(w.clients[A].drains.len(), drains, "no output at all");
    assert_eq!(w.history(A, id), [Sending, InFlight, Success]);
    assert_eq!(w.clients[A].syncer.poll_timeout(), None, "not paused");
}

// ---- retry and discard ---------------------------------------------------------

#[test]
fn retry_of_a_message_that_is_not_failed_is_refused() {
    let mut w = pair();
    let ab = conv_id(0);
    let confirmed = w.send(A, ab, "ok").unwrap();
    w.run_until_idle();
    w.set_network(A, false);
    let sending = w.send(A, ab, "waiting").unwrap();
    let drains = w.clients[A].drains.len();

    assert_eq!(w.retry(A, sending), Err(ActionError::NotFailed(sending)));
    assert_eq!(w.retry(A, confirmed), Err(ActionError::NotFound(confirmed)));
    let unknown = MessageId::new();
    assert_eq!(w.retry(A, unknown), Err(ActionError::NotFound(unknown)));
    assert_eq!(w.clients[A].drains.len(), drains, "nothing written");
    assert_eq!(w.status(A, sending), Sending);
    assert_eq!(w.status(A, confirmed), Success);
}

#[test]
fn discard_drops_failed_and_never_transmitted_messages_only() {
    let mut w = pair();
    let ab = conv_id(0);
    let failed = w.send(A, ab, "bad one").unwrap();
    w.run_until_idle();
    assert_eq!(w.status(A, failed), Failed);
    w.discard(A, failed).unwrap();
    assert_eq!(w.clients[A].store.item(failed).unwrap(), None);
    assert_eq!(w.clients[A].removed, [failed]);

    // Transmitted and unanswered: it may be on the server.
    let on_link = w.send(A, ab, "in transit").unwrap();
    assert_eq!(
        w.discard(A, on_link),
        Err(ActionError::AlreadyTransmitted(on_link))
    );
    // Still so once the connection is gone, and after a restart.
    w.set_network(A, false);
    assert_eq!(
        w.discard(A, on_link),
        Err(ActionError::AlreadyTransmitted(on_link))
    );
    w.restart(A);
    assert_eq!(
        w.discard(A, on_link),
        Err(ActionError::AlreadyTransmitted(on_link))
    );
    assert_eq!(w.status(A, on_link), Sending);

    // Never transmitted: gone, and never sent.
    let unsent = w.send(A, ab, "never mind").unwrap();
    w.discard(A, unsent).unwrap();
    assert_eq!(w.clients[A].store.item(unsent).unwrap(), None);
    assert_eq!(w.discard(A, unsent), Err(ActionError::NotFound(unsent)));
    w.set_network(A, true);
    w.run_until_idle();
    assert_eq!(w.server.ids(ab), [on_link]);
    assert!(!sends(&w.take_transmitted(A)).contains(&unsent));
    assert_eq!(ids(&w.clients[B].timeline(ab)), [on_link]);
}

// ---- send validation -------------------------------------------------------------

#[test]
fn send_checks_the_body_against_the_announced_limits_and_queues_nothing_on_refusal() {
    let mut w = World::new(2, 2, &[&[A, B]], Config::default());
    w.server.limits.max_body_bytes = 10;
    let mut w = w.start();
    let ab = conv_id(0);
    assert_eq!(w.clients[A].syncer.limits().max_body_bytes, 10);
    let drains = w.clients[A].drains.len();

    let five = "ééééé"; // 5 characters, 10 bytes of UTF-8
    let code = |r: Result<MessageId, ActionError>| match r {
        Err(ActionError::InvalidBody { code, .. }) => code,
        other => panic!("expected an invalid body, got {other:?}"),
    };
    assert_eq!(
        code(w.send(A, ab, &format!("{five}a"))),
        ErrorCode::TooLarge
    );
    assert_eq!(code(w.send(A, ab, "")), ErrorCode::EmptyBody);
    assert_eq!(code(w.send(A, ab, "a\u{0}b")), ErrorCode::InvalidBody);
    assert_eq!(w.clients[A].drains.len(), drains, "nothing stored or sent");
    assert_eq!(w.clients[A].syncer.unconfirmed(), 0);

    let at_limit = w.send(A, ab, five).unwrap();
    w.run_until_idle();
    assert_eq!(ids(&w.clients[A].timeline(ab)), [at_limit]);
    assert_eq!(sends(&w.take_transmitted(A)), [at_limit]);
    assert_eq!(w.clients[B].timeline(ab)[0].body, five, "byte-identical");
}

#[test]
fn send_to_an_unknown_conversation_is_refused() {
    let mut w = pair();
    let drains = w.clients[A].drains.len();
    let nowhere = conv_id(42);
    assert_eq!(
        w.send(A, nowhere, "anyone?"),
        Err(ActionError::UnknownConversation(nowhere))
    );
    assert_eq!(w.clients[A].drains.len(), drains);
    assert_eq!(w.clients[A].syncer.unconfirmed(), 0);
}

// ---- transmission --------------------------------------------------------------

#[test]
fn sends_are_pipelined() {
    let mut w = pair();
    let ab = conv_id(0);
    let sent: Vec<_> = (0..3)
        .map(|i| w.send(A, ab, &format!("m{i}")).unwrap())
        .collect();
    // Three frames on the link before any answer came back.
    assert_eq!(sends(&w.take_transmitted(A)), sent);
    assert!(w.clients[A].to_client.is_empty());
    w.run_until_idle();
    assert_eq!(w.server.ids(ab), sent);
}

#[test]
fn the_window_bounds_unanswered_sends() {
    let mut w = pair_with(Config {
        window: 2,
        ..Config::default()
    });
    let ab = conv_id(0);
    let sent: Vec<_> = (0..3)
        .map(|i| w.send(A, ab, &format!("m{i}")).unwrap())
        .collect();
    assert_eq!(sends(&w.take_transmitted(A)), sent[..2]);
    w.deliver_to_server(A);
    w.deliver_to_client(A); // the first ack makes room
    assert_eq!(sends(&w.take_transmitted(A)), sent[2..]);
    w.run_until_idle();
    assert_eq!(w.server.ids(ab), sent);
}

#[test]
fn a_lost_connection_keeps_messages_sending_and_they_are_resent_in_order() {
    let mut w = pair();
    let ab = conv_id(0);
    let sent: Vec<_> = (0..3)
        .map(|i| w.send(A, ab, &format!("m{i}")).unwrap())
        .collect();
    w.set_network(A, false);
    w.advance(Duration::from_secs(300));
    assert!(w.clients[A].connects.len() > 10, "it kept trying");
    for id in &sent {
        assert_eq!(w.history(A, *id), [Sending], "a network down is no failure");
    }
    w.take_transmitted(A);

    w.set_network(A, true);
    w.advance(Config::default().reconnect_cap);
    let frames = w.take_transmitted(A);
    assert!(
        matches!(frames.first(), Some(ClientFrame::ListConversations { .. })),
        "{frames:?}"
    );
    assert_eq!(frames.len(), 4, "{frames:?}");
    assert_eq!(sends(&frames), sent);

    w.run_until_idle();
    assert_eq!(w.server.ids(ab), sent);
    for id in &sent {
        assert_eq!(w.history(A, *id), [Sending, InFlight, Success]);
    }
}

#[test]
fn a_rate_limit_pauses_transmission_until_retry_after_then_resends_in_order() {
    let mut w = pair();
    let ab = conv_id(0);
    let until = w.now() + ms(500);
    w.server.throttle(A, until);
    let sent: Vec<_> = (0..3)
        .map(|i| w.send(A, ab, &format!("m{i}")).unwrap())
        .collect();
    w.deliver_all_to_server(A);
    w.deliver_all_to_client(A); // three refusals: rate_limited, retry after 500 ms
    w.take_transmitted(A);

    w.advance(ms(499));
    assert_eq!(w.take_transmitted(A), [], "paused");
    let fourth = w.send(A, ab, "m3").unwrap();
    assert_eq!(w.take_transmitted(A), [], "new messages wait too");
    w.advance(ms(1));
    let mut all = sent.clone();
    all.push(fourth);
    assert_eq!(sends(&w.take_transmitted(A)), all);

    w.run_until_idle();
    assert_eq!(w.server.ids(ab), all);
    for id in &all {
        assert_eq!(w.history(A, *id), [Sending, InFlight, Success]);
    }
}

#[test]
fn a_rate_limit_seen_after_a_late_timer_pauses_again() {
    // The driver may handle a frame or an action after `paused_until` has
    // passed but before its timer fired: transmission resumes, and a new
    // rate limit must pause it again rather than be taken for an echo of
    // the old one.
    let mut w = pair();
    let ab = conv_id(0);
    let until = w.now() + ms(500);
    w.server.throttle(A, until);
    let first = w.send(A, ab, "first").unwrap();
    w.flush();
    w.take_transmitted(A);

    w.skip(ms(600)); // the timer is late
    let until = w.now() + ms(500);
    w.server.throttle(A, until);
    let second = w.send(A, ab, "second").unwrap();
    assert_eq!(sends(&w.take_transmitted(A)), [first, second]);
    w.flush(); // both refused again, retry after 500 ms

    w.advance(ms(500));
    assert_eq!(
        sends(&w.take_transmitted(A)),
        [first, second],
        "resent once the new retry-after passed"
    );
    w.run_until_idle();
    assert_eq!(w.server.ids(ab), [first, second]);
    assert_eq!(w.history(A, first), [Sending, InFlight, Success]);
}

#[test]
fn transient_refusals_within_the_budget_never_fail_the_message() {
    let mut w = pair_with(Config {
        retry_budget: 2,
        ..Config::default()
    });
    let ab = conv_id(0);
    for _ in 0..2 {
        let r = Refusal::transient(ErrorCode::Unavailable, "busy", Some(100));
        w.server.scripted.push_back(r);
    }
    let id = w.send(A, ab, "eventually").unwrap();
    w.run_until_idle();
    assert_eq!(w.history(A, id), [Sending, InFlight, Success]);
    assert_eq!(sends(&w.take_transmitted(A)), [id, id, id]);
}

#[test]
fn a_spent_retry_budget_fails_the_message_as_retryable() {
    let mut w = pair_with(Config {
        retry_budget: 2,
        ..Config::default()
    });
    let ab = conv_id(0);
    for _ in 0..3 {
        let r = Refusal::transient(ErrorCode::RateLimited, "slow down", Some(100));
        w.server.scripted.push_back(r);
    }
    let id = w.send(A, ab, "doomed").unwrap();
    w.run_until_idle();
    assert_eq!(w.history(A, id), [Sending, Failed]);
    assert_eq!(sends(&w.take_transmitted(A)), [id, id, id]);
    let failure = w.item(A, id).failure.unwrap();
    assert_eq!(failure.code, ErrorCode::RateLimited);
    assert!(failure.retryable);

    w.retry(A, id).unwrap();
    w.run_until_idle();
    assert_eq!(
        w.history(A, id),
        [Sending, Failed, Sending, InFlight, Success]
    );
}

#[test]
fn an_ack_timeout_resends_and_the_server_answers_with_the_original_ack() {
    let ack_timeout = Duration::from_secs(2);
    let mut w = pair_with(Config {
        ack_timeout,
        ..Config::default()
    });
    let ab = conv_id(0);
    let id = w.send(A, ab, "lost ack").unwrap();
    w.deliver_all_to_server(A);
    w.drop_to_client(A).unwrap(); // the ack
    w.drop_to_client(A).unwrap(); // the echo
    w.take_transmitted(A);

    w.advance(ack_timeout - ms(1));
    assert_eq!(w.take_transmitted(A), []);
    w.advance(ms(1));
    assert_eq!(sends(&w.take_transmitted(A)), [id]);
    w.run_until_idle();
    assert_eq!(w.server.ids(ab), [id]);
    assert_eq!(w.item(A, id).seq, Some(Seq(1)));
    assert_eq!(w.history(A, id), [Sending, InFlight, Success]);
    assert_eq!(
        w.clients[A].syncer.poll_timeout(),
        None,
        "nothing left to time out"
    );
}

// ---- timeline order --------------------------------------------------------------

#[test]
fn the_timeline_orders_confirmed_messages_by_seq_then_local_ones_by_send_order() {
    let mut w = pair();
    let ab = conv_id(0);
    let b1 = w.send(B, ab, "b1").unwrap();
    w.run_until_idle();
    let a1 = w.send(A, ab, "a1").unwrap();
    w.run_until_idle();
    w.set_network(A, false);
    let a2 = w.send(A, ab, "a2").unwrap();
    let a3 = w.send(A, ab, "a3").unwrap();
    let b2 = w.send(B, ab, "b2").unwrap();
    w.run_until_idle();

    let timeline = w.clients[A].timeline(ab);
    assert_eq!(ids(&timeline), [b1, a1, a2, a3]);
    let mut sorted = timeline.clone();
    sort_timeline(&mut sorted);
    assert_eq!(sorted, timeline);
    assert!(timeline[2].order_key() < timeline[3].order_key());
    assert!(
        timeline[1].order_key() < timeline[2].order_key(),
        "confirmed first"
    );

    w.set_network(A, true);
    w.run_until_idle();
    let timeline = w.clients[A].timeline(ab);
    assert_eq!(ids(&timeline), [b1, a1, b2, a2, a3]);
    let seqs: Vec<_> = timeline.iter().map(|i| i.seq.unwrap().0).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(ids(&w.clients[B].timeline(ab)), [b1, a1, b2, a2, a3]);
}

// ---- catch-up --------------------------------------------------------------------

#[test]
fn a_gap_triggers_a_sync_and_received_never_passes_it() {
    let mut w = pair();
    let ab = conv_id(0);
    let sent: Vec<_> = (0..3)
        .map(|i| w.send(B, ab, &format!("b{i}")).unwrap())
        .collect();
    w.deliver_all_to_server(B);
    w.take_transmitted(A);

    w.deliver_to_client(A).unwrap(); // seq 1
    assert!(matches!(
        w.take_transmitted(A)[..],
        [ClientFrame::Received { seq: Seq(1), .. }]
    ));
    w.drop_to_client(A).unwrap(); // seq 2 is lost
    w.deliver_to_client(A).unwrap(); // seq 3: cursor + 2
    let frames = w.take_transmitted(A);
    assert!(
        matches!(frames[..], [ClientFrame::Sync { after: Seq(1), .. }]),
        "a sync from the cursor and no received past the gap: {frames:?}"
    );
    assert_eq!(w.clients[A].stored_conversation(ab).unwrap().cursor, Seq(1));

    let drains = w.clients[A].drains.len();
    w.deliver_all_to_server(A);
    w.deliver_all_to_client(A); // marks, then the batch
    let is_received_3 = |o: &super::Output| {
        matches!(
            o,
            super::Output::Transmit(ClientFrame::Received { seq: Seq(3), .. })
        )
    };
    let drain = w.clients[A].drains[drains..]
        .iter()
        .find(|d| d.iter().any(is_received_3))
        .expect("received 3 once the gap is filled")
        .clone();
    let received = drain.iter().position(is_received_3).unwrap();
    assert!(
        drain.iter().any(|o| matches!(o, super::Output::Store(crate::store::StoreOp::UpsertConfirmed(i)) if i.id == sent[1])),
        "in the drain that stores the missing message: {drain:?}"
    );
    let last_store = drain
        .iter()
        .rposition(|o| matches!(o, super::Output::Store(_)))
        .unwrap();
    assert!(
        last_store < received,
        "received after the store ops: {drain:?}"
    );
    assert_eq!(ids(&w.clients[A].timeline(ab)), sent);
    assert_eq!(w.clients[A].stored_conversation(ab).unwrap().cursor, Seq(3));
}

#[test]
fn catch_up_pages_until_the_last_seq_without_duplicates() {
    let mut w = pair_with(Config {
        sync_page: 2,
        ..Config::default()
    });
    let ab = conv_id(0);
    w.set_network(A, false);
    let sent: Vec<_> = (0..5)
        .map(|i| w.send(B, ab, &format!("b{i}")).unwrap())
        .collect();
    w.run_until_idle();
    w.take_transmitted(A);

    w.set_network(A, true);
    w.run_until_idle();
    let frames = w.take_transmitted(A);
    let afters: Vec<_> = frames
        .iter()
        .filter_map(|f| match f {
            ClientFrame::Sync { after, limit, .. } => Some((after.0, *limit)),
            _ => None,
        })
        .collect();
    assert_eq!(afters, [(0, 2), (2, 2), (4, 2)]);
    let timeline = w.clients[A].timeline(ab);
    assert_eq!(ids(&timeline), sent);
    let seqs: Vec<_> = timeline.iter().map(|i| i.seq.unwrap().0).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    let writes = w.clients[A]
        .drains
        .iter()
        .flatten()
        .filter(|o| {
            matches!(
                o,
                super::Output::Store(crate::store::StoreOp::UpsertConfirmed(_))
            )
        })
        .count();
    assert_eq!(writes, 5, "each message written once");
    assert!(matches!(
        frames.last(),
        Some(ClientFrame::Received { seq: Seq(5), .. })
    ));
}

#[test]
fn a_stale_batch_is_ignored() {
    let mut w = pair();
    let ab = conv_id(0);
    w.set_network(A, false);
    let sent: Vec<_> = (0..2)
        .map(|i| w.send(B, ab, &format!("b{i}")).unwrap())
        .collect();
    w.run_until_idle();

    // A connects, lists, asks for a sync; the batch is in transit...
    w.set_network(A, true);
    w.advance(Config::default().reconnect_cap);
    w.deliver_all_to_server(A);
    w.deliver_all_to_client(A);
    w.deliver_all_to_server(A);
    let batch = w.clients[A].to_client.back().cloned().unwrap();
    assert!(matches!(batch, ServerFrame::Batch { .. }));
    // ...when the connection is lost. A reconnects.
    w.cut(A);
    w.advance(Config::default().reconnect_cap);
    assert!(w.clients[A].connected);

    let drains = w.clients[A].drains.len();
    w.inject(A, batch.clone());
    let ServerFrame::Batch {
        conversation,
        messages,
        members,
        last_seq,
        ..
    } = batch
    else {
        unreachable!()
    };
    w.inject(
        A,
        ServerFrame::Batch {
            req: 999,
            conversation,
            messages,
            members,
            last_seq,
        },
    );
    assert_eq!(w.clients[A].drains.len(), drains, "both ignored");
    assert!(w.clients[A].timeline(ab).is_empty());

    w.run_until_idle();
    assert_eq!(ids(&w.clients[A].timeline(ab)), sent);
}

// ---- connection ------------------------------------------------------------------

fn connect_times(seed: u64) -> Vec<Duration> {
    let config = Config {
        reconnect_base: ms(100),
        reconnect_cap: Duration::from_secs(1),
        seed,
        ..Config::default()
    };
    let mut w = World::new(1, 1, &[&[A]], config);
    w.clients[A].network_up = false;
    w.advance(Duration::from_secs(30));
    w.clients[A].connects.clone()
}

#[test]
fn reconnect_delays_grow_are_capped_jittered_and_follow_the_seed() {
    let times = connect_times(7);
    assert_eq!(times[0], Duration::ZERO, "the first attempt is at once");
    assert!(times.len() > 25, "{times:?}");
    let gaps: Vec<_> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for (k, gap) in gaps.iter().enumerate() {
        let ceiling = (ms(100) * (1 << k.min(20))).min(Duration::from_secs(1));
        assert!(*gap <= ceiling, "attempt {k}: {gap:?} above {ceiling:?}");
        assert!(
            *gap >= ceiling / 2,
            "attempt {k}: {gap:?} below half of {ceiling:?}"
        );
    }
    let capped: std::collections::HashSet<_> = gaps[5..].iter().collect();
    assert!(capped.len() > 5, "jittered: {capped:?}");

    assert_eq!(connect_times(7), times, "same seed, same times");
    assert_ne!(connect_times(8), times, "another seed, other times");
}

#[test]
fn an_unauthorized_session_stops_reconnecting() {
    let mut w = pair();
    let ab = conv_id(0);
    let refusal = Refusal::permanent(ErrorCode::Unauthorized, "token revoked");
    w.inject(
        A,
        ServerFrame::Error {
            req: None,
            refusal: refusal.clone(),
        },
    );
    assert_eq!(
        w.clients[A].events.last(),
        Some(&Event::SessionRejected(refusal))
    );
    w.cut(A); // the server closes the connection
    let attempts = w.clients[A].connects.len();
    assert_eq!(w.clients[A].syncer.poll_timeout(), None);
    w.advance(Duration::from_secs(600));
    assert_eq!(w.clients[A].connects.len(), attempts, "no new attempt");
    let id = w.send(A, ab, "later").unwrap();
    assert_eq!(w.history(A, id), [Sending], "kept, not failed");
}

#[test]
fn a_server_asking_to_wait_is_not_retried_before_its_retry_after() {
    let mut w = pair();
    let refusal = Refusal::transient(ErrorCode::Unavailable, "shutting down", Some(5_000));
    w.inject(A, ServerFrame::Error { req: None, refusal });
    w.cut(A); // the server closes the connection after saying so
    let at = w.clients[A]
        .syncer
        .poll_timeout()
        .expect("a reconnect is planned");
    assert!(
        at >= w.now() + Duration::from_millis(5_000),
        "reconnect planned {:?} after the cut, before the 5 s the server asked for",
        at - w.now()
    );
}

#[test]
fn an_unsupported_version_stops_reconnecting() {
    let mut w = pair();
    let refusal = Refusal::permanent(ErrorCode::UnsupportedVersion, "version 2 only");
    w.inject(
        A,
        ServerFrame::Error {
            req: None,
            refusal: refusal.clone(),
        },
    );
    assert_eq!(
        w.clients[A].events.last(),
        Some(&Event::SessionRejected(refusal))
    );
    w.cut(A);
    assert_eq!(w.clients[A].syncer.poll_timeout(), None);
}

// ---- restart ---------------------------------------------------------------------

#[test]
fn a_restarted_syncer_resends_its_outbox_in_order() {
    let mut w = pair();
    let ab = conv_id(0);
    let sent: Vec<_> = (0..3)
        .map(|i| w.send(A, ab, &format!("m{i}")).unwrap())
        .collect();
    w.deliver_to_server(A); // only the first reached the server
    w.set_network(A, false);
    let offline = w.send(A, ab, "written offline").unwrap();
    w.set_network(A, true);
    w.take_transmitted(A);

    w.restart(A);
    let frames = w.take_transmitted(A);
    assert!(matches!(
        frames.first(),
        Some(ClientFrame::ListConversations { .. })
    ));
    let mut all = sent.clone();
    all.push(offline);
    assert_eq!(sends(&frames), all);

    w.run_until_idle();
    assert_eq!(w.server.ids(ab), all, "in order, no duplicate");
    for id in &all {
        assert_eq!(w.history(A, *id), [Sending, InFlight, Success]);
    }
    assert_eq!(ids(&w.clients[B].timeline(ab)), all);
}

#[test]
fn a_restarted_syncer_still_settles_in_flight_messages() {
    let mut w = pair();
    let ab = conv_id(0);
    let id = w.send(A, ab, "hi").unwrap();
    w.deliver_all_to_server(A);
    w.deliver_all_to_client(A);
    assert_eq!(w.status(A, id), InFlight);
    w.restart(A);
    w.run_until_idle();
    assert_eq!(w.history(A, id), [Sending, InFlight, Success]);
    assert_eq!(w.clients[A].timeline(ab).len(), 1);
}

/// The server commits a batch of marks without an fsync of its own, so a
/// power cut may take its latest marks back. The members' devices restore
/// them after reconnecting, and nobody's status goes back meanwhile.
#[test]
fn marks_the_server_lost_are_reported_again_and_no_status_goes_back() {
    let mut w = pair();
    let ab = conv_id(0);
    let ids: Vec<_> = (0..3)
        .map(|i| w.send(A, ab, &format!("m{i}")).unwrap())
        .collect();
    w.run_until_idle();
    w.mark_read(B, ab, Seq(2)).unwrap();
    w.run_until_idle();
    let (a, b) = (harness::user_id(A), harness::user_id(B));
    assert_eq!(w.server.convs[&ab].delivered[&b], Seq(3));
    assert_eq!(w.server.convs[&ab].read[&b], Seq(2));
    let before: Vec<_> = ids.iter().map(|&id| w.status(A, id)).collect();
    assert_eq!(before, [Status::Read, Status::Read, Success]);

    // The server restarts without its last marks (every one, here).
    w.cut(A);
    w.cut(B);
    let conv = w.server.convs.get_mut(&ab).unwrap();
    conv.delivered.clear();
    conv.read.clear();
    w.run_until_idle();

    let conv = &w.server.convs[&ab];
    assert_eq!(conv.delivered.get(&b), Some(&Seq(3)), "B reported again");
    assert_eq!(conv.read.get(&b), Some(&Seq(2)), "B's read mark too");
    assert_eq!(conv.delivered.get(&a), Some(&Seq(3)), "A's own mark too");
    let after: Vec<_> = ids.iter().map(|&id| w.status(A, id)).collect();
    assert_eq!(after, before, "no status moved back");
    for &id in &ids {
        assert!(
            w.history(A, id).windows(2).all(|p| p[0] < p[1]),
            "{:?}",
            w.history(A, id)
        );
    }
    w.check_views();
}
