//! A value that is costly to read and may be a little old: the cohort page's numbers.
//!
//! Counting 100,000 participants and a week of their ledger takes the database a few hundred
//! milliseconds; a coordinator's page should not. The page shows the last snapshot and its age,
//! and a snapshot older than `fresh_for` is refreshed in the background by the first request
//! that sees it (stale-while-revalidate), so no request waits for the count but the very first.
//! Nothing is read while nobody looks.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// A read value and when it was read.
pub struct Taken<T> {
    pub value: Arc<T>,
    pub at: DateTime<Utc>,
    read: Instant,
}

impl<T> Clone for Taken<T> {
    fn clone(&self) -> Self {
        Taken {
            value: self.value.clone(),
            at: self.at,
            read: self.read,
        }
    }
}

pub struct Snapshot<T> {
    fresh_for: Duration,
    last: std::sync::Mutex<Option<Taken<T>>>,
    refreshing: AtomicBool,
}

impl<T: Send + Sync + 'static> Snapshot<T> {
    pub fn new(fresh_for: Duration) -> Arc<Self> {
        Arc::new(Snapshot {
            fresh_for,
            last: std::sync::Mutex::new(None),
            refreshing: AtomicBool::new(false),
        })
    }

    /// The last value if there is one (refreshed in the background when it is older than
    /// `fresh_for`), else one read now by `read`.
    pub async fn get<F, Fut>(self: &Arc<Self>, read: F) -> anyhow::Result<Taken<T>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        let last = self.last.lock().expect("snapshot lock").clone();
        let Some(last) = last else {
            return self.refresh(read).await;
        };
        if last.read.elapsed() >= self.fresh_for && !self.refreshing.swap(true, Ordering::AcqRel) {
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(error) = this.refresh(read).await {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "console: refreshing a snapshot failed; the last one is kept"
                    );
                }
                this.refreshing.store(false, Ordering::Release);
            });
        }
        Ok(last)
    }

    async fn refresh<F, Fut>(&self, read: F) -> anyhow::Result<Taken<T>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        let taken = Taken {
            value: Arc::new(read().await?),
            at: Utc::now(),
            read: Instant::now(),
        };
        *self.last.lock().expect("snapshot lock") = Some(taken.clone());
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[tokio::test]
    async fn a_fresh_value_is_reused_and_a_stale_one_served_while_it_is_read_again() {
        let reads = Arc::new(AtomicU32::new(0));
        let read = |reads: Arc<AtomicU32>| {
            move || async move { anyhow::Ok(reads.fetch_add(1, Ordering::SeqCst) + 1) }
        };
        let fresh = Snapshot::new(Duration::from_secs(3600));
        assert_eq!(*fresh.get(read(reads.clone())).await.unwrap().value, 1);
        assert_eq!(
            *fresh.get(read(reads.clone())).await.unwrap().value,
            1,
            "reused"
        );

        let stale = Snapshot::new(Duration::ZERO);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        assert_eq!(*stale.get(read(reads.clone())).await.unwrap().value, 2);
        // Stale: the old value comes back at once, and the next read happens behind it.
        let slow = move || async move {
            let _ = rx.await;
            anyhow::Ok(99)
        };
        assert_eq!(*stale.get(slow).await.unwrap().value, 2);
        assert!(stale.refreshing.load(Ordering::Acquire), "a refresh runs");
        tx.send(()).unwrap();
        while stale.refreshing.load(Ordering::Acquire) {
            tokio::task::yield_now().await;
        }
        let latest = stale.last.lock().unwrap().clone().unwrap();
        assert_eq!(*latest.value, 99);
    }
}
