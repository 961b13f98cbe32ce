//! The build queue: [`Turns`] under a mutex, the builds whose turn came woken, and per app what a
//! destroy needs: a cancellation that stops the app's uploads and builds wherever they are
//! (waiting for their turn included), and a tracker to wait until all of them have stopped.
//!
//! A build holds a [`Lease`] from the start of its upload to its end (the destroy waits for it)
//! and a [`Ticket`] while it waits for its turn and builds; dropping the ticket leaves the queue,
//! so a build that is stopped at any await point hands its turn on.

use super::turns::{Place, Started, TicketId, Turns};
use super::BuildError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{task_tracker::TaskTrackerToken, TaskTracker};

pub struct Queue {
    inner: Mutex<Inner>,
}

struct Inner {
    turns: Turns,
    /// Builds waiting for their turn, woken when it comes.
    wake: HashMap<TicketId, oneshot::Sender<()>>,
    /// Apps with uploads or builds since the start, or since their last destroy.
    apps: HashMap<String, Arc<AppTasks>>,
}

/// One app's uploads and builds.
#[derive(Default)]
struct AppTasks {
    /// Cancelled when the app is destroyed: its uploads and its queued and running builds stop
    /// where they are and record nothing more.
    destroyed: CancellationToken,
    /// Those uploads and builds, so that a destroy can wait until all of them have stopped.
    tasks: TaskTracker,
}

/// An upload or a build of an app, from its start to its end: a destroy of the app stops it
/// (see [`Lease::destroyed`]) and waits until it is dropped.
pub struct Lease {
    app: Arc<AppTasks>,
    _task: TaskTrackerToken,
}

impl Lease {
    /// Resolves when the app is being destroyed.
    pub async fn destroyed(&self) {
        self.app.destroyed.cancelled().await
    }
}

/// A build's place in the queue. Dropping it leaves the queue and hands the turn on.
pub struct Ticket<'q> {
    queue: &'q Queue,
    id: TicketId,
    joined: Place,
    wake: Option<oneshot::Receiver<()>>,
}

impl Ticket<'_> {
    /// Where the build stood when it joined: what the pusher is told.
    pub fn joined(&self) -> Place {
        self.joined
    }

    /// Waits until the build has its app's turn and a slot.
    pub async fn turn(&mut self) {
        // Cancel-safe: the receiver is kept until it has answered, so a wait that is dropped
        // and begun again still waits.
        if let Some(wake) = &mut self.wake {
            // The sender goes only with the queue, or with a destroy of the app, whose
            // cancellation the build sees first.
            let _ = wake.await;
            self.wake = None;
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.queue.leave(self.id);
    }
}

/// A destroy's hold on an app: its builds are stopped and new ones refused until
/// [`Queue::reopen`].
pub struct Closed {
    pub app: String,
    app_tasks: Arc<AppTasks>,
    /// The builds the destroy stopped, running or waiting.
    pub stopped: Vec<u64>,
}

impl Closed {
    /// Waits until every upload and build of the app has ended.
    pub async fn wait(&self) {
        self.app_tasks.tasks.wait().await
    }
}

impl Queue {
    /// At most `concurrency` builds at once, across apps.
    pub fn new(concurrency: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                turns: Turns::new(concurrency),
                wake: HashMap::new(),
                apps: HashMap::new(),
            }),
        }
    }

    /// An upload or build of `app` begins. Refused while a destroy of the app is under way.
    pub fn enter(&self, app: &str) -> Result<Lease, BuildError> {
        // Under the lock a destroy also takes to cancel: either the token is taken before the
        // cancel (and the destroy waits for it) or the cancel is seen here.
        let mut inner = self.inner.lock().unwrap();
        let tasks = inner.apps.entry(app.to_string()).or_default().clone();
        if tasks.destroyed.is_cancelled() {
            return Err(BuildError::Destroyed);
        }
        Ok(Lease {
            _task: tasks.tasks.token(),
            app: tasks,
        })
    }

    /// Build `build` of `app` joins the queue.
    pub fn join(&self, app: &str, build: u64) -> Ticket<'_> {
        let mut inner = self.inner.lock().unwrap();
        let joined = inner.turns.join(app, build);
        let wake = (joined.place != Place::Running).then(|| {
            let (tx, rx) = oneshot::channel();
            inner.wake.insert(joined.ticket, tx);
            rx
        });
        Ticket {
            queue: self,
            id: joined.ticket,
            joined: joined.place,
            wake,
        }
    }

    fn leave(&self, id: TicketId) {
        let mut inner = self.inner.lock().unwrap();
        inner.wake.remove(&id);
        let started = inner.turns.leave(id);
        inner.wake_up(started);
    }

    /// Starts a destroy of `app`: stops its uploads and builds, refuses new ones, and lets the
    /// slots of its running builds go to other apps' builds at once.
    pub fn close(&self, app: &str) -> Closed {
        let mut inner = self.inner.lock().unwrap();
        let app_tasks = inner.apps.entry(app.to_string()).or_default().clone();
        app_tasks.destroyed.cancel();
        app_tasks.tasks.close();
        let removed = inner.turns.remove_app(app);
        // The stopped builds' wakers stay until their tickets drop: their turn never comes, and
        // each sees the cancellation instead.
        inner.wake_up(removed.started);
        Closed {
            app: app.to_string(),
            app_tasks,
            stopped: removed.stopped,
        }
    }

    /// Ends a destroy: the name is open for new uploads and builds again (of a new app).
    pub fn reopen(&self, closed: &Closed) {
        let mut inner = self.inner.lock().unwrap();
        if inner
            .apps
            .get(&closed.app)
            .is_some_and(|t| Arc::ptr_eq(t, &closed.app_tasks))
        {
            inner.apps.remove(&closed.app);
        }
    }
}

impl Inner {
    fn wake_up(&mut self, started: Vec<Started>) {
        for s in started {
            if let Some(tx) = self.wake.remove(&s.ticket) {
                let _ = tx.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::mpsc;

    /// A build that joins, waits for its turn, reports it, and holds it until told to end.
    fn build(
        queue: &Arc<Queue>,
        app: &'static str,
        number: u64,
        turns: mpsc::UnboundedSender<(&'static str, u64)>,
    ) -> (tokio::task::JoinHandle<()>, oneshot::Sender<()>) {
        let queue = queue.clone();
        let (end, ended) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut ticket = queue.join(app, number);
            ticket.turn().await;
            turns.send((app, number)).unwrap();
            let _ = ended.await;
        });
        (task, end)
    }

    async fn nothing_more(rx: &mut mpsc::UnboundedReceiver<(&'static str, u64)>) {
        let r = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await;
        assert!(r.is_err(), "unexpected turn: {r:?}");
    }

    #[tokio::test]
    async fn a_waiting_build_is_woken_when_the_one_before_it_ends() {
        let queue = Arc::new(Queue::new(4));
        let (tx, mut turns) = mpsc::unbounded_channel();
        let (_t1, end1) = build(&queue, "a", 1, tx.clone());
        assert_eq!(turns.recv().await, Some(("a", 1)));
        let (_t2, end2) = build(&queue, "a", 2, tx.clone());
        let (_t3, _end3) = build(&queue, "a", 3, tx.clone());
        nothing_more(&mut turns).await;
        end1.send(()).unwrap();
        assert_eq!(turns.recv().await, Some(("a", 2)));
        nothing_more(&mut turns).await;
        end2.send(()).unwrap();
        assert_eq!(turns.recv().await, Some(("a", 3)));
    }

    #[tokio::test]
    async fn a_build_stopped_while_it_waits_hands_its_turn_on() {
        let queue = Arc::new(Queue::new(4));
        let (tx, mut turns) = mpsc::unbounded_channel();
        let (_t1, end1) = build(&queue, "a", 1, tx.clone());
        assert_eq!(turns.recv().await, Some(("a", 1)));
        let (t2, _end2) = build(&queue, "a", 2, tx.clone());
        let (_t3, _end3) = build(&queue, "a", 3, tx.clone());
        nothing_more(&mut turns).await;
        // As when a select drops the waiting build: its ticket drops with it.
        t2.abort();
        let _ = t2.await;
        end1.send(()).unwrap();
        assert_eq!(turns.recv().await, Some(("a", 3)));
    }

    #[tokio::test]
    async fn a_destroy_stops_the_apps_builds_refuses_new_ones_and_waits_for_the_stopped() {
        let queue = Arc::new(Queue::new(1));
        let (tx, mut turns) = mpsc::unbounded_channel();
        let lease = queue.enter("a").unwrap();
        let (_a1, _end_a1) = build(&queue, "a", 1, tx.clone());
        assert_eq!(turns.recv().await, Some(("a", 1)));
        let (_b1, _end_b1) = build(&queue, "b", 1, tx.clone());
        nothing_more(&mut turns).await;

        let closed = queue.close("a");
        assert_eq!(closed.stopped, [1]);
        // a1's slot goes to b1 at once, before a1's task has ended.
        assert_eq!(turns.recv().await, Some(("b", 1)));
        tokio::time::timeout(Duration::from_secs(1), lease.destroyed())
            .await
            .expect("the lease sees the destroy");
        assert!(matches!(queue.enter("a"), Err(BuildError::Destroyed)));
        assert!(queue.enter("b").is_ok());

        // The destroy waits for the upload or build holding the lease.
        let waiting = tokio::time::timeout(Duration::from_millis(50), closed.wait()).await;
        assert!(waiting.is_err(), "the destroy did not wait");
        drop(lease);
        tokio::time::timeout(Duration::from_secs(1), closed.wait())
            .await
            .expect("the destroy ends once the lease is gone");

        queue.reopen(&closed);
        assert!(queue.enter("a").is_ok());
    }

    #[tokio::test]
    async fn the_end_of_a_stopped_build_does_not_disturb_a_new_app_of_the_same_name() {
        let queue = Arc::new(Queue::new(4));
        let old = queue.join("a", 1);
        let closed = queue.close("a");
        queue.reopen(&closed);
        let new = queue.join("a", 1);
        assert_eq!(new.joined(), Place::Running);
        let behind = queue.join("a", 2);
        assert_eq!(behind.joined(), Place::BehindApp { behind: 1 });
        // The old build's ticket drops late: the new app's build keeps its turn.
        drop(old);
        let mut behind = behind;
        let woke = tokio::time::timeout(Duration::from_millis(50), behind.turn()).await;
        assert!(woke.is_err(), "the new app's second build jumped its first");
        drop(new);
        tokio::time::timeout(Duration::from_secs(1), behind.turn())
            .await
            .expect("its turn comes when the new first build ends");
    }
}
