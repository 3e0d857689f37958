//! Threads that run cron runs. A run takes a thread of its own for its
//! whole life (its file writes and guest code then never hold up the
//! scheduler or each other); the threads are kept and reused, and can be
//! created ahead of an instant many jobs share, because creating a hundred
//! threads at the scheduled instant costs tens of milliseconds here.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

type Task = Box<dyn FnOnce() + Send + 'static>;

/// At most this many run threads (runs beyond it wait for one to finish,
/// and start late).
pub const MAX_THREADS: usize = 512;

struct Queue {
    tasks: VecDeque<Task>,
    threads: usize,
    /// Threads running a task.
    busy: usize,
    closed: bool,
}

impl Queue {
    /// Threads without a task, minus the tasks waiting for one.
    fn spare(&self) -> isize {
        self.threads as isize - self.busy as isize - self.tasks.len() as isize
    }
}

struct Inner {
    queue: Mutex<Queue>,
    cv: Condvar,
}

/// A growing pool of run threads; dropping it lets idle threads exit
/// (threads busy with a run exit when the run ends).
pub struct RunPool {
    inner: Arc<Inner>,
}

impl Default for RunPool {
    fn default() -> Self {
        RunPool::new()
    }
}

impl RunPool {
    pub fn new() -> RunPool {
        RunPool {
            inner: Arc::new(Inner {
                queue: Mutex::new(Queue {
                    tasks: VecDeque::new(),
                    threads: 0,
                    busy: 0,
                    closed: false,
                }),
                cv: Condvar::new(),
            }),
        }
    }

    /// Threads in the pool (busy or idle).
    pub fn threads(&self) -> usize {
        self.inner.queue.lock().map(|q| q.threads).unwrap_or(0)
    }

    /// Threads not running a task.
    pub fn spare(&self) -> usize {
        self.inner.queue.lock().map(|q| q.spare().max(0) as usize).unwrap_or(0)
    }

    /// Make sure at least `n` threads are free for new tasks.
    pub fn reserve(&self, n: usize) {
        let missing = match self.inner.queue.lock() {
            Ok(mut q) => {
                let missing = ((n as isize - q.spare()).max(0) as usize).min(MAX_THREADS.saturating_sub(q.threads));
                q.threads += missing;
                missing
            }
            Err(_) => 0,
        };
        self.spawn_threads(missing);
    }

    /// Run every task on a thread of its own, at once (up to
    /// [`MAX_THREADS`] tasks at a time).
    pub fn run_all(&self, tasks: Vec<Task>) {
        let missing = match self.inner.queue.lock() {
            Ok(mut q) => {
                q.tasks.extend(tasks);
                let missing = ((-q.spare()).max(0) as usize).min(MAX_THREADS.saturating_sub(q.threads));
                q.threads += missing;
                missing
            }
            Err(_) => 0,
        };
        self.inner.cv.notify_all();
        self.spawn_threads(missing);
    }

    /// Start `n` threads (already counted in `threads`).
    fn spawn_threads(&self, n: usize) {
        for _ in 0..n {
            let inner = self.inner.clone();
            let spawned = std::thread::Builder::new().name("lily-cron-run".into()).spawn(move || worker(&inner));
            if spawned.is_err()
                && let Ok(mut q) = self.inner.queue.lock()
            {
                q.threads -= 1;
            }
        }
    }
}

impl Drop for RunPool {
    fn drop(&mut self) {
        if let Ok(mut q) = self.inner.queue.lock() {
            q.closed = true;
        }
        self.inner.cv.notify_all();
    }
}

fn worker(inner: &Inner) {
    loop {
        let task = {
            let Ok(mut q) = inner.queue.lock() else { return };
            loop {
                if let Some(t) = q.tasks.pop_front() {
                    q.busy += 1;
                    break t;
                }
                if q.closed {
                    q.threads -= 1;
                    return;
                }
                q = match inner.cv.wait(q) {
                    Ok(q) => q,
                    Err(_) => return,
                };
            }
        };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(task)).is_err() {
            tracing::error!("a cron run thread panicked");
        }
        if let Ok(mut q) = inner.queue.lock() {
            q.busy -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// `n` tasks that each add one to `done`.
    fn counting_tasks(n: usize, done: &Arc<AtomicUsize>) -> Vec<Task> {
        (0..n)
            .map(|_| {
                let done = done.clone();
                Box::new(move || {
                    done.fetch_add(1, Ordering::SeqCst);
                }) as Task
            })
            .collect()
    }

    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn every_task_gets_a_thread_of_its_own_at_once() {
        let pool = RunPool::new();
        let started = Arc::new(AtomicUsize::new(0));
        let release = Arc::new((Mutex::new(false), Condvar::new()));
        let tasks: Vec<Task> = (0..20)
            .map(|_| {
                let started = started.clone();
                let release = release.clone();
                Box::new(move || {
                    started.fetch_add(1, Ordering::SeqCst);
                    let (m, cv) = &*release;
                    let g = m.lock().expect("lock");
                    drop(cv.wait_while(g, |r| !*r).expect("wait"));
                }) as Task
            })
            .collect();
        pool.run_all(tasks);
        // All 20 run concurrently (each blocks until released).
        wait_for("20 concurrent tasks", || started.load(Ordering::SeqCst) == 20);
        assert_eq!(pool.threads(), 20);
        {
            let (m, cv) = &*release;
            *m.lock().expect("lock") = true;
            cv.notify_all();
        }
        // The threads are reused: a second batch creates none.
        wait_for("free threads", || pool.spare() == 20);
        let done = Arc::new(AtomicUsize::new(0));
        let tasks = counting_tasks(10, &done);
        pool.run_all(tasks);
        wait_for("second batch", || done.load(Ordering::SeqCst) == 10);
        assert_eq!(pool.threads(), 20);
    }

    #[test]
    fn the_pool_never_grows_past_its_cap() {
        let pool = RunPool::new();
        pool.reserve(MAX_THREADS + 100);
        assert_eq!(pool.threads(), MAX_THREADS);
        let done = Arc::new(AtomicUsize::new(0));
        let tasks = counting_tasks(MAX_THREADS + 10, &done);
        pool.run_all(tasks);
        wait_for("every task, some after others", || done.load(Ordering::SeqCst) == MAX_THREADS + 10);
        assert_eq!(pool.threads(), MAX_THREADS);
    }

    #[test]
    fn reserve_creates_idle_threads_ahead() {
        let pool = RunPool::new();
        pool.reserve(5);
        assert_eq!(pool.threads(), 5);
        assert_eq!(pool.spare(), 5);
        pool.reserve(3);
        assert_eq!(pool.threads(), 5);
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        pool.run_all(vec![Box::new(move || {
            d.fetch_add(1, Ordering::SeqCst);
        })]);
        wait_for("a task on a reserved thread", || done.load(Ordering::SeqCst) == 1);
        assert_eq!(pool.threads(), 5);
        drop(pool);
    }
}
