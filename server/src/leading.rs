//! Tasks that must run once per platform (the scheduler, autoscaler, alerts, ACME, the canary
//! judge) run only on the server that leads, and stop when it stops leading.

use tokio_util::sync::CancellationToken;

/// Runs `task` whenever this server leads, and stops it (cancels its token) when it no longer
/// does: the scheduler and the other loops that must run once per platform.
pub async fn while_leading<F, Fut>(
    mut leading: tokio::sync::watch::Receiver<bool>,
    shutdown: CancellationToken,
    task: F,
) where
    F: Fn(CancellationToken) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    // `wait_for` answers with a read guard, which must not be held across an await.
    async fn until(leading: &mut tokio::sync::watch::Receiver<bool>, want: bool) -> bool {
        leading.wait_for(|l| *l == want).await.is_ok()
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            alive = until(&mut leading, true) => if !alive { return },
        }
        let term = shutdown.child_token();
        let run = task(term.clone());
        tokio::pin!(run);
        tokio::select! {
            _ = &mut run => return,
            lost = until(&mut leading, false) => {
                if !lost {
                    // The channel closed: leadership can no longer change (sled's one server
                    // leads for good). The task runs until it ends; restarting it would lose
                    // its state and, in a loop, starve it (a scheduler that never ticked).
                    run.await;
                    return;
                }
                term.cancel();
                run.await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_task_of_a_leader_for_good_starts_once_and_one_that_loses_the_lead_stops() {
        // Leading for good: the sender is gone, as on sled.
        let leading = tokio::sync::watch::Sender::new(true).subscribe();
        let starts = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let counted = starts.clone();
        let task = tokio::spawn(while_leading(leading, shutdown.clone(), move |stop| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { stop.cancelled().await }
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        shutdown.cancel();
        task.await.unwrap();

        // Losing the lead stops the task; winning it again starts it again.
        let (tx, rx) = tokio::sync::watch::channel(true);
        let starts = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let (counted, live) = (starts.clone(), running.clone());
        let task = tokio::spawn(while_leading(rx, shutdown.clone(), move |stop| {
            counted.fetch_add(1, Ordering::SeqCst);
            let live = live.clone();
            async move {
                live.fetch_add(1, Ordering::SeqCst);
                stop.cancelled().await;
                live.fetch_sub(1, Ordering::SeqCst);
            }
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(running.load(Ordering::SeqCst), 1);
        tx.send(false).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(running.load(Ordering::SeqCst), 0);
        tx.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            (
                starts.load(Ordering::SeqCst),
                running.load(Ordering::SeqCst)
            ),
            (2, 1)
        );
        shutdown.cancel();
        task.await.unwrap();
    }
}
