//! Dead consumer processes must not wedge a ring. A member killed with SIGKILL while it holds
//! slots is found by the supervisor (`Ring::reclaim_dead`), which releases exactly what it
//! held: delivered by the survivors + delivered by the dead + abandoned == published, for
//! every group, with the abandoned events being exactly the rest of the dead member's batch.
//! A group whose only member died is detached and the producer goes on; a new process can
//! take a dead member's role. And a survivor that merely lost a claim race to the member
//! that died must not keep the dead member's events from being reclaimed.
//!
//! Children are forked, attach by path, report through a shared anonymous mapping and leave
//! with `_exit`; the parent reaps every child (killing what is left on failure).

use daq_engine::ring::{Next, Policy};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

mod common;
use common::*;

// ------------------------------------------------------------------ process bodies

/// Producer process body under `block`: publishes events 0..n (counter = number), closes.
fn produce_all(path: &Path, n: u64, rep: &Report) -> i32 {
    let ring = attach(path);
    let mut p = ring.producer().expect("producer role");
    for e in 0..n {
        let Ok(mut slot) = p.claim(Duration::from_secs(30)) else {
            rep.errors.fetch_add(1, Ordering::SeqCst);
            return 2;
        };
        let (data, meta) = slot.parts();
        fill(data, e);
        meta.counter = e as i64;
        slot.publish();
        rep.count.fetch_add(1, Ordering::Relaxed);
    }
    p.close();
    0
}

/// Reader process body. Reads and checks events; after `hold_after` events (if given) it
/// takes one more, records its number + 1 in `other` and sleeps holding it until killed.
fn consume(path: &Path, g: usize, m: usize, hold_after: Option<u64>, rep: &Report) -> i32 {
    consume_with(path, g, m, hold_after, rep, false)
}

/// [`consume`], releasing in ranges as the engine's readers do when `ranges`
/// (`Reader::set_small_events`).
fn consume_with(
    path: &Path,
    g: usize,
    m: usize,
    hold_after: Option<u64>,
    rep: &Report,
    ranges: bool,
) -> i32 {
    let ring = attach(path);
    let mut r = ring.reader(g, m).expect("member role");
    r.set_small_events(ranges);
    let mut last: Option<u64> = None;
    let hold = |c: u64| {
        if hold_after == Some(rep.count.load(Ordering::SeqCst)) {
            rep.other.store(c + 1, Ordering::SeqCst);
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    };
    loop {
        match take(&mut r, Duration::from_secs(30), true, &mut last, rep, hold) {
            Took::Event(_) => {}
            Took::Idle => {
                rep.errors.fetch_add(1, Ordering::SeqCst);
                return 3;
            }
            Took::End => return 0,
        }
    }
}

/// Kills child `pid` with SIGKILL and reaps it.
fn kill_child(kids: &mut Children, pid: Pid) {
    kill(pid, Signal::SIGKILL).unwrap();
    assert!(matches!(
        waitpid(pid, None).unwrap(),
        WaitStatus::Signaled(_, Signal::SIGKILL, _)
    ));
    kids.0.retain(|&p| p != pid);
}

/// Kills the child `victim` once it holds the event it was told to hold (it sets `other` of
/// its report `rep` then), waiting 30 s at the most; the test fails with `never` after that.
fn kill_holding(kids: &mut Children, victim: Pid, rep: &Report, never: &str) {
    assert!(
        wait_for(Duration::from_secs(30), || rep.other.load(Ordering::SeqCst)
            != 0),
        "{never}"
    );
    kill_child(kids, victim);
}

// ------------------------------------------------------------------ the tests

/// Groups [2, 1]: member 0 of group 0 is killed holding an event (and the rest of its
/// batch); the supervisor reclaims; the producer finishes; every event is accounted for.
#[test]
fn killed_member_is_reclaimed_and_every_event_accounted() {
    const N: u64 = 50_000;
    let (ring, path, board, mut kids) = ring_with_board("kill", Policy::Block, 64, vec![2, 1], 4);
    // The victim shares group 0 with another member, so it sees only part of the N events;
    // 500 is 1 % of them, reached even when the scheduler favours the other member.
    const HOLD: u64 = 500;
    let victim = kids.spawn(|| consume(&path, 0, 0, Some(HOLD), board.get(0)));
    kids.spawn(|| consume(&path, 0, 1, None, board.get(1)));
    kids.spawn(|| consume(&path, 1, 0, None, board.get(2)));
    kids.spawn(|| produce_all(&path, N, board.get(3)));
    kill_holding(
        &mut kids,
        victim,
        board.get(0),
        "the victim never got its 501st event",
    );
    let held = board.get(0).other.load(Ordering::SeqCst) - 1;
    let mut reclaimed = 0;
    let codes = kids.wait_all_while(Duration::from_secs(60), || reclaimed += ring.reclaim_dead());
    assert_eq!(codes, vec![0; 3], "survivor, other group, producer");
    reclaimed += ring.reclaim_dead();

    let s = ring.stats();
    assert_eq!(s.published, N);
    let abandoned = s.groups[0].abandoned;
    assert_eq!(reclaimed, abandoned);
    assert!(abandoned >= 1, "the held event must have been reclaimed");
    let (dead, alive) = (board.get(0), board.get(1));
    assert_eq!(alive.errors.load(Ordering::SeqCst), 0);
    assert_eq!(dead.count.load(Ordering::SeqCst), HOLD);
    assert_eq!(
        dead.count.load(Ordering::SeqCst) + alive.count.load(Ordering::SeqCst) + abandoned,
        N,
        "delivered by the dead + by the survivor + abandoned == published"
    );
    // The abandoned events are the held one and the rest of the dead member's batch.
    assert_eq!(
        add(
            add(dead.tally(), alive.tally()),
            over(held..held + abandoned)
        ),
        over(0..N),
        "group 0 got every event exactly once"
    );
    assert_eq!(board.get(2).tally(), over(0..N), "group 1 is unaffected");
    assert_eq!((s.groups[1].abandoned, s.groups[1].released), (0, N));
    assert_eq!(s.groups[0].released, N);
    eprintln!("killed holding event {held}; {abandoned} events abandoned");
}

/// Groups [1, 1]: the only member of group 1 dies holding an event; the ring fills and the
/// producer waits for the dead group until the supervisor detaches it.
#[test]
fn group_whose_only_member_died_is_detached_and_the_producer_goes_on() {
    const N: u64 = 20_000;
    const SLOTS: u64 = 16;
    let (ring, path, board, mut kids) =
        ring_with_board("detach", Policy::Block, SLOTS as usize, vec![1, 1], 3);
    kids.spawn(|| consume(&path, 0, 0, None, board.get(0)));
    let victim = kids.spawn(|| consume(&path, 1, 0, Some(100), board.get(1)));
    kids.spawn(|| produce_all(&path, N, board.get(2)));
    kill_holding(
        &mut kids,
        victim,
        board.get(1),
        "the member of group 1 never got its 101st event",
    );
    // The dead group holds the ring: the producer fills it up to the dead group's release
    // cursor and waits.
    assert!(
        wait_for(Duration::from_secs(30), || {
            let s = ring.stats();
            s.published == s.groups[1].released + SLOTS
        }),
        "the producer never filled the ring up to the dead group: {:?}",
        ring.stats()
    );
    let s = ring.stats();
    assert!(s.published < N);
    assert_eq!(
        s.groups[1].released, 100,
        "the dead member released its first 100"
    );
    ring.detach_group(1);
    let codes = kids.wait_all_while(Duration::from_secs(60), || {});
    assert_eq!(codes, vec![0; 2], "group 0 member, producer");
    let s = ring.stats();
    assert_eq!(s.published, N);
    assert!(!s.groups[1].active);
    assert!(s.groups[0].active);
    assert_eq!(board.get(0).errors.load(Ordering::SeqCst), 0);
    assert_eq!(
        board.get(0).tally(),
        over(0..N),
        "the live group got everything"
    );
    assert_eq!(board.get(1).count.load(Ordering::SeqCst), 100);
}

/// Group [1]: its member is killed holding an event; a new process takes the member role
/// (which releases the dead one's batch) and reads on.
#[test]
fn new_process_takes_over_a_dead_members_role() {
    kill_and_take_over("takeover", 16, 20_000, false);
}

/// Group [1], read as the engine reads: the member releases what it read in ranges. It is
/// killed holding an event, with the events before it in its claimed range read but not
/// yet released; the successor's takeover counts those as read, and only the held event
/// and the rest of the range as abandoned (before the `finished` mark, all of them were).
#[test]
fn a_member_killed_mid_range_leaves_what_it_read_counted_as_read() {
    // Room for every event: the producer publishes them all first and never waits, so the
    // member never releases early (it does when it sees the producer waiting) and what it
    // read of its range stays unreleased.
    let released_at_kill = kill_and_take_over("ranges", 4096, 2_000, true);
    assert!(
        released_at_kill < HOLD,
        "the events read before the held one must be unreleased at the kill \
         ({released_at_kill} released)"
    );
}

/// The event after which the member of [`kill_and_take_over`] is killed.
const HOLD: u64 = 1_000;

/// A ring of `slots` slots and one group of one member; `n` events. The member (releasing
/// in ranges if `ranges`) is killed holding the event after [`HOLD`]; a new process takes its
/// role and reads on. Checks that every event was read by one of them or abandoned, once,
/// and returns the group's released count at the kill.
fn kill_and_take_over(tag: &str, slots: usize, n: u64, ranges: bool) -> u64 {
    let (ring, path, board, mut kids) = ring_with_board(tag, Policy::Block, slots, vec![1], 3);
    // When the ring holds every event, all are published before the member reads: its
    // claims are then whole batches, never cut short at the last published event (a
    // range that ends at what is published is released as soon as it is read).
    let all_first = n <= slots as u64;
    if all_first {
        kids.spawn(|| produce_all(&path, n, board.get(2)));
        assert!(wait_for(Duration::from_secs(30), || board
            .get(2)
            .count
            .load(Ordering::SeqCst)
            == n));
    }
    let victim = kids.spawn(|| consume_with(&path, 0, 0, Some(HOLD), board.get(0), ranges));
    if !all_first {
        kids.spawn(|| produce_all(&path, n, board.get(2)));
    }
    kill_holding(
        &mut kids,
        victim,
        board.get(0),
        "the member never got its 1001st event",
    );
    let held = board.get(0).other.load(Ordering::SeqCst) - 1;
    assert_eq!(
        (held, board.get(0).count.load(Ordering::SeqCst)),
        (HOLD, HOLD)
    );
    let released_at_kill = ring.stats().groups[0].released;
    kids.spawn(|| consume_with(&path, 0, 0, None, board.get(1), ranges));
    let codes = kids.wait_all_while(Duration::from_secs(60), || {});
    assert_eq!(codes, vec![0; 2], "producer, successor");
    let s = ring.stats();
    let abandoned = s.groups[0].abandoned;
    assert!(abandoned >= 1, "the held event is abandoned");
    assert_eq!(board.get(1).errors.load(Ordering::SeqCst), 0);
    assert_eq!(
        add(
            add(board.get(0).tally(), board.get(1).tally()),
            over(held..held + abandoned)
        ),
        over(0..n),
        "read by the dead + by the successor + abandoned == every event once"
    );
    assert_eq!((s.published, s.groups[0].released), (n, n));
    released_at_kill
}

/// Six members spin for the events of a 4-slot ring, published one at a time, with batches
/// of 4; each member that gets an event holds it and is killed, so the ring stays full.
/// Members that got nothing survive, each possibly having lost its last claim race to one
/// that died. Reclaim must release all 4 events anyway, or the producer waits forever.
#[test]
fn reclaim_is_not_blocked_by_a_survivor_that_lost_the_claim_race() {
    const TRIALS: usize = 30;
    const SLOTS: u64 = 4;
    const MEMBERS: usize = 6;
    for trial in 0..TRIALS {
        let (ring, path, board, mut kids) = ring_with_board(
            &format!("race{trial}"),
            Policy::Block,
            SLOTS as usize,
            vec![MEMBERS],
            MEMBERS,
        );
        let pids: Vec<Pid> = (0..MEMBERS)
            .map(|m| {
                let (path, rep) = (&path, board.get(m));
                kids.spawn(move || {
                    let ring = attach(path);
                    let mut r = ring.reader(0, m).expect("member role");
                    r.set_batch(SLOTS);
                    rep.sum.store(1, Ordering::SeqCst); // ready
                    loop {
                        match r.try_next() {
                            Next::Event(ev) => {
                                rep.other.store(ev.index() + 1, Ordering::SeqCst);
                                loop {
                                    std::thread::sleep(Duration::from_secs(1));
                                }
                            }
                            Next::Idle => std::hint::spin_loop(),
                            Next::End => return 0,
                        }
                    }
                })
            })
            .collect();
        assert!(wait_for(Duration::from_secs(10), || (0..MEMBERS)
            .all(|m| board.get(m).sum.load(Ordering::SeqCst) == 1)));
        let mut p = ring.producer().unwrap();
        for e in 0..SLOTS {
            let mut slot = p.claim(Duration::from_secs(5)).unwrap();
            fill(slot.data_mut(), e);
            slot.meta_mut().counter = e as i64;
            slot.publish();
            std::thread::sleep(Duration::from_micros(300));
        }
        // Kill every member that reports holding an event, and reclaim, until all events
        // are released or nothing moves for a while.
        let mut killed = vec![false; MEMBERS];
        let settled = wait_for(Duration::from_secs(3), || {
            for m in 0..MEMBERS {
                if !killed[m] && board.get(m).other.load(Ordering::SeqCst) != 0 {
                    kill_child(&mut kids, pids[m]);
                    killed[m] = true;
                }
            }
            ring.reclaim_dead();
            ring.stats().groups[0].abandoned == SLOTS
        });
        let s = ring.stats();
        assert!(
            settled,
            "trial {trial}: wedged with {} of {SLOTS} events reclaimed; killed {killed:?}; {s:?}",
            s.groups[0].abandoned
        );
        assert_eq!(s.groups[0].released, SLOTS);
        // The producer has room again; the survivors see the end.
        {
            // Claimed and written, never published.
            let mut slot = p.claim(Duration::from_secs(5)).expect("room after reclaim");
            fill(slot.data_mut(), SLOTS);
        }
        p.close();
        let survivors = killed.iter().filter(|k| !**k).count();
        let codes = kids.wait_all_while(Duration::from_secs(10), || {});
        assert_eq!(
            codes,
            vec![0; survivors],
            "trial {trial}: survivors end cleanly"
        );
    }
}

/// A member that leaves cleanly in the middle of its batch (drops its reader) releases the
/// events it claimed but never read: they are gone for its group, and must be counted as
/// abandoned, so delivered + abandoned == published still holds.
#[test]
fn member_leaving_mid_batch_counts_its_unread_events() {
    let ring = ring("leave", Policy::Block, 16, vec![2]);
    let mut p = ring.producer().unwrap();
    let mut a = ring.reader(0, 0).unwrap();
    let mut b = ring.reader(0, 1).unwrap();
    a.set_batch(4);
    for e in 0..8 {
        let mut slot = p.claim(Duration::from_secs(1)).unwrap();
        slot.meta_mut().counter = e;
        slot.publish();
    }
    let Next::Event(ev) = a.next(Duration::from_secs(1)) else {
        panic!("no event for member 0")
    };
    assert_eq!(ev.index(), 0);
    drop(ev);
    assert!(a.has_claimed(), "member 0 claimed a batch of 4");
    drop(a);
    let mut got_b = 0;
    while let Next::Event(ev) = b.try_next() {
        assert!(ev.index() >= 4);
        got_b += 1;
    }
    assert_eq!(got_b, 4);
    let s = ring.stats();
    assert_eq!(s.groups[0].released, 8);
    assert_eq!(
        1 + got_b + s.groups[0].abandoned,
        8,
        "delivered + abandoned == published: {s:?}"
    );
}

/// Processes racing for one role: exactly one may get it (two producers, or two processes
/// as one member, would corrupt the ring).
#[test]
fn only_one_process_gets_a_role() {
    const TRIALS: usize = 40;
    const RIVALS: usize = 4;
    for trial in 0..TRIALS {
        let producer_role = trial % 2 == 0;
        let ring = ring(&format!("role{trial}"), Policy::Block, 16, vec![1]);
        let path = ring.path().to_path_buf();
        let board = Board::new(RIVALS + 1);
        let go = &board.get(RIVALS).count;
        let mut kids = Children::default();
        for i in 0..RIVALS {
            let (path, rep) = (&path, board.get(i));
            kids.spawn(move || {
                let ring = attach(path);
                rep.sum.store(1, Ordering::SeqCst); // ready
                while go.load(Ordering::SeqCst) == 0 {
                    std::hint::spin_loop();
                }
                let got = if producer_role {
                    ring.producer().map(std::mem::forget).is_ok()
                } else {
                    ring.reader(0, 0).map(std::mem::forget).is_ok()
                };
                rep.other.store(1 + u64::from(got), Ordering::SeqCst);
                // Stay alive until the parent has counted, so a rival never sees us dead.
                while go.load(Ordering::SeqCst) == 1 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                0
            });
        }
        assert!(wait_for(Duration::from_secs(10), || (0..RIVALS)
            .all(|i| board.get(i).sum.load(Ordering::SeqCst) == 1)));
        go.store(1, Ordering::SeqCst);
        assert!(wait_for(Duration::from_secs(10), || (0..RIVALS)
            .all(|i| board.get(i).other.load(Ordering::SeqCst) != 0)));
        let winners = (0..RIVALS)
            .filter(|&i| board.get(i).other.load(Ordering::SeqCst) == 2)
            .count();
        go.store(2, Ordering::SeqCst);
        assert_eq!(
            kids.wait_all_while(Duration::from_secs(10), || {}),
            vec![0; RIVALS]
        );
        let role = if producer_role {
            "producer"
        } else {
            "member 0 of group 0"
        };
        assert_eq!(
            winners, 1,
            "trial {trial}: {winners} processes got the {role} role"
        );
    }
}
