//! Long work a request starts and leaves running (projection rebuilds, audits): one at a
//! time per process, each kind in a slot of its own that keeps the last job, running or
//! finished, so callers can follow it and read how it ended.
//!
//! A second request while a job runs is refused (or shown the running job) rather than
//! queued: each of these jobs reads the whole log, and two at once would only double the
//! load and the memory.

use std::sync::{Arc, Mutex};

/// What a slot needs to know about the job it holds.
pub trait Job: Clone {
    fn is_running(&self) -> bool;
}

/// The last job of one kind this process started.
pub struct JobSlot<T>(Arc<Mutex<Option<T>>>);

impl<T> Default for JobSlot<T> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(None)))
    }
}

impl<T> Clone for JobSlot<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: Job> JobSlot<T> {
    pub fn get(&self) -> Option<T> {
        self.0.lock().map(|s| s.clone()).unwrap_or(None)
    }

    pub fn update(&self, change: impl FnOnce(&mut T)) {
        if let Ok(mut slot) = self.0.lock() {
            if let Some(job) = slot.as_mut() {
                change(job);
            }
        }
    }

    /// Puts `job` in the slot, replacing a finished one; if a job is running, leaves it and
    /// returns it instead.
    pub fn claim(&self, job: T) -> Result<(), Option<T>> {
        let Ok(mut slot) = self.0.lock() else {
            return Err(None);
        };
        if let Some(running) = slot.as_ref().filter(|j| j.is_running()) {
            return Err(Some(running.clone()));
        }
        *slot = Some(job);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Work(u32, bool);

    impl Job for Work {
        fn is_running(&self) -> bool {
            self.1
        }
    }

    #[test]
    fn one_job_runs_at_a_time_and_the_last_one_is_kept() {
        let slot = JobSlot::default();
        assert_eq!(slot.get(), None);
        assert_eq!(slot.claim(Work(1, true)), Ok(()));
        assert_eq!(slot.claim(Work(2, true)), Err(Some(Work(1, true))));
        slot.update(|w| w.1 = false);
        assert_eq!(slot.get(), Some(Work(1, false)));
        assert_eq!(slot.claim(Work(2, true)), Ok(()));
        assert_eq!(slot.get(), Some(Work(2, true)));
    }
}
