//! Which core each scheduler worker's tools run on.
//!
//! When the workers fill every core fbuild may use, each worker (and so every tool
//! it starts, which inherits its mask) is kept on one core of its own. A tool is a
//! chain of processes (the compiler driver starts cc1plus and as, the linker starts
//! lto1), and the kernel often places a new one on the other, busy core; the core
//! it came from then idles until a balancer moves it. On the 2-core machines that
//! was 5% of a cold build's core time; pinned, 1%.
//!
//! With fewer workers than cores the kernel has idle cores to place them on, and
//! with more (a compiler launcher sends work elsewhere) a fixed core per worker
//! would leave work waiting, so both are left to the kernel. `FBUILD_NO_PIN=1`
//! leaves every case to the kernel (a machine shared with other heavy work).

/// One core per worker, or `None` to leave placement to the kernel.
pub fn cores_for(workers: usize) -> Option<Vec<usize>> {
    if workers < 2 || std::env::var_os("FBUILD_NO_PIN").is_some_and(|v| v != "0") {
        return None;
    }
    let allowed = allowed_cores()?;
    (allowed.len() == workers).then_some(allowed)
}

/// The cores this process may run on, in order.
fn allowed_cores() -> Option<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is an empty set, and the kernel fills at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        Some((0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect())
    }
}

/// Keep the calling thread, and every process it starts from now on, on `core`.
/// A failure (a core taken away meanwhile) leaves the thread where it was.
pub fn pin_current_thread(core: usize) {
    // SAFETY: as above; 0 names the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_pinned_only_when_they_fill_the_allowed_cores() {
        let allowed = allowed_cores().expect("sched_getaffinity works");
        assert!(!allowed.is_empty());
        assert_eq!(cores_for(1), None, "one worker is left to the kernel");
        assert_eq!(cores_for(allowed.len() + 1), None, "more workers than cores are left to the kernel");
        if allowed.len() >= 2 {
            assert_eq!(cores_for(allowed.len() - 1), None, "fewer workers than cores are left to the kernel");
            assert_eq!(cores_for(allowed.len()), Some(allowed.clone()));
        }
    }

    #[test]
    fn a_pinned_thread_runs_on_its_core_only() {
        let allowed = allowed_cores().unwrap();
        let last = *allowed.last().unwrap();
        let seen = std::thread::spawn(move || {
            pin_current_thread(last);
            allowed_cores().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(seen, vec![last]);
        assert_eq!(allowed_cores().unwrap(), allowed, "other threads keep their cores");
    }
}
