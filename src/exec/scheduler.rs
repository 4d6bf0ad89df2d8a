//! The one execution loop: worker threads take ready steps of a build graph from two
//! pools, as ninja's loop takes edges from its plan. Stage 1 (core and libraries) may
//! run at most `stage1` steps at once, stage 2 (discovery, sketch compiles, links) at
//! most `stage2`, and both together at most the larger of the two, because that is
//! how many workers there are. No barrier between the stages: a step waits only for
//! the steps it depends on.
//!
//! A running step may add steps (ninja's dyndep): library discovery decides which
//! library units and sketch steps exist, so the step that plans them adds them while
//! the core is still compiling.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex};

pub type NodeId = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    Stage1,
    Stage2,
}

/// How many steps of each pool may run at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub stage1: usize,
    pub stage2: usize,
}

impl Limits {
    pub fn workers(&self) -> usize {
        self.stage1.max(self.stage2).max(1)
    }
}

struct Slot<S> {
    step: Option<S>,
    pool: Pool,
    priority: u32,
    waiting: usize,
    dependents: Vec<NodeId>,
    done: bool,
}

struct State<S> {
    nodes: Vec<Slot<S>>,
    /// Ready steps per pool, lowest priority value first, then oldest first.
    ready: [BinaryHeap<Reverse<(u32, NodeId)>>; 2],
    running: [usize; 2],
    unfinished: usize,
}

/// A build graph being run: steps of type `S` with dependencies, a pool and a priority.
pub struct Scheduler<S> {
    state: Mutex<State<S>>,
    wake: Condvar,
    limits: Limits,
}

fn lane(pool: Pool) -> usize {
    match pool {
        Pool::Stage1 => 0,
        Pool::Stage2 => 1,
    }
}

impl<S: Send> Scheduler<S> {
    pub fn new(limits: Limits) -> Scheduler<S> {
        let limits = Limits { stage1: limits.stage1.max(1), stage2: limits.stage2.max(1) };
        Scheduler {
            state: Mutex::new(State { nodes: Vec::new(), ready: [BinaryHeap::new(), BinaryHeap::new()], running: [0, 0], unfinished: 0 }),
            wake: Condvar::new(),
            limits,
        }
    }

    /// Add a step that runs after every step in `deps` has finished. Lower `priority`
    /// values run first among ready steps of every pool with room. May be called while the
    /// graph runs, from inside a step.
    pub fn add(&self, step: S, pool: Pool, priority: u32, deps: &[NodeId]) -> NodeId {
        let mut st = self.state.lock().unwrap();
        let id = st.nodes.len();
        let mut waiting = 0;
        for &d in deps {
            let dep = &mut st.nodes[d];
            if !dep.done {
                dep.dependents.push(id);
                waiting += 1;
            }
        }
        st.nodes.push(Slot { step: Some(step), pool, priority, waiting, dependents: Vec::new(), done: false });
        st.unfinished += 1;
        if waiting == 0 {
            st.ready[lane(pool)].push(Reverse((priority, id)));
            self.wake.notify_one();
        }
        id
    }

    /// Run every step (and every step added meanwhile) with `exec`, then return.
    pub fn run(&self, exec: impl Fn(&Scheduler<S>, NodeId, S) + Sync) {
        std::thread::scope(|scope| {
            let workers = self.limits.workers();
            let cores = super::affinity::cores_for(workers);
            for w in 0..workers {
                let (exec, core) = (&exec, cores.as_ref().map(|c| c[w]));
                scope.spawn(move || {
                    if let Some(core) = core {
                        super::affinity::pin_current_thread(core);
                    }
                    self.work(exec)
                });
            }
        });
    }

    /// The ready step with the lowest priority (then the oldest) among the pools
    /// that have room.
    fn take(&self, st: &mut State<S>) -> Option<(NodeId, S)> {
        let mut best: Option<(u32, NodeId, usize)> = None;
        for (l, limit) in [(0, self.limits.stage1), (1, self.limits.stage2)] {
            if st.running[l] >= limit {
                continue;
            }
            if let Some(&Reverse((p, id))) = st.ready[l].peek() {
                if best.map_or(true, |(bp, bid, _)| (p, id) < (bp, bid)) {
                    best = Some((p, id, l));
                }
            }
        }
        let (_, id, l) = best?;
        st.ready[l].pop();
        st.running[l] += 1;
        let step = st.nodes[id].step.take().expect("a ready step runs once");
        Some((id, step))
    }

    fn work(&self, exec: &(impl Fn(&Scheduler<S>, NodeId, S) + Sync)) {
        let mut st = self.state.lock().unwrap();
        loop {
            if st.unfinished == 0 {
                self.wake.notify_all();
                return;
            }
            let Some((id, step)) = self.take(&mut st) else {
                st = self.wake.wait(st).unwrap();
                continue;
            };
            drop(st);
            exec(self, id, step);
            st = self.state.lock().unwrap();
            let l = lane(st.nodes[id].pool);
            st.running[l] -= 1;
            st.nodes[id].done = true;
            st.unfinished -= 1;
            let dependents = std::mem::take(&mut st.nodes[id].dependents);
            for d in dependents {
                let node = &mut st.nodes[d];
                node.waiting -= 1;
                if node.waiting == 0 {
                    let (pool, priority) = (node.pool, node.priority);
                    st.ready[lane(pool)].push(Reverse((priority, d)));
                }
            }
            self.wake.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn dependencies_run_first_and_limits_hold() {
        let s: Scheduler<(Pool, usize)> = Scheduler::new(Limits { stage1: 1, stage2: 3 });
        let a = s.add((Pool::Stage1, 0), Pool::Stage1, 0, &[]);
        let b = s.add((Pool::Stage1, 1), Pool::Stage1, 0, &[]);
        let mut twos = Vec::new();
        for i in 0..6 {
            twos.push(s.add((Pool::Stage2, 10 + i), Pool::Stage2, 1, &[]));
        }
        let link = s.add((Pool::Stage2, 99), Pool::Stage2, 0, &[a, b, twos[0]]);
        let order = Mutex::new(Vec::new());
        let (now, max1, max_all) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
        let now1 = AtomicUsize::new(0);
        s.run(|_, _, (pool, n)| {
            let all = now.fetch_add(1, Ordering::SeqCst) + 1;
            max_all.fetch_max(all, Ordering::SeqCst);
            if pool == Pool::Stage1 {
                let one = now1.fetch_add(1, Ordering::SeqCst) + 1;
                max1.fetch_max(one, Ordering::SeqCst);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
            order.lock().unwrap().push(n);
            if pool == Pool::Stage1 {
                now1.fetch_sub(1, Ordering::SeqCst);
            }
            now.fetch_sub(1, Ordering::SeqCst);
        });
        let order = order.into_inner().unwrap();
        assert_eq!(order.len(), 9);
        let pos = |n: usize| order.iter().position(|&x| x == n).unwrap();
        assert!(pos(99) > pos(0) && pos(99) > pos(1) && pos(99) > pos(10), "{order:?}");
        assert_eq!(max1.load(Ordering::SeqCst), 1, "stage 1 ran more than its limit");
        assert!(max_all.load(Ordering::SeqCst) <= 3, "more steps at once than workers");
        let _ = link;
    }

    #[test]
    fn steps_added_while_running_run_too() {
        let s: Scheduler<usize> = Scheduler::new(Limits { stage1: 1, stage2: 2 });
        s.add(0, Pool::Stage2, 0, &[]);
        let seen = Mutex::new(Vec::new());
        s.run(|s, id, n| {
            seen.lock().unwrap().push(n);
            if n < 3 {
                let child = s.add(n + 1, Pool::Stage1, 0, &[]);
                s.add(n + 100, Pool::Stage2, 0, &[id, child]);
            }
        });
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen, vec![0, 1, 2, 3, 100, 101, 102]);
    }
}
